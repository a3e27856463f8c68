"""Keep Python's cyclic garbage collector off the objects a host process had before an mmlc run.

Why (issue 21, measured in docs/benchmarks.md): a QGIS process holds a large Python heap (Qt and
QGIS wrappers, Processing, every provider), and a *full* collection walks all of it. Inside
``qgis_process`` one full collection took 0.15-0.18 s, against none at all during the same
classification from the CLI; torch's import and a network's construction allocate enough objects
to trigger one or more. On a 120 x 120 px patch that was the whole gap between a warm QGIS
process (1.0-1.3 s) and the CLI (0.8 s).

:func:`frozen_heap` moves every object tracked at entry to the collector's permanent generation
(:func:`gc.freeze`) and gives them back at exit (:func:`gc.unfreeze`): objects made during the
run are collected as usual; the host's own objects, long-lived by nature, are just not walked
again and again while mmlc works. Nothing is freed or kept differently from the host's view once
the run ends. Nested and concurrent uses share one count, so the heap is unfrozen when the last
one leaves.

Design choice (not from a paper): ``MMLC_KEEP_GC=1`` leaves the collector alone.
"""
from __future__ import annotations

import gc
import os
import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_depth = 0


def enabled() -> bool:
    return os.environ.get("MMLC_KEEP_GC", "") not in ("1", "true", "yes")


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Within the block, full collections skip every object that existed when it was entered."""
    global _depth
    if not enabled():
        yield
        return
    with _lock:
        _depth += 1
        gc.freeze()  # also for a nested entry: objects made since the outer one are long-lived too
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.unfreeze()


def frozen_count() -> int:
    """How many objects the collector now leaves alone (for tests and diagnostics)."""
    return gc.get_freeze_count()
