"""The QGIS plugin object: registers the Processing provider and a Raster menu.

``initProcessing`` is what ``qgis_process`` calls, so the provider exists headless too. Nothing
here imports torch; if PyTorch is missing the plugin still loads and tells the user how to
install it (message bar + a dialog with the exact commands).
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
        help_action = QAction("Install PyTorch for mmlc…", self.iface.mainWindow())
        help_action.triggered.connect(self.show_install_help)
        self.iface.addPluginToRasterMenu(MENU, help_action)
        self.actions.append(help_action)
        if deps.missing_packages():
            self.iface.messageBar().pushMessage(
                "mmlc", "PyTorch is not installed in QGIS's Python: Raster > Multimodal Land Cover > "
                "Install PyTorch for mmlc… shows the command.", Qgis.MessageLevel.Warning, 15)

    def open_algorithm(self, alg_id: str) -> None:
        """Open the Processing dialog of one algorithm (what the menu entries do)."""
        from qgis import processing

        processing.execAlgorithmDialog(alg_id, {})

    def show_install_help(self) -> None:
        from qgis.PyQt.QtWidgets import QMessageBox

        text = deps.install_instructions() if deps.missing_packages() else (
            "PyTorch is installed; mmlc is ready.\n\n" + deps.install_instructions())
        QMessageBox.information(self.iface.mainWindow(), "mmlc: PyTorch", text)

    def unload(self) -> None:
        for action in self.actions:
            if self.iface is not None:
                self.iface.removePluginRasterMenu(MENU, action)
            action.deleteLater()
        self.actions = []
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
