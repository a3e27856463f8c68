"""Patch geometry of the per-pixel (patch) models, and a vectorised cutter for in-memory images.

One convention everywhere (registry ``ModalitySpec``; spec ``das2f.md`` section 1): the patch of
target pixel (r, c) in a modality of grid ratio k (k modality pixels per target pixel), side p
and anchor a starts at (k*r - a, k*c - a) in that modality's pixels; outside the image the
pixels are reflect-101 (``...2 1 | 0 1 2 ... n-1 | n-2 ...``). DAS2F: MS 16/7 at ratio 1 and
PAN 64/28 at ratio 4, i.e. padding 7/8 and 28/32.

Users: training's :class:`.samplers.PatchSampler` and the Xi'an/Nanjing cutter
(:class:`.xidian.PatchCutter`) cut from whole images in memory with :class:`PatchCutter`; the
inference engine streams windows and cuts them with ``Tensor.unfold``, reading each window with
the halo :func:`halo_for` gives, so the three agree pixel for pixel (tests/test_xidian.py,
tests/test_inference.py).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError


def patch_margins(size: int, anchor: int, ratio: int = 1) -> tuple[int, int]:
    """Modality pixels needed (before, after) the image on each axis for every target pixel's patch."""
    if not 0 <= anchor < size:
        raise ValueError(f"patch anchor {anchor} must lie inside the patch of side {size}")
    return anchor, max(0, size - anchor - ratio)


def halo_for(size: int, anchor: int, ratio: int = 1) -> int:
    """Target pixels of halo a window needs so that its pixels' patches lie in the window."""
    before, after = patch_margins(size, anchor, ratio)
    return max(-(-before // ratio), -(-after // ratio))


def pad_reflect101(a: np.ndarray, before: int, after: int) -> np.ndarray:
    """Pad the last two axes of (C, H, W) by reflect-101 (``edge`` for a 1-pixel axis)."""
    mode = "reflect" if min(a.shape[-2:]) > 1 else "edge"
    return np.pad(a, ((0, 0), (before, after), (before, after)), mode=mode)


class PatchCutter:
    """Cut the patches of many target pixels from N in-memory images, vectorised.

    Each image (C_i, k_i*H, k_i*W) is padded once; ``cut(rows, cols)`` gathers the patches of
    target pixels (rows[j], cols[j]) in one indexing operation per modality on a strided view of
    all windows (no per-pixel crop) and returns (N, C_i, p_i, p_i) arrays in the images' dtype.
    """

    def __init__(self, arrays: Sequence[np.ndarray], sizes: Sequence[int], anchors: Sequence[int],
                 ratios: Sequence[int]) -> None:
        if not (len(arrays) == len(sizes) == len(anchors) == len(ratios)) or not arrays:
            raise ValueError("one patch size, anchor and ratio per image")
        if any(a.ndim != 3 for a in arrays):
            raise InputError(f"images must be (bands, rows, cols); got {[a.shape for a in arrays]}")
        self.ratios = [int(k) for k in ratios]
        h, w = arrays[0].shape[-2] // self.ratios[0], arrays[0].shape[-1] // self.ratios[0]
        self.shape = (h, w)
        win = np.lib.stride_tricks.sliding_window_view
        self._windows = []
        for a, p, anc, k in zip(arrays, sizes, anchors, self.ratios):
            if a.shape[-2:] != (k * h, k * w):
                raise InputError(f"an image is {a.shape[-2:]} but must be exactly {k}x the target size {(h, w)}")
            before, after = patch_margins(int(p), int(anc), k)
            padded = pad_reflect101(a, before, after)
            # (rows, cols, C, p, p) views of all windows; indexing them copies only the requested patches
            self._windows.append(win(padded, (int(p), int(p)), axis=(1, 2)).transpose(1, 2, 0, 3, 4))

    def cut(self, rows: np.ndarray, cols: np.ndarray) -> list[np.ndarray]:
        """Patches of target pixels (rows[j], cols[j]), one (N, C, p, p) array per image."""
        rows = np.asarray(rows, dtype=np.int64).ravel()
        cols = np.asarray(cols, dtype=np.int64).ravel()
        if rows.shape != cols.shape:
            raise InputError(f"rows and cols differ in length ({rows.size} vs {cols.size})")
        h, w = self.shape
        if rows.size and (rows.min() < 0 or cols.min() < 0 or rows.max() >= h or cols.max() >= w):
            raise InputError(f"pixel coordinates must lie in the {h}x{w} target image")
        return [v[k * rows, k * cols] for v, k in zip(self._windows, self.ratios)]
