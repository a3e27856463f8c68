"""mmlc: Multimodal Land Cover, a QGIS plugin and a headless toolkit.

QGIS calls :func:`classFactory`; nothing here imports qgis or torch at import time, so
``import mmlc.core`` works outside QGIS and loading the plugin stays light.
"""
from __future__ import annotations

__version__ = "0.1.0"


def _activate_deps() -> None:
    """Put the package folder the installer fills (``<profile>/python/mmlc-deps/pyXY``) on sys.path,
    before anything of the plugin imports torch. QGIS (and qgis_process) call classFactory first."""
    try:
        from qgis.core import QgsApplication

        from .core.qgisenv import activate_for_profile

        activate_for_profile(QgsApplication.qgisSettingsDirPath())
    except Exception:  # never block loading the plugin; Diagnostics shows the folder's state
        pass


def classFactory(iface):  # noqa: N802 (QGIS's name)
    """QGIS plugin entry point."""
    _activate_deps()
    from .plugin import MmlcPlugin

    return MmlcPlugin(iface)
