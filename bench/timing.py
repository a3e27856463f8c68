"""Timing helper shared by the bench scripts (run as ``python bench/<script>.py``)."""
from __future__ import annotations

import time
from typing import Callable


def best_of(fn: Callable[[], object], repeats: int = 3, warmup: bool = True) -> float:
    """Smallest wall time of ``repeats`` calls (after one warm-up call unless ``warmup`` is False),
    in seconds: robust to a noisy machine."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


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


def timed_ratio(a: Callable[[], object], b: Callable[[], object], repeat: int = 7) -> tuple[float, float, float]:
    """Median wall times of ``a`` and ``b`` and the median of the per-pair ratios b/a.

    Pairs run back to back in alternating order (a b, b a, ...) after one warm-up each; the
    median of per-pair ratios is robust to the machine's speed drifting between pairs (seen
    here: the same bare forward pass took 1.9 to 3.3 s within one minute).
    """
    a()
    b()
    ta, tb, ratios = [], [], []
    for k in range(repeat):
        order = ((a, ta), (b, tb)) if k % 2 == 0 else ((b, tb), (a, ta))
        for fn, out in order:
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        ratios.append(tb[-1] / ta[-1])
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    return med(ta), med(tb), med(ratios)
