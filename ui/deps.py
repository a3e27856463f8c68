"""Is PyTorch importable from QGIS's Python, and if not, how does the user get it?

Checking uses ``importlib.util.find_spec`` so nothing heavy is imported when QGIS starts. The
answer is the *Install PyTorch for mmlc* dialog (``ui/dialogs/install.py``), which installs into
the profile's ``python/mmlc-deps/pyXY`` folder with :mod:`..core.runtime.installer`; without the desktop
(qgis_process on a server) the message names the equivalent ``python -m mmlc install-deps``.

An algorithm that finds torch missing runs in a Processing worker thread, where no dialog may be
opened: :func:`offer_install` emits a signal that the plugin (main thread) turns into the dialog.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Callable, Optional

from qgis.PyQt.QtCore import QObject, Qt, pyqtSignal, pyqtSlot

from ..core.runtime import installer, qgisenv

TORCH_REQUIREMENT = installer.TORCH_REQUIREMENT
OTHER_REQUIREMENTS = installer.OTHER_REQUIREMENTS


def missing_packages() -> list[str]:
    """Top-level modules mmlc needs at run time that QGIS's Python cannot find."""
    return [m for m in ("torch", "safetensors") if importlib.util.find_spec(m) is None]


def profile_dir() -> Path:
    """The active QGIS profile folder (where the installer's package folder lives)."""
    from qgis.core import QgsApplication

    return Path(QgsApplication.qgisSettingsDirPath())


def headless_command() -> str:
    """The terminal command that does what the dialog does, for this QGIS and profile."""
    try:
        python = qgisenv.find_qgis_python()
    except FileNotFoundError:
        python = "python3"
    plugins_dir = Path(__file__).resolve().parent.parent.parent
    assign = f'set PYTHONPATH={plugins_dir} && ' if os.name == "nt" else f'PYTHONPATH="{plugins_dir}" '
    return f'{assign}"{python}" -m mmlc install-deps --profile "{profile_dir()}"'


def install_instructions() -> str:
    """A plain-words message for the user: what is missing and how to install it."""
    missing = missing_packages()
    what = ", ".join(missing) if missing else "nothing"
    target = qgisenv.deps_dir(profile_dir())
    return (
        f"mmlc needs PyTorch in QGIS's own Python (missing: {what}).\n\n"
        "In QGIS: Raster > Multimodal Land Cover > Install PyTorch for mmlc… installs "
        f"{' and '.join(installer.REQUIREMENTS)} with one click (CPU or CUDA build chosen for this "
        f"machine) into {target}, without touching QGIS's own packages (numpy is kept).\n\n"
        "Without the desktop (qgis_process on a server), run the same installer with QGIS's Python:\n\n"
        f"    {headless_command()}\n\n"
        "Add --find-links DIR --no-index for a folder of downloaded wheels, or --index-url URL for a "
        "mirror. Raster > Multimodal Land Cover > Diagnostics shows what is installed."
    )


class InstallOffer(QObject):
    """Created in the main thread; ``requested`` (emitted from any thread) calls ``open_dialog``
    through a queued connection, so the dialog always opens in the main thread."""

    requested = pyqtSignal()

    def __init__(self, open_dialog: Callable[[], None]) -> None:
        super().__init__()
        self._open_dialog = open_dialog
        self.requested.connect(self._open, Qt.ConnectionType.QueuedConnection)

    @pyqtSlot()
    def _open(self) -> None:
        self._open_dialog()


_offer: Optional[InstallOffer] = None


def set_offer(offer: Optional[InstallOffer]) -> None:
    global _offer
    _offer = offer


def offer_install() -> bool:
    """Ask the plugin (from any thread) to open the install dialog; False without a desktop."""
    if _offer is None:
        return False
    _offer.requested.emit()
    return True
