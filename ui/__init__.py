"""QGIS face of mmlc: the Processing provider, its algorithms, styling and dialogs.

Everything that imports qgis or PyQt lives here; the work itself is done by ``core``.
"""
