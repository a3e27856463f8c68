"""Where QGIS keeps its profiles, which Python it really runs, and the plugin's own package folder.

The optional packages mmlc needs (torch, safetensors and what they pull in) are installed into a
folder the plugin owns inside the user's QGIS profile, ``<profile>/python/mmlc-deps/<pyXY>``, never
into QGIS's own site-packages. :func:`activate` puts that folder on ``sys.path`` when the plugin
starts (before anything imports torch) and when the headless CLI runs.

This module imports neither qgis nor torch, nor anything of ``core`` that would (``core.errors``
imports the networks, which import torch): ``python -m mmlc install-deps`` must work exactly when
torch is missing.
"""
from __future__ import annotations

import configparser
import importlib
import os
import platform
import re
import subprocess  # nosec B404: asks candidate interpreters and nvidia-smi, argv lists, never a shell
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

DEPS_DIRNAME = "mmlc-deps"
#: Child processes started from QGIS on Windows must not flash a console window.
NO_WINDOW: int = getattr(subprocess, "CREATE_NO_WINDOW", 0)
DEFAULT_PROFILE = "default"


def python_tag(version_info: Sequence[int] = tuple(sys.version_info[:2])) -> str:
    """``py311`` for Python 3.11: each Python version gets its own folder (wheels are per version)."""
    return f"py{version_info[0]}{version_info[1]}"


# -- profiles ------------------------------------------------------------------------------------
def qgis_app_data_dir(system: str | None = None, env: Mapping[str, str] | None = None,
                      home: Path | None = None) -> Path:
    """QGIS's ``QStandardPaths::AppDataLocation`` for the "QGIS/QGIS3" application."""
    system = system or platform.system()
    env = os.environ if env is None else env
    home = home or Path.home()
    if system == "Windows":
        appdata = env.get("APPDATA") or str(home / "AppData" / "Roaming")
        return Path(appdata) / "QGIS" / "QGIS3"
    if system == "Darwin":
        return home / "Library" / "Application Support" / "QGIS" / "QGIS3"
    data_home = env.get("XDG_DATA_HOME") or str(home / ".local" / "share")
    return Path(data_home) / "QGIS" / "QGIS3"


def profiles_root(system: str | None = None, env: Mapping[str, str] | None = None,
                  home: Path | None = None) -> Path:
    """The folder holding QGIS's profiles.

    QGIS uses ``$QGIS_CUSTOM_CONFIG_PATH/profiles`` when that variable is set (what qgis_process on a
    server and our tests use), else ``<AppData>/QGIS/QGIS3/profiles``.
    """
    env = os.environ if env is None else env
    custom = env.get("QGIS_CUSTOM_CONFIG_PATH", "").strip()
    base = Path(custom) if custom else qgis_app_data_dir(system, env, home)
    return base / "profiles"


def default_profile_dir(system: str | None = None, env: Mapping[str, str] | None = None,
                        home: Path | None = None) -> Path:
    """QGIS's default profile: the one named in ``profiles.ini`` ([core] defaultProfile), else ``default``."""
    root = profiles_root(system, env, home)
    name = DEFAULT_PROFILE
    ini = root / "profiles.ini"
    if ini.is_file():
        parser = configparser.ConfigParser()
        try:
            parser.read(ini, encoding="utf-8")
            name = parser.get("core", "defaultProfile", fallback=DEFAULT_PROFILE).strip() or DEFAULT_PROFILE
        except (configparser.Error, UnicodeDecodeError):
            name = DEFAULT_PROFILE
    return root / name


def deps_base(profile_dir: Path) -> Path:
    """``<profile>/python/mmlc-deps``: holds one folder per Python version and the install logs."""
    return Path(profile_dir) / "python" / DEPS_DIRNAME


def deps_dir(profile_dir: Path, tag: str | None = None) -> Path:
    """The package folder for this Python: ``<profile>/python/mmlc-deps/pyXY``."""
    return deps_base(profile_dir) / (tag or python_tag())


def _is_site_dir(entry: str) -> bool:
    name = os.path.basename(os.path.normpath(entry)).lower()
    return name in ("site-packages", "dist-packages")


