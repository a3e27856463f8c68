"""Build the plugin zip a user installs with Plugins > Install from ZIP.

The zip holds one folder ``mmlc/`` with what QGIS needs at run time (metadata, code, resources,
docs, licences) and nothing for development (tests, bench, CI, tools, build files, caches).
Run with any Python: ``python3 tools/package.py dist``.
"""
from __future__ import annotations

import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INCLUDE_FILES = ("metadata.txt", "__init__.py", "__main__.py", "plugin.py", "README.md", "LICENSE")
INCLUDE_DIRS = ("ui", "core", "models", "resources", "docs")
EXCLUDE_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache"}
EXCLUDE_SUFFIXES = (".pyc", ".pyo", ".aux.xml", ".tmp")


def plugin_files(root: Path = ROOT) -> list[Path]:
    """Files (relative to the repository root) that belong in the plugin zip."""
    files = [Path(f) for f in INCLUDE_FILES if (root / f).is_file()]
    for d in INCLUDE_DIRS:
        for p in sorted((root / d).rglob("*")):
            rel = p.relative_to(root)
            if p.is_file() and not EXCLUDE_PARTS & set(rel.parts) and not p.name.endswith(EXCLUDE_SUFFIXES) \
                    and not p.name.startswith("."):
                files.append(rel)
    return files


def read_version(root: Path = ROOT) -> str:
    for line in (root / "metadata.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("version="):
            return line.split("=", 1)[1].strip()
    raise SystemExit("metadata.txt has no version")


def build(dest: Path, root: Path = ROOT) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / f"mmlc-{read_version(root)}.zip"
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for rel in plugin_files(root):
            z.write(root / rel, f"mmlc/{rel.as_posix()}")
    tmp.replace(out)
    return out


if __name__ == "__main__":
    path = build(Path(sys.argv[1] if len(sys.argv) > 1 else "dist"))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): install it with Plugins > Manage and "
          "Install Plugins > Install from ZIP")
