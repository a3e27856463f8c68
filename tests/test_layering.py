"""The import direction ui -> core -> models, checked by parsing every module (no imports run)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QT_QGIS = ("qgis", "PyQt5", "PyQt6", "PyQt4", "sip", "processing")


def _imports(path: Path) -> list[tuple[int, str, int]]:
    """(line, module, relative level) of every import in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, 0) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.lineno, node.module or "", node.level))
    return out


def _modules(sub: str) -> list[Path]:
    return sorted((ROOT / sub).rglob("*.py"))


@pytest.mark.parametrize("sub", ["core", "models"])
def test_no_qgis_or_qt_below_ui(sub: str) -> None:
    bad = [f"{p.relative_to(ROOT)}:{line} imports {mod}"
           for p in _modules(sub) for line, mod, level in _imports(p)
           if level == 0 and mod.split(".")[0] in QT_QGIS]
    assert not bad, "core/ and models/ must not import qgis/PyQt:\n" + "\n".join(bad)


def test_models_do_not_import_core_or_ui() -> None:
    bad = []
    for p in _modules("models"):
        for line, mod, level in _imports(p):
            top = mod.split(".")[0]
            if (level >= 2 and top in ("core", "ui")) or mod.startswith(("mmlc.core", "mmlc.ui")):
                bad.append(f"{p.relative_to(ROOT)}:{line} imports {'.' * level}{mod}")
    assert not bad, "models/ must depend on torch only:\n" + "\n".join(bad)


def test_core_does_not_import_ui() -> None:
    bad = [f"{p.relative_to(ROOT)}:{line}" for p in _modules("core") for line, mod, level in _imports(p)
           if (level >= 2 and mod.split(".")[0] == "ui") or mod.startswith("mmlc.ui")]
    assert not bad, "core/ must not import ui/:\n" + "\n".join(bad)


def test_guard_catches_a_violation(tmp_path: Path) -> None:
    """The parser really sees qgis imports (so the guard above can fail)."""
    f = tmp_path / "m.py"
    f.write_text("from qgis.core import QgsProject\nimport PyQt5.QtCore\nfrom ..ui import x\n")
    mods = _imports(f)
    assert (1, "qgis.core", 0) in mods and (2, "PyQt5.QtCore", 0) in mods and (3, "ui", 2) in mods


def _plugin_root_imports(path: Path, root: Path = ROOT) -> list[str]:
    """Imports in ``path`` that resolve to the plugin root package itself (``from ... import x``
    climbing exactly to the root): the root imports qgis machinery and ui/, so core/ and models/
    must not depend on it (the version lives in core/version.py)."""
    depth = len(path.relative_to(root).parts) - 1  # folders between the root and the file
    return [f"{path.relative_to(root)}:{line} imports {'.' * level}{mod}"
            for line, mod, level in _imports(path) if level == depth + 1 and not mod]


@pytest.mark.parametrize("sub", ["core", "models"])
def test_no_import_of_the_plugin_root(sub: str) -> None:
    bad = [b for p in _modules(sub) for b in _plugin_root_imports(p)]
    assert not bad, f"{sub}/ must not import the plugin root package:\n" + "\n".join(bad)


def test_plugin_root_guard_catches_a_violation(tmp_path: Path) -> None:
    """A planted ``from ... import __version__`` two folders down (and ``from .. import`` one down)
    is caught; a sibling import at the same depth is not."""
    (tmp_path / "core" / "fitting").mkdir(parents=True)
    deep = tmp_path / "core" / "fitting" / "m.py"
    deep.write_text("from ... import __version__\nfrom ..errors import InputError\nfrom .. import data\n")
    shallow = tmp_path / "core" / "n.py"
    shallow.write_text("from .. import __version__\nfrom . import errors\n")
    assert _plugin_root_imports(deep, tmp_path) == ["core/fitting/m.py:1 imports ..."]
    assert _plugin_root_imports(shallow, tmp_path) == ["core/n.py:1 imports .."]


def test_intra_package_imports_are_relative() -> None:
    bad = [f"{p.relative_to(ROOT)}:{line} imports {mod}"
           for sub in ("core", "models", "ui") for p in _modules(sub)
           for line, mod, level in _imports(p) if level == 0 and mod.split(".")[0] == "mmlc"]
    assert not bad, "use relative imports inside the package:\n" + "\n".join(bad)


def test_root_init_imports_on_its_own() -> None:
    """pytest imports the repository root's ``__init__.py`` as a stand-alone module ``__init__``
    when the checkout's folder is not a valid package name (a clone in ``/tmp/mmlc-clean``): a
    module-level relative import there failed every test at setup. Run the file the same way."""
    import runpy

    namespace = runpy.run_path(str(ROOT / "__init__.py"), run_name="__init__")
    assert callable(namespace["classFactory"])
    with pytest.raises(ImportError):  # the lazy version needs the package, and says so
        namespace["__getattr__"]("__version__")


def test_package_version_is_metadata_version() -> None:
    import configparser

    import mmlc

    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt", encoding="utf-8")
    assert mmlc.__version__ == meta["general"]["version"]
