"""Is PyTorch importable from QGIS's Python, and if not, how does the user install it?

Checking uses ``importlib.util.find_spec`` so nothing heavy is imported when QGIS starts.
The install command pins the numpy QGIS already has, so pip never upgrades it under QGIS.
"""
from __future__ import annotations

import importlib.util
import os
import platform
import sys

TORCH_REQUIREMENT = "torch==2.13.0"
OTHER_REQUIREMENTS = ("safetensors>=0.4",)


def missing_packages() -> list[str]:
    """Top-level modules mmlc needs at run time that QGIS's Python cannot find."""
    return [m for m in ("torch", "safetensors") if importlib.util.find_spec(m) is None]


def _numpy_pin() -> str:
    try:
        import numpy

        return f"numpy=={numpy.__version__}"
    except ImportError:  # pragma: no cover - QGIS always ships numpy
        return ""


def qgis_python() -> str:
    """Best guess of the Python interpreter QGIS runs (sys.executable is qgis.exe on Windows)."""
    system = platform.system()
    if system == "Windows":
        return "python"  # inside the OSGeo4W Shell that comes with QGIS
    if system == "Darwin":
        return os.path.join(os.path.dirname(sys.executable), "bin", "python3")
    return "/usr/bin/python3" if sys.executable.startswith("/usr/") or not sys.executable else sys.executable


def install_commands(cuda: bool = False) -> list[str]:
    """The pip command lines that install the missing packages for QGIS's Python.

    torch does not depend on numpy, so installing it never touches QGIS's numpy; the second
    command pins numpy explicitly so safetensors cannot pull in another one either.
    """
    py = qgis_python()
    extra = " --user --break-system-packages" if platform.system() == "Linux" and py.startswith("/usr/") else ""
    index = "" if cuda else " --index-url https://download.pytorch.org/whl/cpu"
    rest = " ".join(f'"{p}"' for p in (*OTHER_REQUIREMENTS, _numpy_pin()) if p)
    return [f'{py} -m pip install{extra}{index} "{TORCH_REQUIREMENT}"', f"{py} -m pip install{extra} {rest}"]


def install_instructions() -> str:
    """A plain-words message for the user: what is missing and exactly what to run."""
    missing = missing_packages()
    what = ", ".join(missing) if missing else "nothing"
    system = platform.system()
    where = {
        "Windows": "Close QGIS, open the 'OSGeo4W Shell' from the Start menu (it comes with QGIS) and run:",
        "Darwin": "Close QGIS, open Terminal and run:",
    }.get(system, "Close QGIS, open a terminal and run:")
    return (
        f"mmlc needs PyTorch in QGIS's own Python (missing: {what}).\n\n"
        f"{where}\n\n" + "".join(f"    {c}\n" for c in install_commands(cuda=False)) + "\n"
        "For an NVIDIA GPU, use the CUDA build instead (pick the command for your CUDA version on "
        "pytorch.org, Get Started), keeping the same numpy pin:\n\n"
        + "".join(f"    {c}\n" for c in install_commands(cuda=True)) + "\n"
        "The numpy pin keeps the numpy QGIS was built with, so QGIS itself is never broken. "
        "Then restart QGIS."
    )
