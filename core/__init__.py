"""QGIS-free core of mmlc: alignment, tiling, inference, training, metrics, model files.

Nothing under ``core/`` imports qgis or PyQt (a test enforces it). Heavy modules (torch, GDAL)
are imported by the submodules that need them, not here.
"""
