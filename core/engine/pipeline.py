"""The threads of one inference run: model workers side by side, a writer stage behind them.

Threads share the work so that the model never waits: a reader (:class:`.prefetch.Prefetcher`,
reading, normalising and stacking the next batches of windows), the model on the next batches
(:class:`ModelWorkers`: for dense models on a CPU several single-threaded workers side by side,
see :func:`cpu_workers`; otherwise the calling thread), and a writer (:class:`BackgroundStage`)
that blends the tiles in order and writes the finished pixels. :class:`InlineStage` is the
writer's interface on the calling thread (``background=False``: everything on one thread).
"""
from __future__ import annotations

import queue
import threading
import time
from collections import deque
from typing import Any, Callable, Optional

#: Batches of model output queued for the writer thread.
WRITE_QUEUE: int = 2

#: Most model workers on a CPU (see :func:`cpu_workers`): each holds one batch's activations.
CPU_WORKERS_MAX: int = 4


def cpu_workers(device: Any, threads: int) -> int:
    """Model worker threads for a run on ``device`` with ``threads`` intra-op threads: on a CPU,
    ``min(threads, CPU_WORKERS_MAX)``, each running whole batches with ``threads // workers``
    intra-op threads of its own; 1 on a GPU.

    Design choice (batch parallelism instead of only intra-op parallelism): on the 2-core
    reference machine, 2 workers x 1 thread ran the same forward passes 20 % (asanet-demo),
    12 % (hfdnet-demo) and 25-30 % (the overhead benchmark's net) faster than 1 worker x 2
    threads (docs/benchmarks.md): a thread of an operator's parallel region no longer waits at
    its barrier for the other, nor for a reader or writer thread that took its core.
    """
    return max(1, min(int(threads), CPU_WORKERS_MAX)) if on_cpu(device) else 1


def on_cpu(device: Any) -> bool:
    """Whether ``device`` (a torch device or its name) is the CPU."""
    return getattr(device, "type", str(device)) == "cpu"


class ModelWorkers:
    """``workers`` threads that run model steps on consecutive batches at once, results taken in
    submission order (:meth:`submit` returns the oldest step's result once ``workers`` steps are
    in flight, :meth:`drain` the rest), so the writer still gets tiles in row order.

    Each thread gives torch ``threads_each`` intra-op threads; torch's setting is global, so
    :meth:`close` restores the caller's. With ``workers`` 1 the steps run on the calling thread
    and torch's threads are left alone.
    """

    def __init__(self, workers: int, threads_each: int) -> None:
        self.workers = max(int(workers), 1)
        self._pending: Any = deque()
        self._pool = None
        self._prev_threads: Optional[int] = None
        if self.workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            import torch

            self._prev_threads = torch.get_num_threads()
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="mmlc-model",
                                            initializer=torch.set_num_threads, initargs=(max(int(threads_each), 1),))

    def submit(self, fn: Callable[[Any], Any], item: Any) -> list[Any]:
        """Start ``fn(item)``; returns the results that are due, oldest first (maybe none)."""
        if self._pool is None:
            return [fn(item)]
        self._pending.append(self._pool.submit(fn, item))
        return [self._pending.popleft().result()] if len(self._pending) >= self.workers else []

    def drain(self) -> list[Any]:
        """The results of the steps still in flight, in submission order."""
        out = []
        while self._pending:
            out.append(self._pending.popleft().result())
        return out

    def close(self) -> None:
        """Drop steps not started, wait for running ones, restore torch's thread count; never raises."""
        if self._pool is not None:
            for f in self._pending:
                f.cancel()
            self._pending.clear()
            self._pool.shutdown(wait=True)
            self._pool = None
            import torch

            torch.set_num_threads(self._prev_threads)


class BackgroundStage:
    """Runs ``fn(*args)`` for each call on a worker thread, in call order.

    The calling thread hands its arguments over (they must not be reused by the caller); at
    most ``depth`` calls wait in the queue, so memory stays bounded. An error in the worker is
    raised in the caller at the next call or at :meth:`close`; after an error or
    :meth:`cancel` the remaining calls are dropped.
    """

    def __init__(self, fn: Callable[..., None], depth: int = WRITE_QUEUE, name: str = "mmlc-writer") -> None:
        self._fn = fn
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: Optional[BaseException] = None
        self._dropping = False
        self.cpu_s = 0.0  # CPU time the worker spent in ``fn``
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None and not self._dropping:
                t = time.thread_time()
                try:
                    self._fn(*item)
                except BaseException as e:  # handed to the caller
                    self._error = e
                self.cpu_s += time.thread_time() - t

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def __call__(self, *args: Any) -> None:
        self._raise()
        self._queue.put(args)

    def close(self) -> None:
        """Wait for every queued call to finish; re-raise a worker error."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()

    def cancel(self) -> None:
        """Drop the queued calls and stop the worker (after a failure or cancel); never raises."""
        self._dropping = True
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


class InlineStage:
    """The interface of :class:`BackgroundStage`, running ``fn`` on the calling thread."""

    def __init__(self, fn: Callable[..., None]) -> None:
        self._fn = fn
        self.cpu_s = 0.0

    def __call__(self, *args: Any) -> None:
        t = time.thread_time()
        try:
            self._fn(*args)
        finally:
            self.cpu_s += time.thread_time() - t

    def close(self) -> None:
        pass

    def cancel(self) -> None:
        pass


def stage(fn: Callable[..., None], background: bool) -> BackgroundStage | InlineStage:
    """``fn`` as the writer stage: on a thread of its own (``background``) or the calling thread."""
    return BackgroundStage(fn) if background else InlineStage(fn)
