"""The machine mmlc runs on: which QGIS Python and torch it has, installing torch beside QGIS,
diagnostics, and torch's BLAS threads."""
