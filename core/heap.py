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


def pin_mmap_threshold(nbytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Pin glibc's mmap threshold to ``nbytes`` (once per process); True if it is pinned.

    False where the C library is not glibc (Windows, macOS, musl), or when switched off.
    """
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("MMLC_KEEP_MALLOC_SETTINGS") == "1" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
            return False
        _done = bool(libc.mallopt(_M_MMAP_THRESHOLD, int(nbytes)))
    except OSError:
        return False
    return _done
