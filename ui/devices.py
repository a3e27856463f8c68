"""The devices PyTorch can run on here, for the DEVICE dropdown, without a slow start of QGIS.

The dropdown lists ``auto``, ``cpu`` and, where PyTorch sees them, ``cuda`` plus every CUDA GPU as
``cuda:N`` (shown with its name) and Apple's ``mps``. Importing torch takes seconds (12 s measured
cold on the 2-core reference machine), and algorithms are created when QGIS starts, so torch is
imported only when it could list more than the CPU: never when it is missing (the plugin must
load without it) and never for a CPU-only build, which says so in its ``torch/version.py``
(``cuda = None``, no ROCm ``hip``), read as text. The answer is cached for the session.
"""
from __future__ import annotations

import contextlib
import importlib.util
import platform
import re
import sys
from pathlib import Path
from typing import Optional

_CACHE: Optional[list[tuple[str, str]]] = None

BASE_CHOICES: list[tuple[str, str]] = [("auto", "auto (a GPU if there is one, else the CPU)"), ("cpu", "cpu")]


def _cpu_only_build() -> Optional[bool]:
    """True when the installed torch is a CPU-only build (read from its version.py without
    importing it), False when it was built for CUDA/ROCm, None when torch is missing or the file
    cannot be read."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        return None
    try:
        text = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    cuda = re.search(r"^cuda\s*(?::\s*[^=]+)?=\s*(.+)$", text, re.MULTILINE)
    hip = re.search(r"^hip\s*(?::\s*[^=]+)?=\s*(.+)$", text, re.MULTILINE)
    has = [m is not None and m.group(1).strip() not in ("None", "''", '""') for m in (cuda, hip)]
    return not any(has)


def probe_torch() -> list[tuple[str, str]]:
    """(value, label) of the accelerators torch sees (imports torch)."""
    import torch

    out: list[tuple[str, str]] = []
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        out.append(("cuda", "cuda (the current GPU)"))
        for i in range(n):
            out.append((f"cuda:{i}", f"cuda:{i}: {torch.cuda.get_device_name(i)}"))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append(("mps", "mps (Apple GPU)"))
    return out


def device_choices(refresh: bool = False) -> list[tuple[str, str]]:
    """(value, label) pairs for the DEVICE dropdown, ``auto`` first; cached for the session."""
    global _CACHE
    if _CACHE is not None and not refresh:
        return list(_CACHE)
    choices = list(BASE_CHOICES)
    cpu_only = _cpu_only_build()
    may_have_gpu = "torch" in sys.modules or cpu_only is False or (cpu_only is not None and
                                                                   platform.system() == "Darwin")
    if cpu_only is not None and may_have_gpu:
        with contextlib.suppress(Exception):  # a broken CUDA install must not stop the plugin from loading
            choices += probe_torch()
    _CACHE = choices
    return list(choices)
