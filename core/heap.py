"""Keep freed memory from piling up in glibc's heap during long tiled runs.

glibc serves allocations above its mmap threshold (128 KiB at start) with ``mmap`` and returns
them to the system on ``free``; but each time such a block is freed, glibc raises the threshold
to that block's size (up to 32 MiB), so later strips, batches and tiles of that size come from
the heap instead, where freed space interleaved with live data is not returned. Measured here
(docs/benchmarks.md): classifying 8192 x 8192 pixels peaked 37 MB higher than the engine's own
allocations (tracemalloc) because of that; with the threshold pinned the peak follows the
allocations. :func:`pin_mmap_threshold` pins it (which also stops the adjustment) once per
process. It changes only where large blocks live, not what is allocated; set the environment
variable ``MMLC_KEEP_MALLOC_SETTINGS=1`` to leave glibc untouched.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: glibc's ``M_MMAP_THRESHOLD`` parameter number for ``mallopt``.
_M_MMAP_THRESHOLD = -3
#: Blocks from this size up are mapped (and unmapped on free).
MMAP_THRESHOLD_BYTES = 4 << 20

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
