"""Tile geometry and blending: where tiles start, how their shared borders are weighted, and
the blender that hands every pixel on as soon as no later tile touches it.

Dense models see tiles of ``tile`` x ``tile`` pixels, evenly spaced so that neighbours share at
least ``overlap`` pixels (:func:`tile_starts`); each tile's class probabilities are weighted by
a separable sin^2 ramp over the pixels it shares with each neighbour (:func:`ramp_weights`), so
blended maps have no seams. Blending softmax probabilities rather than logits is a design
choice (robust when logit scales differ between tiles). Memory does not grow with the raster
height: :class:`TileBlender` keeps only the strip that the next row of tiles overlaps. Patch
models read windows with a halo large enough for their patches (:func:`patch_halo`); their
windows do not overlap and pass through the same blender, which then has nothing to blend.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..data.patches import halo_for
from ..errors import InputError

#: A sink receives finished rectangles: (row0, col0, probabilities (K, h, w) float32, valid (h, w)).
#: The rectangles are disjoint and together cover the grid once; the arrays are valid only
#: during the call.
Sink = Callable[[int, int, np.ndarray, np.ndarray], None]


# --- tile geometry ---------------------------------------------------------------------
def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``size`` pixels, evenly spaced.

    As few tiles as possible such that neighbours share at least ``overlap`` pixels
    (``ceil((size - overlap) / (tile - overlap))``), spread evenly from 0 to ``size - tile``
    (design choice: equal overlaps instead of a regular stride with the last tile moved back
    onto the previous one, which would also make the strip kept between tile rows uneven).
    A raster smaller than one tile gets a single (padded) tile at 0.
    """
    if tile <= overlap:
        raise InputError(f"tile size {tile} must be larger than the overlap {overlap}")
    if size <= tile:
        return [0]
    n = -(-(size - overlap) // (tile - overlap))
    span = size - tile
    return [(i * span + (n - 1) // 2) // (n - 1) for i in range(n)]


def ramp_weights(length: int, ramp_in: int, ramp_out: int) -> np.ndarray:
    """1-D blending weights of a tile of ``length``: sin^2 up over its first ``ramp_in`` pixels
    (shared with the previous tile), cos^2 down over its last ``ramp_out`` (shared with the
    next), 1 elsewhere.

    With the ramps over exactly the shared pixels, the weights of two neighbours sum to 1 there
    (sin^2 + cos^2); where three tiles meet (a raster barely larger than two tiles) they do not,
    which :class:`TileBlender` corrects by normalising shared pixels.
    """
    w = np.ones(length, np.float32)
    if ramp_in > 0:
        t = (np.arange(ramp_in, dtype=np.float64) + 0.5) / ramp_in
        w[:ramp_in] *= (np.sin(t * math.pi / 2) ** 2).astype(np.float32)
    if ramp_out > 0:
        t = (np.arange(ramp_out, dtype=np.float64) + 0.5) / ramp_out
        w[length - ramp_out:] *= (np.cos(t * math.pi / 2) ** 2).astype(np.float32)
    return w


def patch_halo(cards: Sequence[Any]) -> int:
    """Halo (output pixels) a window needs so that every pixel's patch lies in the read block
    (:func:`.patches.halo_for` over the modalities)."""
    return max((halo_for(int(m.patch_size), int(m.patch_anchor), int(m.grid_ratio)) for m in cards), default=0)


# --- blending --------------------------------------------------------------------------
@dataclass
class Axis:
    """Tiles along one axis of the grid: starts and extents (clipped to the grid)."""

    starts: list[int]
    sizes: list[int]

    @classmethod
    def of(cls, size: int, starts: Sequence[int], tile: int) -> "Axis":
        return cls(list(starts), [min(tile, size - s) for s in starts])

    def final(self, i: int) -> int:
        """Pixels of tile i (from its start) that no later tile touches."""
        return self.starts[i + 1] - self.starts[i] if i + 1 < len(self.starts) else self.sizes[i]

    def shared_before(self, i: int) -> int:
        """Pixels at the start of tile i shared with tile i - 1."""
        return max(self.starts[i - 1] + self.sizes[i - 1] - self.starts[i], 0) if i > 0 else 0

    def ramp(self, i: int) -> np.ndarray:
        return ramp_weights(self.sizes[i], self.shared_before(i), self.sizes[i] - self.final(i))


class TileBlender:
    """Blends overlapping tiles, given in row-major order, and hands every pixel to ``sink`` as
    soon as no later tile touches it.

    State kept between tiles: the part of the previous tile shared with the current one (a
    tile's width x the overlap) and, across tile rows, the strip shared with the next tile row
    (the overlap x the grid width). A tile's own weighted probabilities are computed only on its
    shared borders; its inside (weight 1, no other tile) goes out as the model produced it.
    Pixels shared by tiles are normalised by their class sum, which is their total weight
    (every tile's probabilities sum to 1), so a tile without a valid pixel (``probs`` None)
    simply contributes nothing.
    """

    def __init__(self, num_classes: int, rows: Axis, cols: Axis, sink: Sink) -> None:
        self.K, self.rows, self.cols, self.sink = num_classes, rows, cols, sink
        self.W = cols.starts[-1] + cols.sizes[-1]  # the grid width: the last tile ends at the border
        self.wr = [rows.ramp(i) for i in range(len(rows.starts))]
        self.wc = [cols.ramp(j) for j in range(len(cols.starts))]
        self.below: Optional[tuple[np.ndarray, np.ndarray]] = None  # strip shared with this tile row
        self._below_next: Optional[tuple[np.ndarray, np.ndarray]] = None
        self.right: Optional[tuple[np.ndarray, np.ndarray]] = None  # part shared with the next tile
        self.valid_pixels = 0

    def add(self, i: int, j: int, probs: Optional[np.ndarray], valid: np.ndarray) -> None:
        """Tile (i, j): ``probs`` (K, >=h, >=w) softmax probabilities (modified in place) or None,
        ``valid`` (>=h, >=w); both are cut to the tile's extent on the grid."""
        h, w = self.rows.sizes[i], self.cols.sizes[j]
        r0, c0 = self.rows.starts[i], self.cols.starts[j]
        ot, fr = self.rows.shared_before(i), self.rows.final(i)
        ol, fc = self.cols.shared_before(j), self.cols.final(j)
        valid = np.array(valid[:h, :w], copy=True)
        p = np.zeros((self.K, h, w), np.float32) if probs is None else probs[:, :h, :w]
        if probs is not None:
            wr, wc = self.wr[i], self.wc[j]
            if ot:
                p[:, :ot] *= wr[:ot, None]
            if fr < h:
                p[:, fr:] *= wr[fr:, None]
            if ol:
                p[:, :, :ol] *= wc[:ol]
            if fc < w:
                p[:, :, fc:] *= wc[fc:]
        if j == 0:
            self.right = None
            self._below_next = (np.empty((self.K, h - fr, self.W), np.float32),
                                np.empty((h - fr, self.W), bool)) if fr < h else None
        if self.right is not None:
            rp, rv = self.right
            p[:, :, :ol] += rp
            valid[:, :ol] |= rv
        if self.below is not None and ot:
            bp, bv = self.below
            p[:, :ot, ol:] += bp[:, :, c0 + ol:c0 + w]
            valid[:ot, ol:] |= bv[:, c0 + ol:c0 + w]
        # shared pixels of the final part: normalise by the total weight (= the class sum)
        fin, fvalid = p[:, :fr, :fc], valid[:fr, :fc]
        for part in (np.s_[:, :min(ot, fr), :], np.s_[:, min(ot, fr):, :min(ol, fc)]):
            q = fin[part]
            if q.size:
                total = q.sum(axis=0)
                fvalid[part[1:]] &= total > 0
                q /= np.maximum(total, 1e-12)
        self.valid_pixels += int(np.count_nonzero(fvalid))
        self.sink(r0, c0, fin, fvalid)
        self.right = (p[:, :, fc:].copy(), valid[:, fc:].copy()) if fc < w else None
        if self._below_next is not None:
            self._below_next[0][:, :, c0:c0 + fc] = p[:, fr:, :fc]
            self._below_next[1][:, c0:c0 + fc] = valid[fr:, :fc]
        if j == len(self.cols.starts) - 1:
            self.below, self._below_next = self._below_next, None

    def add_batch(self, tiles: Sequence[tuple[int, int]], probs: Optional[np.ndarray], keep: Sequence[int],
                  valids: Sequence[np.ndarray]) -> None:
        """Tiles of one forward: ``probs[n]`` belongs to ``tiles[keep[n]]``; the others had no
        valid pixel and were not run."""
        slot = {k: n for n, k in enumerate(keep)}
        for k, (i, j) in enumerate(tiles):
            n = slot.get(k)
            self.add(i, j, None if n is None or probs is None else probs[n], valids[k])
