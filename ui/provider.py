"""The Processing provider ``mmlc`` (Toolbox, Modeler, qgis_process, processing.run)."""
from __future__ import annotations

import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import all_algorithms
from .algorithms.base import ICON_PATH


class MmlcProvider(QgsProcessingProvider):
    """Lists classify, train, distill and evaluate. Importing it does not import torch."""

    def id(self) -> str:
        return "mmlc"

    def name(self) -> str:
        return "Multimodal Land Cover"

    def longName(self) -> str:  # noqa: N802
        from .. import __version__

        return f"Multimodal Land Cover (mmlc {__version__})"

    def icon(self) -> QIcon:
        return QIcon(ICON_PATH)

    def svgIconPath(self) -> str:  # noqa: N802
        return ICON_PATH if os.path.exists(ICON_PATH) else ""

    def loadAlgorithms(self) -> None:  # noqa: N802
        for alg in all_algorithms():
            self.addAlgorithm(alg)
