"""Load PyTorch's CPU library with its own symbols first (``RTLD_DEEPBIND``) inside QGIS processes.

Why (issue 21): importing torch inside ``qgis_process`` took ~0.3-0.5 s longer than from a plain
Python on the 2-core reference machine, almost all of it in the dynamic loader while it maps
``libtorch_cpu.so`` (docs/benchmarks.md, session 7: ``torch._C`` 0.70 s against 0.39 s). The
library has ~112,000 symbol relocations, and the loader looks every symbol up in the process's
global scope first: in a plain ``python3`` that is 6 libraries, in ``qgis_process.bin`` (and the
``qgis`` desktop) 195, because QGIS links its libraries into the executable. Most of those
symbols are torch's own, found only after the 195 have been searched.

``RTLD_DEEPBIND`` puts the library's own lookup scope (itself and its dependencies: libc10,
libgomp, libstdc++, libc...) ahead of the global one, so its own symbols are found at once. It
also keeps torch's calls to its BLAS entry points (``sgemm_``...) on torch's own MKL instead of
the system OpenBLAS that QGIS put in the global scope, which :mod:`.torch_blas` otherwise repairs
after the import (that check still runs and then finds nothing to repoint).

Loading the library with the flag before ``import torch`` is enough: torch's own loads of it
later find it already mapped. Done only on Linux with glibc's ``RTLD_DEEPBIND``, only when neither
torch nor its library is loaded yet, and only where mmlc's QGIS side asks for it (the CLI's global
scope is small, so it would gain nothing there). Design choice (not from a paper); switch it off
with ``MMLC_TORCH_DEEPBIND=0``. The measured effect is in docs/benchmarks.md.
"""
from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Optional

from .torch_blas import _loaded_path  # stdlib + ctypes: which mapped file has that name

__all__ = ["Preload", "preload_torch", "enabled"]


@dataclass
class Preload:
    """What :func:`preload_torch` did (one per process)."""

    library: str = ""    # the file loaded ("" when nothing was loaded)
    seconds: float = 0.0
    skipped: str = ""    # why nothing was loaded
    error: str = ""      # the loader's message when loading failed (torch's import then runs as usual)

    def summary(self) -> str:
        if self.library:
            return f"libtorch_cpu loaded with its own symbols first in {self.seconds:.2f} s"
        return f"libtorch_cpu not preloaded: {self.error or self.skipped}"


_lock = threading.Lock()
_result: Optional[Preload] = None


def enabled() -> bool:
    return os.environ.get("MMLC_TORCH_DEEPBIND", "") not in ("0", "false", "no")


def _torch_library() -> Optional[str]:
    """``torch/lib/libtorch_cpu.so`` (wheels) or its versioned name (Debian's python3-torch), found
    without importing torch."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        return None
    folder = os.path.join(os.path.dirname(spec.origin), "lib")
    found = sorted(glob.glob(os.path.join(folder, "libtorch_cpu.so*")), key=len)
    return found[0] if found else None


def _why_not() -> str:
    if not enabled():
        return "MMLC_TORCH_DEEPBIND=0"
    if not sys.platform.startswith("linux") or not hasattr(os, "RTLD_DEEPBIND"):
        return "not Linux with glibc"
    if "torch" in sys.modules or _loaded_path("libtorch_cpu") is not None:
        return "torch is already loaded"
    return ""


def preload_torch() -> Preload:
    """Load libtorch_cpu with ``RTLD_NOW | RTLD_GLOBAL | RTLD_DEEPBIND`` once per process, before
    torch's import (see the module docstring); never raises: a failure is recorded, and torch's
    import then loads the library the usual way."""
    global _result
    with _lock:
        if _result is not None:
            return _result
        result = Preload(skipped=_why_not())
        library = None if result.skipped else _torch_library()
        if not result.skipped and library is None:
            result.skipped = "torch's lib folder has no libtorch_cpu"
        if library is not None:
            t = time.perf_counter()
            try:
                ctypes.CDLL(library, mode=os.RTLD_NOW | os.RTLD_GLOBAL | os.RTLD_DEEPBIND)
                result.library = library
            except OSError as e:
                result.error = str(e)
            result.seconds = time.perf_counter() - t
        _result = result
        return result
