"""Progress reporting and cancellation, decoupled from QGIS and from terminals.

``core.api`` functions take any object with this interface: the Processing feedback adapter in
``ui/``, the tqdm adapter in the CLI, and test doubles all fit.
"""
from __future__ import annotations

import logging
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
