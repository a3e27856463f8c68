"""Qt classes that moved between modules from Qt5 to Qt6, imported from wherever this Qt has them.

``QAction``, ``QActionGroup`` and ``QShortcut`` live in ``QtWidgets`` under Qt5 (QGIS 3) and in
``QtGui`` under Qt6 (QGIS 4). ``qgis.PyQt.QtGui`` re-exports the binding's QtGui as it is, so on
QGIS 3 the QtGui import fails and the QtWidgets one is used. Import these three from here only
(tests/test_qt6_forms.py enforces it).
"""
from __future__ import annotations

try:  # Qt6 (QGIS 4)
    from qgis.PyQt.QtGui import QAction, QActionGroup, QShortcut
except ImportError:  # Qt5 (QGIS 3)
    from qgis.PyQt.QtWidgets import QAction, QActionGroup, QShortcut

__all__ = ["QAction", "QActionGroup", "QShortcut"]