def activate(folder: Path, path: list[str] | None = None) -> bool:
    """Put ``folder`` on ``sys.path`` just before the first site-packages entry (once).

    Before site-packages, so the versions torch needs win over older copies QGIS's Python may have
    (Debian's sympy is too old for torch); after the plugin folders and PYTHONPATH, which stay in
    charge. Modules QGIS has already imported are unaffected, which is why the installer pins
    them (see :mod:`.installer`). Returns True when the folder exists and is on the path.
    """
    path = sys.path if path is None else path
    folder_s = str(folder)
    if not Path(folder).is_dir():
        return False
    if folder_s in path:
        return True
    index = next((i for i, entry in enumerate(path) if _is_site_dir(entry)), len(path))
    path.insert(index, folder_s)
    importlib.invalidate_caches()
    return True


def activate_for_profile(profile_dir: Path | str | None) -> Optional[Path]:
    """Activate ``<profile>/python/mmlc-deps/pyXY`` if it exists; returns it, or None."""
    if not profile_dir:
        return None
    folder = deps_dir(Path(profile_dir))
    return folder if activate(folder) else None


# -- QGIS's interpreter ---------------------------------------------------------------------------
def interpreter_candidates(executable: str, base_prefix: str, exec_prefix: str, system: str,
                           version: Sequence[int], env: Mapping[str, str]) -> list[str]:
    """Paths where the Python interpreter QGIS embeds lives, most likely first.

    Inside QGIS ``sys.executable`` is the qgis binary on Linux and Windows (and QGIS.app's binary on
    macOS), so the interpreter is derived from ``sys.base_prefix``/``sys.exec_prefix``:

    * Windows, OSGeo4W and the standalone installer: ``<root>\\apps\\Python3x\\python.exe`` (that
      folder is ``sys.prefix``);
    * macOS, the official app bundle: ``QGIS.app/Contents/MacOS/bin/python3`` (next to the QGIS
      binary), else ``<prefix>/bin/python3``;
    * Linux: ``<prefix>/bin/python3.X`` (``/usr/bin/python3`` for distribution packages), or a
      conda environment's ``$CONDA_PREFIX/bin/python``.
    """
    major, minor = version[0], version[1]
    exe = Path(executable) if executable else None
    out: list[str] = []
    if exe is not None and exe.name.lower().startswith("python"):
        out.append(str(exe))  # already an interpreter (the headless CLI, tests)
    prefixes = list(dict.fromkeys(p for p in (base_prefix, exec_prefix) if p))
    if system == "Windows":
        for prefix in prefixes:
            out += [str(Path(prefix) / "python.exe"), str(Path(prefix) / "python3.exe")]
        if exe is not None:  # <root>\bin\qgis-bin.exe -> <root>\apps\Python3x\python.exe
            out.append(str(exe.parent.parent / "apps" / f"Python{major}{minor}" / "python.exe"))
    elif system == "Darwin":
        if exe is not None:
            out.append(str(exe.parent / "bin" / "python3"))
        for prefix in prefixes:
            out += [str(Path(prefix) / "bin" / f"python{major}.{minor}"), str(Path(prefix) / "bin" / "python3")]
    else:
        for prefix in prefixes:
            out += [str(Path(prefix) / "bin" / f"python{major}.{minor}"), str(Path(prefix) / "bin" / "python3"),
                    str(Path(prefix) / "bin" / "python")]
        conda = env.get("CONDA_PREFIX")
        if conda:
            out.append(str(Path(conda) / "bin" / "python"))
    return list(dict.fromkeys(out))


def _reports_same_python(candidate: str, version: Sequence[int], base_prefix: str) -> bool:
    code = "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.base_prefix)"
    try:
        res = subprocess.run([candidate, "-c", code], capture_output=True,  # nosec B603: fixed code
                             text=True, timeout=60, creationflags=NO_WINDOW,
                             env=_clean_python_env())
    except (OSError, subprocess.SubprocessError):
        return False
    lines = res.stdout.split("\n")
    if res.returncode != 0 or len(lines) < 2:
        return False
    same_version = lines[0].strip() == f"{version[0]}.{version[1]}"
    same_prefix = not base_prefix or os.path.normcase(os.path.realpath(lines[1].strip())) == \
        os.path.normcase(os.path.realpath(base_prefix))
    return same_version and same_prefix


