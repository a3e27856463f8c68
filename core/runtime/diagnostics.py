"""A plain-text report of everything a dependency bug report needs.

QGIS, Qt, Python (path and version), numpy, GDAL, torch, CUDA and each visible device, the plugin
version, the plugin's package folder and its packages, and the last install log. ``ui/`` adds the
QGIS and Qt versions (this module does not import qgis) and shows the report with a copy button;
``python -m mmlc diagnostics`` prints it.

Nothing here raises: each probe that fails reports its error in the text instead.
"""
from __future__ import annotations

import importlib.util
import os
import platform
import sys
from pathlib import Path
from typing import Callable, Mapping, Optional

from . import installer, qgisenv

LOG_TAIL_LINES = 200


def _safe(fn: Callable[[], list[str]]) -> list[str]:
    try:
        return fn()
    except Exception as e:  # a report must come out whatever is broken
        return [f"error: {type(e).__name__}: {e}"]


def _module_line(name: str, version_attr: str = "__version__") -> list[str]:
    if importlib.util.find_spec(name) is None:
        return [f"{name}: not installed"]
    try:
        mod = __import__(name)
    except Exception as e:  # broken install: say how
        return [f"{name}: fails to import: {type(e).__name__}: {e}"]
    return [f"{name}: {getattr(mod, version_attr, '?')} ({os.path.dirname(getattr(mod, '__file__', '') or '?')})"]


def python_section() -> list[str]:
    lines = [f"Python: {sys.version.split()[0]} ({platform.python_implementation()})",
             f"sys.executable: {sys.executable}", f"sys.prefix: {sys.prefix}"]
    try:
        lines.append(f"QGIS's interpreter: {qgisenv.find_qgis_python()}")
    except FileNotFoundError as e:
        lines.append(f"QGIS's interpreter: not found ({e})")
    lines.append(f"platform: {platform.platform()} ({platform.machine()})")
    return lines


def gdal_section() -> list[str]:
    if importlib.util.find_spec("osgeo") is None:
        return ["GDAL (osgeo): not installed"]
    from osgeo import gdal

    return [f"GDAL: {gdal.__version__}"]


def torch_section() -> list[str]:
    """torch, its CUDA and every visible device (imports torch when it is installed)."""
    lines = _module_line("torch")
    if not lines[0].startswith("torch: ") or "not installed" in lines[0] or "fails" in lines[0]:
        return lines
    import torch

    lines.append(f"torch built with CUDA: {torch.version.cuda or 'no (CPU build)'}")
    cuda = torch.cuda.is_available()
    lines.append(f"CUDA available: {cuda}")
    if cuda:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            lines.append(f"  cuda:{i}: {p.name}, {p.total_memory / 2**30:.1f} GB, compute {p.major}.{p.minor}")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        lines.append("Apple MPS: available")
    lines.append(f"CPU threads: {torch.get_num_threads()}")
    lines += _module_line("safetensors")
    return lines


def deps_section(profile: Optional[Path]) -> list[str]:
    if profile is None:
        return ["profile: unknown"]
    folder = qgisenv.deps_dir(profile)
    lines = [f"profile: {profile}", f"package folder: {folder}"]
    if not folder.is_dir():
        return lines + ["  (does not exist: nothing installed by mmlc for this Python)"]
    lines.append(f"  on sys.path: {str(folder) in sys.path}; size {installer.folder_size(folder) / 2**20:.0f} MB")
    lines += [f"  {p}" for p in installer.installed_packages(folder)]
    return lines


def log_section(profile: Optional[Path]) -> list[str]:
    text = installer.last_log(profile) if profile is not None else None
    if text is None:
        return ["(no install log)"]
    lines = text.splitlines()
    skipped = len(lines) - LOG_TAIL_LINES
    return ([f"... ({skipped} earlier lines in the log file)"] if skipped > 0 else []) + lines[-LOG_TAIL_LINES:]


def report(profile: Optional[Path], host: Mapping[str, str] | None = None,
           gpu: Optional[qgisenv.GpuInfo] = None) -> str:
    """The whole report. ``host``: lines the caller knows (QGIS and Qt versions from ui/)."""
    from ..version import plugin_version

    sections: list[tuple[str, list[str]]] = [
        ("mmlc", [f"plugin version: {plugin_version()}", f"plugin folder: {Path(__file__).resolve().parents[2]}"]),
        ("QGIS and Qt", [f"{k}: {v}" for k, v in (host or {}).items()] or ["(not running inside QGIS)"]),
        ("Python", _safe(python_section)),
        ("numpy and GDAL", _safe(lambda: _module_line("numpy")) + _safe(gdal_section)),
        ("PyTorch", _safe(torch_section)),
        ("NVIDIA", _safe(lambda: [(gpu or qgisenv.detect_gpu()).describe()])),
        ("Installed by mmlc", _safe(lambda: deps_section(profile))),
        ("Last install log", _safe(lambda: log_section(profile))),
    ]
    out = []
    for title, lines in sections:
        out.append(f"== {title} ==")
        out += lines
        out.append("")
    return "\n".join(out)
