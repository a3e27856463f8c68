"""mmlc: Multimodal Land Cover, a QGIS plugin and a headless toolkit.

QGIS calls :func:`classFactory`; nothing here imports qgis or torch at import time, so
``import mmlc.core`` works outside QGIS and loading the plugin stays light.
"""
from __future__ import annotations

from .core.version import plugin_version

__version__ = plugin_version()  # metadata.txt is the one source (core/version.py)
#: why the installer's package folder could not be put on sys.path at start-up (None: it was, or absent)
deps_activation_error: str | None = None


def _activate_deps() -> None:
    """Put the package folder the installer fills (``<profile>/python/mmlc-deps/pyXY``) on sys.path,
    before anything of the plugin imports torch. QGIS (and qgis_process) call classFactory first."""
    try:
        from qgis.core import QgsApplication

        from .core.runtime.qgisenv import activate_for_profile

        activate_for_profile(QgsApplication.qgisSettingsDirPath())
    except Exception as e:  # never block loading the plugin; kept for a bug report
        global deps_activation_error
        deps_activation_error = f"{type(e).__name__}: {e}"


def classFactory(iface):  # noqa: N802 (QGIS's name)
    """QGIS plugin entry point."""
    _activate_deps()
    from .plugin import MmlcPlugin

    return MmlcPlugin(iface)
