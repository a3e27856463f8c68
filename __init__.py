"""mmlc: Multimodal Land Cover, a QGIS plugin and a headless toolkit.

QGIS calls :func:`classFactory`; nothing here imports qgis or torch at import time, so
``import mmlc.core`` works outside QGIS and loading the plugin stays light.
"""
from __future__ import annotations

__version__ = "0.1.0"


def classFactory(iface):  # noqa: N802 (QGIS's name)
    """QGIS plugin entry point."""
    from .plugin import MmlcPlugin

    return MmlcPlugin(iface)
