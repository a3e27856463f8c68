"""QGIS 4 (Qt6) readiness: plugin.py, ui/, tools/ and the tests hold no Qt5-only form.

Two kinds of check, both on the syntax tree (so text inside strings and comments never counts):

* enums, by introspection: every ``A.B`` whose ``A`` resolves to a Qt or QGIS class imported from
  ``qgis.*`` and whose ``B`` is a member of an enum nested in that class must be written through
  the enum (``Qt.AlignmentFlag.AlignLeft``, ``Qgis.MessageLevel.Warning``): PyQt6 keeps only the
  scoped form, PyQt5 (5.11+) and QGIS 3.22's bindings accept both;
* a list of constructs that do not exist under Qt6 or that bypass ``qgis.PyQt``: ``exec_()``,
  ``PyQt5``/``PyQt6``/``sip`` imported directly, ``QAction``/``QActionGroup``/``QShortcut``
  imported from one Qt module instead of the guarded ``ui.qt_compat`` (QtWidgets on Qt5, QtGui on
  Qt6), classes removed in Qt6 (``QRegExp``, ``QDesktopWidget``, ...), ``pyqtSignal``/``pyqtSlot``
  from anywhere but ``qgis.PyQt.QtCore``.

The checker is tested on bad and good snippets, so it cannot pass by finding nothing.
"""
from __future__ import annotations

import ast
import enum
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ["plugin.py", "__init__.py", "ui", "tools", "tests"]
#: The one module allowed to import the Qt5/Qt6-placed classes from a Qt module (guarded).
COMPAT_MODULE = "ui/qt_compat.py"
#: Classes QtWidgets has on Qt5 and QtGui has on Qt6.
MOVED_TO_QTGUI = {"QAction", "QActionGroup", "QShortcut", "QUndoCommand", "QUndoGroup", "QUndoStack",
                  "QFileSystemModel"}
#: Classes (and modules) Qt6 no longer has.
REMOVED_IN_QT6 = {"QRegExp", "QRegExpValidator", "QDesktopWidget", "QGLWidget", "QGLFormat", "QMatrix",
                  "QTextCodec", "QStringRef", "QLinkedList", "QSound", "QWebView", "QtWebKit", "QtWebKitWidgets"}
#: Methods removed in Qt6 (called as attributes, any receiver).
REMOVED_METHODS = {"exec_": "exec()", "print_": "print()", "desktop": "QScreen (QApplication.desktop() is gone)"}
SIGNAL_NAMES = {"pyqtSignal", "pyqtSlot", "pyqtProperty"}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text}"


def _is_enum_member(value: Any) -> Optional[type]:
    """The enum type of ``value`` when it is a member of a PyQt/sip/Python enum, else None."""
    t = type(value)
    if isinstance(value, enum.Enum):
        return t
    meta = type(t).__name__
    if meta in ("enumtype", "EnumType") and t is not int:  # sip (PyQt5) enum types
        return t
    return None


class _Resolver:
    """Maps names bound by ``import``/``from ... import`` of ``qgis.*`` modules to live objects."""

    def __init__(self, tree: ast.AST) -> None:
        self.names: dict[str, Any] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "qgis":
                mod = self._module(node.module)
                if mod is None:
                    continue
                for alias in node.names:
                    obj = getattr(mod, alias.name, None)
                    if obj is None:
                        obj = self._module(f"{node.module}.{alias.name}")
                    if obj is not None:
                        self.names[alias.asname or alias.name] = obj
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "qgis" and alias.asname:
                        mod = self._module(alias.name)
                        if mod is not None:
                            self.names[alias.asname] = mod

    @staticmethod
    def _module(name: str) -> Any:
        try:
            return importlib.import_module(name)
        except Exception:  # a Qt binding module this QGIS lacks (e.g. QtWebKit): nothing to resolve
            return None

    def resolve(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Name):
            return self.names.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            return getattr(base, node.attr, None) if base is not None else None
        return None


