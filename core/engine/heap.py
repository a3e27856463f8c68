"""Keep freed memory from piling up in glibc's heap during long tiled runs.

glibc serves allocations above its mmap threshold (128 KiB at start) with ``mmap`` and returns
them to the system on ``free``; each time such a block is freed, glibc raises the threshold to
that block's size (up to 32 MiB) and its heap-trim threshold to twice that, so freed strips,
batches and tiles stay in the heap. Measured here (docs/benchmarks.md): classifying 8192 x 8192
pixels peaked 37 MB above the engine's own allocations (tracemalloc). :func:`pin_mmap_threshold`
sets the threshold once per process, which stops both adjustments (the heap top is trimmed
again). The value is a trade-off, measured on the same machine: 4 MiB bounds the peak best
(8192^2 / 1024^2 = 1.08) but maps every activation of 4 MiB or more afresh, and the page faults
made ASANet's forward pass ~40 % slower; 32 MiB (the most glibc itself would reach) gives 1.13
with no measurable slowdown. Set ``MMLC_KEEP_MALLOC_SETTINGS=1`` to leave glibc untouched.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: glibc's ``M_MMAP_THRESHOLD`` parameter number for ``mallopt``.
_M_MMAP_THRESHOLD = -3
#: Blocks from this size up are mapped (and unmapped on free).
MMAP_THRESHOLD_BYTES = 32 << 20

_done: bool | None = None
_libc = None


def _glibc():
    """The C library when it is glibc on Linux (and not switched off), else None."""
    global _libc
    if _libc is None:
        _libc = False
        if os.environ.get("MMLC_KEEP_MALLOC_SETTINGS") != "1" and sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version"):
                    _libc = libc
            except OSError:
                pass
    return _libc or None


def _rss_bytes() -> int | None:
    """This process's resident size (``/proc/self/statm``), None where unavailable."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


#: :class:`Trimmer` gives pages back once the resident size grew this much since its last trim.
TRIM_SLACK_BYTES: int = 32 << 20


class Trimmer:
    """Give the free pages of every glibc arena back (``malloc_trim(0)``) whenever the resident
    size has grown by ``slack`` bytes since the last time; call it between batches.

    Why: with several threads allocating and freeing tiles and activations (model workers,
    reader, writer), freed blocks stay scattered over their per-thread arenas and the resident
    size crept up with the raster's size (8192^2 / 1024^2 peak 1.32 with two model workers).
    Trimming after every batch bounded it (1.11) but made asanet-demo ~4 % slower: the freed
    activation pages are faulted in again by the next batch. Growth-triggered trimming leaves a
    steady run alone and catches the creep. A no-op without glibc or ``/proc``.
    """

    def __init__(self, slack: int = TRIM_SLACK_BYTES) -> None:
        self.slack = slack
        self.floor: int | None = None
        self.trims = 0

    def __call__(self) -> bool:
        libc = _glibc()
        rss = _rss_bytes() if libc is not None else None
        if rss is None:
            return False
        if self.floor is None or rss < self.floor:
            self.floor = rss
            return False
        if rss < self.floor + self.slack:
            return False
        libc.malloc_trim(0)
        self.trims += 1
        self.floor = _rss_bytes() or rss
        return True


def pin_mmap_threshold(nbytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Pin glibc's mmap threshold to ``nbytes`` (once per process); True if it is pinned.

    False where the C library is not glibc (Windows, macOS, musl), or when switched off.
    """
    global _done
    if _done is not None:
        return _done
    libc = _glibc()
    _done = bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, int(nbytes)))
    return _done
