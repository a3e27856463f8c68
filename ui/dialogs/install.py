"""The *Install PyTorch for mmlc* dialog: plan, one click, progress, cancel, full log.

States (``state`` attribute, also shown in the status line): ``ready`` (plan shown, Install
enabled), ``installing`` (progress bar, Cancel enabled), then ``done``, ``failed`` or ``cancelled``.
The install runs :func:`..core.runtime.installer.run_install` in a QThread; its signals are delivered in
the dialog's thread. On success the new folder is put on ``sys.path`` so the algorithms work at
once, or the dialog says to restart QGIS when torch had already been imported (a failed or
other copy cannot be replaced in a running Python).
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Optional

from qgis.PyQt.QtCore import QThread, pyqtSignal
from qgis.PyQt.QtGui import QFontDatabase
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ...core.runtime import installer, qgisenv

TITLE = "Install PyTorch for mmlc"


class InstallThread(QThread):
    """Runs one install; ``cancel()`` stops pip. Emits text lines, progress (0-1000) and the end."""

    line = pyqtSignal(str)
    progress = pyqtSignal(int)
    succeeded = pyqtSignal(object)
    failed = pyqtSignal(str, bool)  # message, cancelled

    def __init__(self, plan: installer.InstallPlan, parent=None) -> None:
        super().__init__(parent)
        self.plan = plan
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    def run(self) -> None:
        try:
            result = installer.run_install(self.plan, on_line=self.line.emit,
                                           on_progress=lambda f: self.progress.emit(int(f * 1000)),
                                           cancelled=self._cancel.is_set)
        except installer.InstallCancelled as e:
            self.failed.emit(str(e), True)
        except installer.InstallError as e:
            self.failed.emit(str(e), False)
        except Exception as e:  # a bug must still end the dialog's "installing" state
            self.failed.emit(f"{type(e).__name__}: {e}", False)
        else:
            self.succeeded.emit(result)


class InstallDialog(QDialog):
    """See the module docstring. ``profile``: the QGIS profile folder to install into."""

    def __init__(self, profile: Path, parent: Optional[QWidget] = None, python: Optional[str] = None,
                 gpu: Optional[qgisenv.GpuInfo] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(TITLE)
        self.profile = Path(profile)
        self.python = python
        self.gpu = gpu
        self.plan: Optional[installer.InstallPlan] = None
        self.result: Optional[installer.InstallResult] = None
        self.thread: Optional[InstallThread] = None
        self.state = "ready"
        self._build_ui()
        self.refresh_plan()

    # -- layout ----------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.resize(780, 680)
        layout = QVBoxLayout(self)
        intro = QLabel("mmlc runs its networks with PyTorch. This installs torch and safetensors into a "
                       "folder of your QGIS profile that only mmlc uses; QGIS's own packages (numpy "
                       "included) are left as they are.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.build_combo = QComboBox()
        self.build_combo.addItem("Automatic (GPU if found)", "auto")
        self.build_combo.addItem("CPU", "cpu")
        for major, minor in installer.CUDA_BUILDS:
            self.build_combo.addItem(f"CUDA {major}.{minor}", f"{major}.{minor}")
        form.addRow("Build:", self.build_combo)
        links_row = QHBoxLayout()
        self.find_links = QLineEdit()
        self.find_links.setPlaceholderText("optional: a folder of downloaded wheels")
        browse = QPushButton("…")
        browse.clicked.connect(self._browse)
        links_row.addWidget(self.find_links)
        links_row.addWidget(browse)
        form.addRow("Local wheel folder:", links_row)
        self.offline = QCheckBox("use only the local wheel folder (offline)")
        form.addRow("", self.offline)
        self.index_url = QLineEdit()
        self.index_url.setPlaceholderText("optional: a package index or mirror (default: PyTorch's index + PyPI)")
        form.addRow("Index URL:", self.index_url)
        layout.addLayout(form)
        self.plan_label = QLabel()
        self.plan_label.setWordWrap(True)
        self.plan_label.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        layout.addWidget(self.plan_label)
        self.status = QLabel()
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        layout.addWidget(self.progress)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.log.setMaximumBlockCount(20000)
        layout.addWidget(self.log, 1)
        buttons = QHBoxLayout()
        self.diagnostics_button = QPushButton("Diagnostics…")
        self.install_button = QPushButton("Install")
        self.cancel_button = QPushButton("Cancel")
        self.close_button = QPushButton("Close")
        buttons.addWidget(self.diagnostics_button)
        buttons.addStretch(1)
        for b in (self.install_button, self.cancel_button, self.close_button):
            buttons.addWidget(b)
        layout.addLayout(buttons)
        self.diagnostics_button.clicked.connect(self.show_diagnostics)
        self.install_button.clicked.connect(self.start_install)
        self.cancel_button.clicked.connect(self.cancel_install)
        self.close_button.clicked.connect(self.close)
        for w in (self.build_combo,):
            w.currentIndexChanged.connect(lambda _i: self.refresh_plan())
        self.find_links.editingFinished.connect(self.refresh_plan)
        self.index_url.editingFinished.connect(self.refresh_plan)
        self.offline.toggled.connect(lambda _c: self.refresh_plan())

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of wheels", self.find_links.text())
        if folder:
            self.find_links.setText(folder)
            self.refresh_plan()

    # -- states ----------------------------------------------------------------------------------
    def _set_state(self, state: str, message: str) -> None:
        self.state = state
        colours = {"done": "#1a7f37", "failed": "#b42318", "cancelled": "#9a6700"}
        colour = colours.get(state)
        self.status.setText(f'<span style="color:{colour}">{message}</span>' if colour else message)
        busy = state == "installing"
        self.install_button.setEnabled(state in ("ready", "failed", "cancelled") and self.plan is not None)
        self.cancel_button.setEnabled(busy)
        self.close_button.setEnabled(not busy)
        for w in (self.build_combo, self.find_links, self.offline, self.index_url):
            w.setEnabled(not busy)

    def refresh_plan(self) -> None:
        """Probe QGIS's Python and the GPU and show what an install would do."""
        if self.state == "installing":  # disabling a focused field emits editingFinished: ignore it
            return
        choice = self.build_combo.currentData()
        links = [self.find_links.text().strip()] if self.find_links.text().strip() else []
        try:
            self.plan = installer.make_plan(
                self.profile, python=self.python, cpu=choice == "cpu",
                cuda=None if choice in ("auto", "cpu") else choice, index_url=self.index_url.text().strip() or None,
                find_links=links, no_index=self.offline.isChecked(), loaded_modules=list(sys.modules),
                with_qgis=False, gpu=self.gpu)
        except installer.InstallError as e:
            self.plan = None
            self.plan_label.setText("")
            self._set_state("ready", f"Cannot install: {e}")
            return
        self.gpu = self.plan.gpu  # detect once
        self.plan_label.setText(self.plan.describe())
        installed = installer.installed_packages(self.plan.target)
        now = ("Installed now: " + ", ".join(p for p in installed if p.lower().startswith(("torch ", "safetensors ")))
               ) if installed else "Nothing installed yet."
        self._set_state("ready", f"{now} Press Install to {'reinstall' if installed else 'install'}.")

    def start_install(self) -> None:
        if self.plan is None or self.state == "installing":
            return
        self.log.clear()
        self.progress.setValue(0)
        self.result = None
        self.thread = InstallThread(self.plan, self)
        self.thread.line.connect(self.log.appendPlainText)
        self.thread.progress.connect(self.progress.setValue)
        self.thread.succeeded.connect(self._succeeded)
        self.thread.failed.connect(self._failed)
        self._set_state("installing", "Installing… (Cancel stops pip and leaves everything as it was)")
        self.thread.start()

    def cancel_install(self) -> None:
        if self.thread is not None and self.state == "installing":
            self.status.setText("Cancelling…")
            self.thread.cancel()

    def _succeeded(self, result: installer.InstallResult) -> None:
        self.result = result
        qgisenv.activate(result.target)
        self.progress.setValue(1000)
        if result.restart_needed:
            loaded = getattr(sys.modules.get("torch"), "__file__", None) or "a failed import"
            message = (f"torch {result.torch_version} is installed, but this QGIS session had already loaded "
                       f"torch ({loaded}): restart QGIS so that mmlc uses the new one.")
        else:
            message = (f"Done: torch {result.torch_version} installed ({'CUDA' if result.cuda_available else 'CPU'})"
                       f" in {result.seconds:.0f} s. The mmlc algorithms work now.")
        self._set_state("done", message)

    def _failed(self, message: str, cancelled: bool) -> None:
        self.progress.setValue(0)
        if cancelled:
            self._set_state("cancelled", "Cancelled: nothing was changed. Press Install to start again.")
        else:
            self._set_state("failed", f"Failed, nothing was changed: {message}")

    def wait_for_install(self, timeout_ms: int) -> bool:
        """Block until the install thread ends (tests and closing); True when it ended."""
        return self.thread is None or self.thread.wait(timeout_ms)

    def show_diagnostics(self) -> None:
        from .diagnostics import DiagnosticsDialog

        DiagnosticsDialog(self.profile, self).exec()

    def reject(self) -> None:
        if self.state != "installing":  # Escape must not hide a running install either
            super().reject()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        if self.state == "installing":
            event.ignore()  # Cancel first: closing must not leave pip running
            return
        super().closeEvent(event)
