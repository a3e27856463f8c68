"""Spatially disjoint training/validation split: whole blocks go to validation, never single pixels.

Neighbouring pixels are strongly correlated, so a random pixel split over-states accuracy. We cut
each scene into square blocks, shuffle the blocks that hold labels (seeded) and move blocks to
validation until they hold ``fraction`` of the scene's labelled pixels. Training pixels closer
than ``guard`` pixels to a validation block are dropped, so a training patch's context never
covers a validation pixel (design choice: ``guard`` = the patch half-size for patch models, 0 for
dense models, whose validation tiles are scored only on validation pixels).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass
class Split:
    """Boolean (H, W) masks of the pixels usable for training and for validation."""

    train: np.ndarray
    val: np.ndarray
    block: int


def default_block_size(shape: tuple[int, int], tile: int) -> int:
    """About 25 blocks per scene, at least 8 pixels, at most one tile (design choice)."""
    h, w = shape
    return int(min(max(8, round(math.sqrt(h * w / 25.0))), max(8, tile)))


def block_split(
    labelled: np.ndarray,
    fraction: float,
    block: int,
    seed: int = 0,
    guard: int = 0,
) -> Split:
    """Split labelled pixels of one scene into disjoint training and validation blocks.

    ``fraction`` in [0, 1): share of labelled pixels to put in validation (0 = no validation).
    Always leaves at least one labelled block for training when there are two or more.
    """
    labelled = np.asarray(labelled, bool)
    h, w = labelled.shape
    if fraction <= 0 or not labelled.any():
        return Split(labelled.copy(), np.zeros_like(labelled), block)
    nby, nbx = math.ceil(h / block), math.ceil(w / block)
    padded = np.zeros((nby * block, nbx * block), bool)
    padded[:h, :w] = labelled
    counts = padded.reshape(nby, block, nbx, block).sum(axis=(1, 3))
    val_blocks = validation_blocks(counts, fraction, seed, (h, w))
    val_region = np.kron(val_blocks, np.ones((block, block), bool))[:h, :w]
    val = labelled & val_region
    train_region = ~val_region
    if guard > 0 and val_region.any():
        near = ndimage.binary_dilation(val_region, structure=np.ones((3, 3), bool), iterations=guard)
        train_region &= ~near
    return Split(labelled & train_region, val, block)


def validation_blocks(counts: np.ndarray, fraction: float, seed: int, shape: tuple[int, int]) -> np.ndarray:
    """The (nby, nbx) bool map of validation blocks from the labelled pixels per block.

    The choice depends only on the block counts, the seed and the scene's shape, so a reader that
    counts labelled pixels strip by strip (``core.data.streamed_prepare``) picks the same blocks as
    :func:`block_split` on the whole mask.
    """
    counts = np.asarray(counts)
    flat = counts.ravel()
    val = np.zeros(flat.size, bool)
    if fraction <= 0 or flat.sum() == 0:
        return val.reshape(counts.shape)
    h, w = shape
    order = np.random.default_rng([seed, h, w, 7919]).permutation(np.flatnonzero(flat > 0))
    total = flat.sum()
    acc = 0
    for b in order[: max(0, len(order) - 1)]:
        if acc >= fraction * total:
            break
        val[int(b)] = True
        acc += flat[b]
    return val.reshape(counts.shape)
