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

With PyQt6 installed (requirements-dev.txt), every Qt name the code takes from ``qgis.PyQt`` (or
``ui.qt_compat``) and every attribute chain on it (``Qt.GlobalColor.white``,
``QImage.Format.Format_ARGB32``) is also looked up in the real PyQt6, in a separate process: what
QGIS 4 will resolve, without QGIS 4.

The checkers are tested on bad and good snippets, so they cannot pass by finding nothing.
"""
from __future__ import annotations

import ast
import enum
import importlib
import importlib.util
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

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


def qt6_gaps(source: str, path: str, qt_module: Callable[[str], Any]) -> list[Finding]:
    """Qt names and attribute chains of ``source`` that the Qt6 binding lacks.

    ``qt_module(name)`` returns the binding's module (``"QtCore"`` -> PyQt6.QtCore) or None. Names
    come from ``from qgis.PyQt.<Module> import ...``, ``from qgis.PyQt import <Module>`` and
    ``ui.qt_compat`` (QtGui under Qt6); the compat module itself is skipped (its Qt5 branch is
    the point of it).
    """
    if path == COMPAT_MODULE:
        return []
    tree = ast.parse(source)
    found: set[Finding] = set()
    bound: dict[str, tuple[str, list[str]]] = {}  # local name -> (Qt module, attribute path)

    def lookup(module: str, attrs: list[str]) -> bool:
        obj = qt_module(module)
        for a in attrs:
            if obj is None:
                return False
            obj = getattr(obj, a, None)
        return obj is not None

    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or not node.module:
            continue
        parts = node.module.split(".")
        for alias in node.names:
            local = alias.asname or alias.name
            if parts[:2] == ["qgis", "PyQt"] and len(parts) == 3:
                bound[local] = (parts[2], [alias.name])
            elif node.module == "qgis.PyQt":
                bound[local] = (alias.name, [])
            elif parts[-1] == "qt_compat":
                bound[local] = ("QtGui", [alias.name])
            else:
                continue
            module, attrs = bound[local]
            if not lookup(module, attrs):
                found.add(Finding(path, node.lineno, f"{'.'.join([module] + attrs)} is not in Qt6"))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain: list[str] = []
        cur: ast.AST = node
        while isinstance(cur, ast.Attribute):
            chain.insert(0, cur.attr)
            cur = cur.value
        if isinstance(cur, ast.Name) and cur.id in bound:
            module, attrs = bound[cur.id]
            if not lookup(module, attrs + chain):
                found.add(Finding(path, node.lineno, f"{'.'.join([cur.id] + chain)} is not in Qt6"))
    return sorted(found, key=lambda f: (f.path, f.line, f.text))


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


QT6_BAD = """
from qgis.PyQt.QtCore import Qt, QRegExp
from qgis.PyQt.QtWidgets import QAction, QDialog
from qgis.PyQt import QtGui
button = Qt.MouseButton.MidButton
fine = Qt.GlobalColor.white
d = QDialog()
mat = QtGui.QMatrix()
"""

_QT6_SCRIPT = """
import importlib, json, sys
sys.path.insert(0, {tests!r})
import test_qt6_forms as t


def qt_module(name):
    try:
        return importlib.import_module("PyQt6." + name)
    except ImportError:
        return None


root = t.ROOT
found = [str(f) for p in t._scanned_files()
         for f in t.qt6_gaps(p.read_text(encoding="utf-8"), str(p.relative_to(root)), qt_module)]
bad = [str(f) for f in t.qt6_gaps(t.QT6_BAD, "<bad>", qt_module)]
gui = importlib.import_module("PyQt6.QtGui")
compat = all(hasattr(gui, n) for n in ("QAction", "QActionGroup", "QShortcut"))
print("RESULT" + json.dumps({{"found": found, "bad": bad, "compat": compat}}))
"""


@pytest.fixture(scope="module")
def qt6_lookup() -> dict:
    """Run the Qt6 look-ups in a process of their own (PyQt6 beside QGIS's PyQt5 is not wanted)."""
    if importlib.util.find_spec("PyQt6") is None:
        pytest.skip("PyQt6 is not installed (pip install -r requirements-dev.txt)")
    res = subprocess.run([sys.executable, "-c", _QT6_SCRIPT.format(tests=str(ROOT / "tests"))],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "RESULT" in res.stdout, res.stdout[-2000:] + res.stderr[-2000:]
    return json.loads(res.stdout.split("RESULT", 1)[1])


def test_the_qt6_lookup_finds_what_qt6_lacks(qt6_lookup: dict) -> None:
    bad = "\n".join(qt6_lookup["bad"])
    for expected in ("QtCore.QRegExp is not in Qt6", "QtWidgets.QAction is not in Qt6",
                     "Qt.MouseButton.MidButton is not in Qt6", "QtGui.QMatrix is not in Qt6"):
        assert expected in bad, bad
    assert "GlobalColor" not in bad and "QDialog" not in bad


def test_every_qt_name_the_plugin_uses_exists_in_qt6(qt6_lookup: dict) -> None:
    assert qt6_lookup["found"] == [], "\n".join(qt6_lookup["found"])
    assert qt6_lookup["compat"]  # ui.qt_compat's first choice is there under Qt6
