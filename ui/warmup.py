"""Load PyTorch in the background while the analyst fills in an mmlc dialog (issue 21).

Importing torch inside a QGIS process takes 2-4 s on the 2-core reference machine (12 s from a
cold disk), ~0.7 s more than from a plain Python (docs/benchmarks.md: loading torch's shared
libraries into a process that has QGIS's libraries loaded took 0.8 s against 0.5 s, the rest is
spread over torch's import-time work; :mod:`core.runtime.torch_preload` now removes most of the
loader's share). The plugin does not import torch when it
loads, so every QGIS start stays light; the first mmlc run of a desktop session used to pay the
import after the Run click. Now opening an mmlc dialog from the Toolbox (Processing asks the
algorithm for a custom dialog first: :meth:`MmlcAlgorithm.createCustomParametersWidget`) starts
one daemon thread that imports torch and points its BLAS back at its own
(:func:`core.runtime.torch_blas.rebind_torch_blas`); by the time the inputs are chosen, torch is
ready. Nothing of mmlc is imported on that thread (the rebinding module is imported before it
starts), and a run waits for it before touching torch (:func:`wait`), so the two never import the
same modules at once.

Design choice (not from a paper): switch it off with the environment variable
``MMLC_NO_WARMUP=1`` (QGIS then imports torch at the first run, as before). It never starts under
``qgis_process`` or ``processing.run`` (no dialog is opened), when torch is already imported, or
when torch is missing (the install dialog handles that). Starting it as the provider registers in
``qgis_process run mmlc:...`` was tried and measured slower (whole command 6.03 s against 5.39 s,
medians of 10, hfdnet-demo): the import thread and qgis_process's own Python start-up contend for
the GIL, so the overlap costs more than it hides.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time
from typing import Any, Callable, Optional

_thread: Optional[threading.Thread] = None
#: what the warm-up did: ``seconds`` it took, ``error`` if the import failed (the run then reports it)
record: dict[str, Any] = {}


def enabled() -> bool:
    return os.environ.get("MMLC_NO_WARMUP", "") not in ("1", "true", "yes")


def start() -> bool:
    """Start importing torch on a background thread, once per session; True if it was started now."""
    global _thread
    if _thread is not None or "torch" in sys.modules or not enabled() or importlib.util.find_spec("torch") is None:
        return False
    from ..core.runtime.collector import frozen_heap  # stdlib only
    from ..core.runtime.torch_blas import rebind_torch_blas  # stdlib + ctypes: imported here, not on the thread
    from ..core.runtime.torch_preload import preload_torch  # stdlib + ctypes

    _thread = threading.Thread(target=_load, args=(rebind_torch_blas, frozen_heap, preload_torch),
                               name="mmlc-torch-warmup", daemon=True)
    _thread.start()
    return True


def _load(rebind_torch_blas: Callable[[], Any], frozen_heap: Callable[[], Any],
          preload_torch: Callable[[], Any]) -> None:
    t = time.perf_counter()
    try:
        with frozen_heap():  # torch's import triggers full collections: they skip QGIS's heap (core/runtime/collector.py)
            preload_torch()  # its library's own symbols first (core/runtime/torch_preload.py)
            import torch  # noqa: F401

            rebind_torch_blas()
    except Exception as e:  # reported by the run that needs torch, with its own message  # noqa: BLE001
        record["error"] = f"{type(e).__name__}: {e}"
    record["seconds"] = round(time.perf_counter() - t, 2)


def wait(feedback: Any = None) -> None:
    """Block until the warm-up has finished (no-op when none is running); called before a run
    imports anything of torch."""
    thread = _thread
    if thread is None or not thread.is_alive():
        return
    if feedback is not None:
        feedback.pushInfo("PyTorch is still loading (started when the dialog opened); waiting for it")
    thread.join()
