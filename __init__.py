"""mmlc: Multimodal Land Cover, a QGIS plugin and a headless toolkit.

QGIS calls :func:`classFactory`; nothing here imports qgis or torch at import time, so
``import mmlc.core`` works outside QGIS and loading the plugin stays light.
"""
from __future__ import annotations

from typing import Any

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


def __getattr__(name: str) -> Any:
    """``__version__`` is read from metadata.txt (the one source, core/version.py) on first use.

    Lazy (PEP 562) so that this file has no relative import at module level: pytest imports the
    repository root's ``__init__.py`` as a stand-alone module when the checkout's folder is not a
    valid package name (``mmlc-clean``), and a top-level ``from .core ...`` fails there."""
    if name == "__version__":
        from .core.version import plugin_version

        return plugin_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def classFactory(iface):  # noqa: N802 (QGIS's name)
    """QGIS plugin entry point."""
    _activate_deps()
    from .plugin import MmlcPlugin

    return MmlcPlugin(iface)
