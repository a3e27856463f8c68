"""Timing helper shared by the bench scripts (run as ``python bench/<script>.py``)."""
from __future__ import annotations

import time
from typing import Callable


def timed_pair(a: Callable[[], object], b: Callable[[], object], repeat: int = 7) -> tuple[float, float]:
    """Median wall times of ``a`` and ``b``, run alternately after one warm-up each.

    Alternating keeps both measures under the same load on a shared machine, so their ratio
    is meaningful even when the absolute figures drift.
    """
    a()
    b()
    ta, tb = [], []
    for _ in range(repeat):
        for fn, out in ((a, ta), (b, tb)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return sorted(ta)[len(ta) // 2], sorted(tb)[len(tb) // 2]