def _clean_python_env() -> dict[str, str]:
    """The environment for QGIS's interpreter as a subprocess: PYTHONHOME/PYTHONEXECUTABLE, which
    QGIS sets for its embedded Python on some platforms, would point a child at the wrong place."""
    env = dict(os.environ)
    for key in ("PYTHONEXECUTABLE", "__PYVENV_LAUNCHER__"):
        env.pop(key, None)
    return env


def find_qgis_python(executable: str | None = None, base_prefix: str | None = None,
                     exec_prefix: str | None = None, system: str | None = None,
                     version: Sequence[int] | None = None, env: Mapping[str, str] | None = None,
                     check: Callable[[str, Sequence[int], str], bool] = _reports_same_python) -> str:
    """The interpreter of the Python QGIS runs (the one whose pip installs what QGIS can import).

    Each candidate is started once and must report the same ``X.Y`` version and base prefix as the
    running Python. Raises FileNotFoundError with the places looked at when none fits.
    """
    executable = sys.executable if executable is None else executable
    base_prefix = sys.base_prefix if base_prefix is None else base_prefix
    exec_prefix = sys.base_exec_prefix if exec_prefix is None else exec_prefix
    system = system or platform.system()
    version = tuple(sys.version_info[:2]) if version is None else tuple(version)
    env = os.environ if env is None else env
    tried = []
    for cand in interpreter_candidates(executable, base_prefix, exec_prefix, system, version, env):
        tried.append(cand)
        if os.path.isfile(cand) and check(cand, version, base_prefix):
            return cand
    raise FileNotFoundError(
        f"could not find the Python {version[0]}.{version[1]} interpreter QGIS runs (looked at: "
        f"{', '.join(tried) or 'nothing'}); run `python -m mmlc install-deps` with QGIS's own Python "
        "(on Windows from the OSGeo4W Shell)")


# -- GPU ------------------------------------------------------------------------------------------
@dataclass
class GpuInfo:
    """What ``nvidia-smi`` reports: device names, driver version, and the newest CUDA it supports."""

    names: list[str] = field(default_factory=list)
    driver: str = ""
    cuda: Optional[tuple[int, int]] = None
    note: str = ""

    @property
    def present(self) -> bool:
        return bool(self.names)

    def describe(self) -> str:
        if not self.present:
            return f"no NVIDIA GPU found ({self.note})" if self.note else "no NVIDIA GPU found"
        cuda = f", driver supports CUDA {self.cuda[0]}.{self.cuda[1]}" if self.cuda else ""
        return f"{', '.join(self.names)} (driver {self.driver}{cuda})"


def parse_nvidia_smi(query_output: str, banner: str) -> GpuInfo:
    """Parse ``nvidia-smi --query-gpu=name,driver_version --format=csv,noheader`` and the banner
    of plain ``nvidia-smi`` (which carries ``CUDA Version: X.Y``)."""
    names, driver = [], ""
    for line in query_output.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[0]:
            names.append(parts[0])
            driver = driver or parts[1]
    m = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", banner)
    return GpuInfo(names, driver, (int(m.group(1)), int(m.group(2))) if m else None)


def detect_gpu(run: Callable[[list[str]], str] | None = None) -> GpuInfo:
    """Ask ``nvidia-smi`` (on PATH, or in its Windows default folder); no GPU when it is absent."""
    def default_run(args: list[str]) -> str:
        res = subprocess.run(args, capture_output=True, text=True, timeout=30,  # nosec B603: nvidia-smi
                             creationflags=NO_WINDOW)
        if res.returncode != 0:
            raise OSError(res.stderr.strip() or f"exit code {res.returncode}")
        return res.stdout

    run = run or default_run
    exe = "nvidia-smi"
    win = Path(os.environ.get("ProgramFiles", r"C:\Program Files")) / "NVIDIA Corporation" / "NVSMI" / "nvidia-smi.exe"
    if platform.system() == "Windows" and win.is_file():
        exe = str(win)
    try:
        query = run([exe, "--query-gpu=name,driver_version", "--format=csv,noheader"])
        banner = run([exe])
    except (OSError, subprocess.SubprocessError) as e:
        return GpuInfo(note=f"nvidia-smi: {str(e).strip() or type(e).__name__}"[:200])
    return parse_nvidia_smi(query, banner)
