"""The *Diagnostics* dialog: the report of :mod:`..core.runtime.diagnostics` plus QGIS/Qt versions, with
one button that copies it all for a bug report."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from qgis.PyQt.QtGui import QFontDatabase, QGuiApplication
from qgis.PyQt.QtWidgets import QDialog, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from ...core.runtime import diagnostics


def host_info() -> dict[str, str]:
    """QGIS and Qt versions of the running application."""
    from qgis.core import Qgis
    from qgis.PyQt.QtCore import PYQT_VERSION_STR, QT_VERSION_STR

    return {"QGIS": Qgis.QGIS_VERSION, "Qt": QT_VERSION_STR, "PyQt": PYQT_VERSION_STR}


class DiagnosticsDialog(QDialog):
    """Read-only report; *Copy to clipboard* puts the whole text on the clipboard."""

    def __init__(self, profile: Optional[Path], parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("mmlc diagnostics")
        self.resize(760, 600)
        self.text = diagnostics.report(profile, host_info())
        layout = QVBoxLayout(self)
        hint = QLabel("Attach this report to a bug report: it says which Python, packages and GPU mmlc sees.")
        hint.setWordWrap(True)
        layout.addWidget(hint)
        self.view = QPlainTextEdit(self.text)
        self.view.setReadOnly(True)
        self.view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        layout.addWidget(self.view, 1)
        row = QHBoxLayout()
        self.copy_button = QPushButton("Copy to clipboard")
        self.copy_button.clicked.connect(self.copy)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        row.addWidget(self.copy_button)
        row.addStretch(1)
        row.addWidget(close)
        layout.addLayout(row)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.text)
        self.copy_button.setText("Copied")