def scan_source(source: str, path: str = "<snippet>") -> list[Finding]:
    """Every Qt5-only form in ``source`` (a module's text)."""
    tree = ast.parse(source)
    found: list[Finding] = []
    resolver = _Resolver(tree)

    def add(node: ast.AST, text: str) -> None:
        found.append(Finding(path, getattr(node, "lineno", 0), text))

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = {a.name for a in node.names}
            top = module.split(".")[0]
            if top in ("PyQt5", "PyQt6", "PySide2", "PySide6", "sip"):
                add(node, f"`from {module} import`: import Qt through qgis.PyQt")
            if module in ("qgis.PyQt.QtWidgets", "qgis.PyQt.QtGui") and names & MOVED_TO_QTGUI \
                    and path != COMPAT_MODULE:
                add(node, f"{sorted(names & MOVED_TO_QTGUI)} from {module}: QtWidgets on Qt5, QtGui on Qt6; "
                          "import them from ui.qt_compat")
            for name in sorted(names & REMOVED_IN_QT6):
                add(node, f"{name} does not exist in Qt6")
            if module.startswith("qgis.PyQt.") and module.split(".")[-1] in REMOVED_IN_QT6:
                add(node, f"{module} does not exist in Qt6")
            if names & SIGNAL_NAMES and module != "qgis.PyQt.QtCore":
                add(node, f"{sorted(names & SIGNAL_NAMES)} from {module}: take them from qgis.PyQt.QtCore")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in ("PyQt5", "PyQt6", "PySide2", "PySide6", "sip"):
                    add(node, f"`import {alias.name}`: import Qt through qgis.PyQt")
        elif isinstance(node, ast.Attribute):
            if node.attr in REMOVED_METHODS:
                add(node, f".{node.attr}: use {REMOVED_METHODS[node.attr]}")
            if node.attr in REMOVED_IN_QT6 and resolver.resolve(node.value) is not None:
                add(node, f"{node.attr} does not exist in Qt6")
            base = resolver.resolve(node.value)
            if isinstance(base, type):
                try:
                    value = getattr(base, node.attr)
                except AttributeError:
                    continue
                enum_type = _is_enum_member(value)
                if enum_type is not None and enum_type is not base:
                    owner = ast.unparse(node.value)
                    add(node, f"unscoped enum {owner}.{node.attr}: write "
                              f"{owner}.{enum_type.__name__}.{node.attr}")
        elif isinstance(node, ast.Name) and node.id in REMOVED_IN_QT6 and node.id in resolver.names:
            add(node, f"{node.id} does not exist in Qt6")
    return sorted(set(found), key=lambda f: (f.path, f.line, f.text))


def _scanned_files() -> Iterator[Path]:
    for entry in SCANNED:
        p = ROOT / entry
        if p.is_file():
            yield p
        elif p.is_dir():
            yield from sorted(q for q in p.rglob("*.py") if "__pycache__" not in q.parts)


# -- the checker itself -------------------------------------------------------------------------
BAD_SNIPPET = '''
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QAction, QMessageBox, QDialog
from qgis.PyQt import QtCore
from qgis.core import Qgis, QgsProcessing
from PyQt5.QtCore import pyqtSignal
import sip
label.setAlignment(Qt.AlignLeft | Qt.AlignTop)
button = QMessageBox.Ok
level = Qgis.Warning
kinds = [QgsProcessing.TypeVectorPolygon]
colour = QtCore.Qt.white
QDialog().exec_()
'''

GOOD_SNIPPET = '''
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import QMessageBox, QDialog
from qgis.core import Qgis, QgsProcessing
label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
button = QMessageBox.StandardButton.Ok
level = Qgis.MessageLevel.Warning
kinds = [QgsProcessing.SourceType.TypeVectorPolygon]
QDialog().exec()
text = "Qt.AlignLeft and exec_() in a string are not code"
'''


def test_the_checker_finds_each_qt5_form_in_a_bad_snippet() -> None:
    found = scan_source(BAD_SNIPPET)
    text = "\n".join(str(f) for f in found)
    for expected in ("unscoped enum Qt.AlignLeft", "unscoped enum Qt.AlignTop", "QMessageBox.Ok",
                     "Qgis.Warning: write Qgis.MessageLevel.Warning", "QgsProcessing.TypeVectorPolygon",
                     "QtCore.Qt.white", ".exec_", "from PyQt5.QtCore", "import sip",
                     "['QAction'] from qgis.PyQt.QtWidgets", "['pyqtSignal'] from PyQt5.QtCore"):
        assert expected in text, f"the checker missed {expected!r}; it found:\n{text}"
    assert {f.line for f in found} >= {3, 6, 7, 8, 9, 10, 11, 12, 13}


def test_the_checker_accepts_the_qt6_forms() -> None:
    assert scan_source(GOOD_SNIPPET) == []


def test_qt_compat_gives_the_action_classes_of_this_qt() -> None:
    from mmlc.ui.qt_compat import QAction, QActionGroup, QShortcut
    from qgis.PyQt.QtCore import QObject

    assert issubclass(QAction, QObject) and issubclass(QActionGroup, QObject) and issubclass(QShortcut, QObject)
    assert QAction.__module__.split(".")[0] in ("PyQt5", "PyQt6")


# -- the repository ------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [str(p.relative_to(ROOT)) for p in _scanned_files()])
def test_no_qt5_only_form_in(path: str) -> None:
    found = scan_source((ROOT / path).read_text(encoding="utf-8"), path)
    assert not found, "Qt5-only forms (QGIS 4 runs Qt6):\n" + "\n".join(str(f) for f in found)


def test_metadata_allows_qgis_4() -> None:
    meta = dict(line.split("=", 1) for line in (ROOT / "metadata.txt").read_text(encoding="utf-8").splitlines()
                if "=" in line)
    assert meta.get("qgisMaximumVersion", "").strip() == "4.99"
    assert meta.get("supportsQt6", "").strip() == "True"  # what QGIS's Qt6 plugin manager looks for
