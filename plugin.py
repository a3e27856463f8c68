"""The QGIS plugin object: registers the Processing provider and a Raster menu.

``initProcessing`` is what ``qgis_process`` calls, so the provider exists headless too. Nothing
here imports torch; if PyTorch is missing the plugin still loads, says so in the message bar and
offers the *Install PyTorch for mmlc* dialog (menu, or when an algorithm runs without torch);
*Diagnostics* shows what mmlc sees.
"""
from __future__ import annotations

from typing import Optional

from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtGui import QIcon

from .ui import deps
from .ui.algorithms.base import ICON_PATH
from .ui.provider import MmlcProvider

MENU = "&Multimodal Land Cover"


class MmlcPlugin:
    """QGIS calls initProcessing/initGui on load and unload on unload or uninstall."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider: Optional[MmlcProvider] = None
        self.actions: list = []
        self.offer: Optional[deps.InstallOffer] = None
        self.install_dialog = None

    # -- Processing ----------------------------------------------------------------------------
    def initProcessing(self) -> None:  # noqa: N802
        if self.provider is None:
            self.provider = MmlcProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    # -- GUI -----------------------------------------------------------------------------------
    def initGui(self) -> None:  # noqa: N802
        self.initProcessing()
        if self.iface is None:
            return
        from .ui.qt_compat import QAction

        for alg_id, text in (("mmlc:classify", "Classify land cover…"), ("mmlc:train", "Train a model…"),
                             ("mmlc:distill", "Distill SAR from optical…"), ("mmlc:evaluate", "Evaluate a map…")):
            action = QAction(QIcon(ICON_PATH), text, self.iface.mainWindow())
            action.triggered.connect(lambda _checked=False, a=alg_id: self.open_algorithm(a))
            self.iface.addPluginToRasterMenu(MENU, action)
            self.actions.append(action)
        for text, slot in (("Install PyTorch for mmlc…", self.show_install_help),
                           ("Diagnostics…", self.show_diagnostics)):
            action = QAction(text, self.iface.mainWindow())
            action.triggered.connect(lambda _checked=False, s=slot: s())
            self.iface.addPluginToRasterMenu(MENU, action)
            self.actions.append(action)
        self.offer = deps.InstallOffer(self.show_install_help)  # algorithms without torch ask through it
        deps.set_offer(self.offer)
        if deps.missing_packages():
            self.iface.messageBar().pushMessage(
                "mmlc", "PyTorch is not installed in QGIS's Python: Raster > Multimodal Land Cover > "
                "Install PyTorch for mmlc… installs it with one click.", Qgis.MessageLevel.Warning, 15)

    def open_algorithm(self, alg_id: str) -> None:
        """Open the Processing dialog of one algorithm (what the menu entries do)."""
        from qgis import processing

        processing.execAlgorithmDialog(alg_id, {})

    def show_install_help(self) -> None:
        """The Install PyTorch for mmlc dialog (one at a time)."""
        from .ui.dialogs.install import InstallDialog

        if self.install_dialog is None or not self.install_dialog.isVisible():
            self.install_dialog = InstallDialog(deps.profile_dir(), self.iface.mainWindow())
        self.install_dialog.show()
        self.install_dialog.raise_()

    def show_diagnostics(self) -> None:
        from .ui.dialogs.diagnostics import DiagnosticsDialog

        DiagnosticsDialog(deps.profile_dir(), self.iface.mainWindow()).exec()

    def unload(self) -> None:
        deps.set_offer(None)
        for action in self.actions:
            if self.iface is not None:
                self.iface.removePluginRasterMenu(MENU, action)
            action.deleteLater()
        self.actions = []
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
