"""Progress reporting and cancellation, decoupled from QGIS and from terminals.

``core.api`` functions take any object with this interface: the Processing feedback adapter in
``ui/``, the tqdm adapter in the CLI, and test doubles all fit.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional, Protocol

from .errors import Cancelled

log = logging.getLogger("mmlc")


class Progress(Protocol):
    """What the core reports to and asks of its caller."""

    def set_fraction(self, fraction: float) -> None: ...

    def info(self, message: str) -> None: ...

    def warn(self, message: str) -> None: ...

    def cancelled(self) -> bool: ...


class NullProgress:
    """Progress that logs messages and is never cancelled."""

    def set_fraction(self, fraction: float) -> None:
        pass

    def info(self, message: str) -> None:
        log.info(message)

    def warn(self, message: str) -> None:
        log.warning(message)

    def cancelled(self) -> bool:
        return False


class CallbackProgress(NullProgress):
    """Progress built from plain callables (handy in tests and scripts).

    ``cancel_after`` cancels once ``set_fraction`` was called that many times (test helper).
    """

    def __init__(
        self,
        on_fraction: Optional[Callable[[float], None]] = None,
        on_message: Optional[Callable[[str], None]] = None,
        cancel_after: Optional[int] = None,
    ) -> None:
        self.on_fraction = on_fraction
        self.on_message = on_message
        self.cancel_after = cancel_after
        self.calls = 0
        self.fractions: list[float] = []
        self.messages: list[str] = []

    def set_fraction(self, fraction: float) -> None:
        self.calls += 1
        self.fractions.append(fraction)
        if self.on_fraction:
            self.on_fraction(fraction)

    def info(self, message: str) -> None:
        self.messages.append(message)
        if self.on_message:
            self.on_message(message)

    warn = info

    def cancelled(self) -> bool:
        return self.cancel_after is not None and self.calls >= self.cancel_after


def check_cancel(progress: Progress) -> None:
    """Raise :class:`Cancelled` if the caller asked to stop (call between batches)."""
    if progress.cancelled():
        raise Cancelled("cancelled by the user; no output was written")


def format_duration(seconds: float) -> str:
    """``45 s``, ``3 min 05 s``, ``1 h 02 min``: a duration for a log line."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


class Steps:
    """Work counted in units (tiles, pixels) that moves a progress bar and logs a time estimate.

    ``advance(n)`` adds ``n`` done units (thread-safe; units may be fractional) and sets the
    fraction ``start + (end - start) * done / total``, never backwards. The first estimate of
    the time left is logged once ``first_log_s`` have passed, then every ``log_every_s``
    (linear in the units done so far); the bar is set to ``start`` at once (or at :meth:`begin`
    with ``begin=False``, e.g. once the network is loaded, which then does not count in the
    estimate), so a dialog never shows a busy bar while the first unit is computed. ``clock`` is
    for tests. ``advance(n, settle=False)`` moves the bar without feeding the estimate: steps
    inside a batch (network stages) cost unevenly, so the estimate uses whole batches only.
    """

    FIRST_LOG_S: float = 3.0
    LOG_EVERY_S: float = 15.0

    def __init__(self, progress: Progress, total: float, what: str = "work", start: float = 0.0,
                 end: float = 1.0, first_log_s: Optional[float] = None, log_every_s: Optional[float] = None,
                 clock: Optional[Callable[[], float]] = None, begin: bool = True) -> None:
        self.progress, self.total, self.what = progress, max(float(total), 1e-9), what
        self.start, self.end = start, end
        self.first_log_s = self.FIRST_LOG_S if first_log_s is None else first_log_s
        self.log_every_s = self.LOG_EVERY_S if log_every_s is None else log_every_s
        self.clock = clock or time.perf_counter
        self.done = 0.0
        self.settled = 0.0  # ``done`` at the last settled advance, and when that was
        self.t_settled = 0.0
        self._lock = threading.Lock()
        self._last = start
        self.begin() if begin else self._restart()

    def _restart(self) -> None:
        self.t0 = self.t_settled = self.clock()
        self._next_log = self.t0 + self.first_log_s

    def begin(self) -> None:
        """Start the clock of the estimate and set the bar to ``start``."""
        self._restart()
        self.progress.set_fraction(self._last)

    @property
    def fraction(self) -> float:
        return min(self.done / self.total, 1.0)

    def advance(self, units: float, settle: bool = True) -> None:
        if units <= 0:
            return
        with self._lock:
            self.done += units
            frac = max(self._last, self.start + (self.end - self.start) * self.fraction)
            self._last = frac
            now = self.clock()
            message = None
            if settle:
                self.settled, self.t_settled = self.done, now
            if settle and now >= self._next_log and self.done < self.total:
                self._next_log = now + self.log_every_s
                message = self.estimate(now)
            self.progress.set_fraction(frac)  # under the lock: threads never set it backwards
        if message:
            self.progress.info(message)

    def estimate(self, now: Optional[float] = None) -> str:
        """``37 % of the tiles done in 12 s, about 20 s left`` (the rate of the settled units)."""
        now = self.clock() if now is None else now
        elapsed = now - self.t0
        f = self.fraction
        s = min(self.settled / self.total, 1.0)
        span = self.t_settled - self.t0
        left = max(span * (1.0 - s) / s - (now - self.t_settled), 0.0) if s > 0 else float("nan")
        tail = f", about {format_duration(left)} left" if s > 0 else ""
        return f"{100 * f:.0f} % of the {self.what} done in {format_duration(elapsed)}{tail}"
