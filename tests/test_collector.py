"""core/runtime/collector.py: during an mmlc run, full collections skip the objects the host process
already had (issue 21: one full collection of a QGIS process's heap took 0.15-0.18 s)."""
from __future__ import annotations

import gc
import threading

import pytest
from mmlc.core.runtime import collector


class _Cycle:
    """An object that refers to itself: only the cyclic collector frees it."""

    def __init__(self, freed: list) -> None:
        self.me = self
        self.freed = freed

    def __del__(self) -> None:
        self.freed.append(True)


@pytest.fixture(autouse=True)
def _clean_gc(monkeypatch):
    monkeypatch.delenv("MMLC_KEEP_GC", raising=False)
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_objects_from_before_the_run_are_left_alone_until_it_ends() -> None:
    freed: list = []
    _Cycle(freed)  # garbage that only the cyclic collector can free, made before the run
    with collector.frozen_heap():
        assert collector.frozen_count() > 0
        gc.collect()
        assert freed == []  # frozen: not walked, so not freed
        inside: list = []
        _Cycle(inside)  # garbage made during the run is collected as usual
        gc.collect()
        assert inside == [True]
    assert collector.frozen_count() == 0
    gc.collect()
    assert freed == [True]  # given back at the end, then collected


def test_nested_and_concurrent_runs_unfreeze_when_the_last_one_ends() -> None:
    inner_started, outer_may_end = threading.Event(), threading.Event()
    counts: list = []

    def other_run() -> None:
        with collector.frozen_heap():
            inner_started.set()
            outer_may_end.wait(10)
        counts.append(collector.frozen_count())

    with collector.frozen_heap():
        worker = threading.Thread(target=other_run)
        worker.start()
        inner_started.wait(10)
        with collector.frozen_heap():
            pass
        assert collector.frozen_count() > 0  # the nested block left, the outer and the other run go on
    assert collector.frozen_count() > 0  # the other run still works
    outer_may_end.set()
    worker.join(10)
    assert counts == [0]


def test_an_error_in_the_run_still_unfreezes() -> None:
    with pytest.raises(RuntimeError):
        with collector.frozen_heap():
            raise RuntimeError("the run failed")
    assert collector.frozen_count() == 0


def test_mmlc_keep_gc_leaves_the_collector_alone(monkeypatch) -> None:
    monkeypatch.setenv("MMLC_KEEP_GC", "1")
    with collector.frozen_heap():
        assert collector.frozen_count() == 0
