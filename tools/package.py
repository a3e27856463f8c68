"""Build the plugin zip a user installs with Plugins > Install from ZIP, and check it the way the
QGIS plugin repository (plugins.qgis.org) does before accepting it.

The zip holds one folder ``mmlc/`` with what QGIS needs at run time (metadata, code, the built-in
models and their reports, docs, licences, and one held-out sample scene per built-in model to try
it on) and nothing for development (tests, bench, CI, tools, build files, caches, the training
scenes). Every entry is a plain, non-executable file (mode 0644) with a fixed timestamp, so the same
tree gives the same bytes.

Then, on the zip as written (unpacked into a temporary folder), like the repository's upload scan:

* size: at most :data:`SIZE_LIMIT` bytes (the repository's limit);
* files: no hidden file, no executable bit, no binary-executable or script type;
* Bandit over every Python file, every test at every severity and confidence (the repository
  blocks on any finding of the tests its administrators enable; running all of them is stricter);
* detect-secrets over every file (``scan --all-files``, all plugins).

Any finding fails the build and no zip is left at the target. ``python3 tools/package.py dist``
(``make package``); Bandit and detect-secrets come from requirements-dev.txt (the repository's
``.venv`` is searched as well as PATH).
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INCLUDE_FILES = ("metadata.txt", "__init__.py", "__main__.py", "plugin.py", "README.md", "LICENSE")
INCLUDE_DIRS = ("ui", "core", "models", "resources", "docs")
EXCLUDE_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache"}
EXCLUDE_SUFFIXES = (".pyc", ".pyo", ".aux.xml", ".tmp")
SAMPLES = Path("resources/sample_data")
_HELD_OUT = "bigearthnet/S1A_IW_GRDH_1SDV_20170617T064724_29UPU_36_85"
#: The sample files the zip carries (relative to resources/sample_data): the scenes ``make demo``
#: maps, which none of the built-in models was trained on, so a user can try every built-in
#: offline, plus the licences and attributions that must travel with them. The training scenes,
#: the Landsat set and the Xi'an layout stay in the source repository (tests, demo, make models).
SHIPPED_SAMPLES = (
    "README.md",
    "bigearthnet/LICENSE.bigearthnet-common.Apache-2.0.txt",
    f"{_HELD_OUT}__s2_10band_10m.tif",
    f"{_HELD_OUT}__s1_vv_vh_db.tif",
    f"{_HELD_OUT}__weak_label_s2rules.tif",
    f"{_HELD_OUT}_labels_metadata.json",
    "share_alike/LICENSE-NOTE.md",
    "share_alike/spacenet6/LICENSE.solaris.Apache-2.0.txt",
    "share_alike/spacenet6/ms2_2m_uint16.tif",
    "share_alike/spacenet6/pan2.tif",
)
#: plugins.qgis.org refuses larger packages.
SIZE_LIMIT = 25_000_000
#: File types the repository's scan reports as executables or scripts.
SUSPICIOUS_SUFFIXES = (".exe", ".dll", ".so", ".dylib", ".bat", ".sh", ".ps1", ".cmd", ".pyd", ".pyc", ".pyo")
#: 1980-01-01, the earliest time a zip entry can hold: reproducible archives.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class PackageError(Exception):
    """The zip cannot be built or would be refused by the plugin repository."""


@dataclass
class ScanReport:
    """What the repository-style checks found in one zip (all empty lists = accepted)."""

    size: int
    files: list[str] = field(default_factory=list)
    bandit: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    python_files: int = 0

    @property
    def findings(self) -> list[str]:
        too_big = [f"size: {self.size:,} bytes > the limit of {SIZE_LIMIT:,}"] if self.size > SIZE_LIMIT else []
        return too_big + self.files + self.bandit + self.secrets

    def summary(self) -> str:
        return (f"{self.size:,} bytes (limit {SIZE_LIMIT:,}); Bandit over {self.python_files} Python files: "
                f"{len(self.bandit)} findings; detect-secrets: {len(self.secrets)} findings; "
                f"file checks: {len(self.files)} findings")


def _is_shipped(rel: Path) -> bool:
    if rel.parts[:2] != SAMPLES.parts:
        return True
    return rel.relative_to(SAMPLES).as_posix() in SHIPPED_SAMPLES


def plugin_files(root: Path = ROOT) -> list[Path]:
    """Files (relative to the repository root) that belong in the plugin zip."""
    files = [Path(f) for f in INCLUDE_FILES if (root / f).is_file()]
    for d in INCLUDE_DIRS:
        for p in sorted((root / d).rglob("*")):
            rel = p.relative_to(root)
            if p.is_file() and not EXCLUDE_PARTS & set(rel.parts) and not p.name.endswith(EXCLUDE_SUFFIXES) \
                    and not any(part.startswith(".") for part in rel.parts) and _is_shipped(rel):
                files.append(rel)
    return files


def read_version(root: Path = ROOT) -> str:
    for line in (root / "metadata.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("version="):
            return line.split("=", 1)[1].strip()
    raise PackageError("metadata.txt has no version")


def write_zip(path: Path, root: Path = ROOT) -> None:
    """Write the plugin files under ``mmlc/`` as plain 0644 entries, DEFLATE level 9."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for rel in plugin_files(root):
            info = zipfile.ZipInfo(f"mmlc/{rel.as_posix()}", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            z.writestr(info, (root / rel).read_bytes(), compresslevel=9)


def check_entries(zip_path: Path) -> list[str]:
    """Hidden files, executable bits, executable or script types, and entries outside ``mmlc/``."""
    found = []
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            name = info.filename
            parts = name.rstrip("/").split("/")
            if parts[0] != "mmlc" or ".." in parts or name.startswith("/"):
                found.append(f"files: {name}: outside the plugin folder mmlc/")
            if any(p.startswith(".") for p in parts):
                found.append(f"files: {name}: hidden file")
            if (info.external_attr >> 16) & 0o111:
                found.append(f"files: {name}: executable permission")
            if name.lower().endswith(SUSPICIOUS_SUFFIXES):
                found.append(f"files: {name}: executable or binary code type")
    return found


def _tool(name: str) -> str:
    """Path of a scanning tool: beside this Python, in the repository's .venv, or on PATH."""
    candidates = [Path(sys.executable).parent / name, ROOT / ".venv" / "bin" / name]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which(name)
    if found:
        return found
    raise PackageError(f"{name} is not installed: run `make setup` (or pip install -r requirements-dev.txt); "
                       "the plugin repository runs it on every upload")


def run_bandit(folder: Path) -> tuple[list[str], int]:
    """Bandit findings (every test, every severity and confidence) and the number of files scanned."""
    res = subprocess.run([_tool("bandit"), "-r", str(folder), "-f", "json", "-q"],
                         capture_output=True, text=True, timeout=600)
    try:
        report = json.loads(res.stdout)
    except json.JSONDecodeError as e:
        raise PackageError(f"Bandit gave no report (exit {res.returncode}): {res.stderr.strip()[-500:]}") from e
    found = [f"bandit: {Path(r['filename']).relative_to(folder)}:{r['line_number']}: {r['test_id']} "
             f"({r['issue_severity']}/{r['issue_confidence']}) {r['issue_text']}" for r in report.get("results", [])]
    found += [f"bandit: {Path(e['filename']).relative_to(folder)}: not scanned: {e['reason']}"
              for e in report.get("errors", [])]
    scanned = sum(1 for k in report.get("metrics", {}) if k != "_totals")
    return found, scanned


def run_detect_secrets(folder: Path) -> list[str]:
    """detect-secrets findings over every file of ``folder`` (all plugins)."""
    res = subprocess.run([_tool("detect-secrets"), "scan", "--all-files", "."], cwd=folder,
                         capture_output=True, text=True, timeout=600)
    try:
        report = json.loads(res.stdout)
    except json.JSONDecodeError as e:
        raise PackageError(f"detect-secrets gave no report (exit {res.returncode}): "
                           f"{res.stderr.strip()[-500:]}") from e
    return [f"detect-secrets: {path}:{s.get('line_number')}: {s.get('type')}"
            for path, secrets in sorted(report.get("results", {}).items()) for s in secrets]


def scan_zip(zip_path: Path) -> ScanReport:
    """Run the repository-style checks on ``zip_path`` as it would be uploaded."""
    report = ScanReport(size=zip_path.stat().st_size, files=check_entries(zip_path))
    with tempfile.TemporaryDirectory(prefix="mmlc-scan-") as tmp:
        with zipfile.ZipFile(zip_path) as z:
            z.extractall(tmp)
        report.bandit, report.python_files = run_bandit(Path(tmp))
        report.secrets = run_detect_secrets(Path(tmp))
    return report


def build(dest: Path, root: Path = ROOT, scan: bool = True) -> tuple[Path, ScanReport | None]:
    """Write ``dest/mmlc-<version>.zip``; with ``scan`` refuse it (PackageError, no zip left at the
    target) when a repository-style check finds anything."""
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / f"mmlc-{read_version(root)}.zip"
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    try:
        write_zip(tmp, root)
        report = scan_zip(tmp) if scan else None
        if report is not None and report.findings:
            raise PackageError(f"the plugin repository would refuse {out.name}: {report.summary()}\n  "
                               + "\n  ".join(report.findings))
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out, report


def main(argv: list[str]) -> int:
    dest = Path(argv[1] if len(argv) > 1 else "dist")
    try:
        path, report = build(dest)
    except PackageError as e:
        print(f"package: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path}: {report.summary() if report else ''}")
    print("install it with Plugins > Manage and Install Plugins > Install from ZIP")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
