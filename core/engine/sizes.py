"""Sizes asked for by a user or a card, checked against the raster and the machine's memory.

A tile larger than the raster buys nothing (the window is padded out to it), and a tile whose
buffers cannot fit in memory ends in a ``MemoryError`` traceback after minutes of work (TILE_SIZE
100000 asks for 186 GiB). :func:`clamp_tile` cuts a tile to the raster (never below what the card
was trained with, rounded up to the networks' stride of 32); :func:`check_tile_memory` refuses,
before any pixel is read, a tile and batch whose buffers alone would not fit, with the figures.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

from ..errors import InputError

#: Dense networks downsample by up to 32: tiles are kept multiples of it when clamped.
STRIDE = 32


def available_memory() -> Optional[int]:
    """Bytes of memory available to a new allocation (Linux MemAvailable, else physical), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def clamp_tile(tile: int, height: int, width: int, floor: int) -> int:
    """``tile`` cut to the raster's longer side (rounded up to :data:`STRIDE`), but not below
    ``floor`` (the tile the model was trained with, which small rasters already use)."""
    side = -(-max(height, width) // STRIDE) * STRIDE
    return max(1, min(int(tile), max(int(floor), side)))


def tile_buffer_bytes(tile: int, batch: int, bands: Sequence[int], ratios: Sequence[int], classes: int) -> int:
    """Bytes of the buffers one batch of dense tiles needs at least: float32 inputs (at each
    input's grid ratio), logits and probabilities, blend weights; activations come on top."""
    px = tile * tile
    inputs = sum(b * r * r for b, r in zip(bands, ratios)) * px * 4
    outputs = 2 * classes * px * 4 + px * 4
    return batch * (inputs + outputs)


def check_tile_memory(tile: int, batch: int, bands: Sequence[int], ratios: Sequence[int], classes: int,
                      available: Optional[int] = None) -> None:
    """InputError when the tile's buffers exceed the memory available (with both figures)."""
    need = tile_buffer_bytes(tile, batch, bands, ratios, classes)
    have = available_memory() if available is None else available
    if have is not None and need > have:
        raise InputError(
            f"TILE_SIZE {tile} with BATCH_SIZE {batch} needs at least {need / 2**30:.1f} GiB for its buffers, "
            f"more than the {have / 2**30:.1f} GiB of memory available; choose a smaller TILE_SIZE or BATCH_SIZE"
        )
