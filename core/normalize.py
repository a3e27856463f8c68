"""Per-band normalisation: one place for how pixels become network inputs.

Training computes the statistics (:func:`compute_stats`) and stores them in the model card;
inference applies exactly the same transform (:func:`apply`). SAR given as linear intensity is
converted to dB first when the card says ``to_db`` (data already in dB, as in the samples, is not).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from .modelfile import ModalityCard

_EPS = 1e-6


def to_db(x: np.ndarray) -> np.ndarray:
    """Linear intensity -> decibels; non-positive values become NaN (then treated as nodata)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10.0 * np.log10(x.astype(np.float32))
    out[~np.isfinite(out)] = np.nan
    return out


def apply(x: np.ndarray, card: ModalityCard) -> np.ndarray:
    """Normalise a (C, H, W) array with the card's transform; returns float32, NaN kept."""
    x = x.astype(np.float32, copy=True)
    if card.to_db:
        x = to_db(x)
    if card.mean:
        mean = np.asarray(card.mean, np.float32).reshape(-1, 1, 1)
        std = np.asarray(card.std, np.float32).reshape(-1, 1, 1)
        x -= mean
        x /= np.maximum(std, _EPS)
    return x


def compute_stats(arrays: Iterable[np.ndarray], to_db_first: bool = False) -> tuple[list[float], list[float]]:
    """Per-band mean and std over the finite pixels of (C, H, W) arrays (streamed, float64 sums)."""
    s = s2 = n = None
    for a in arrays:
        a = a.astype(np.float64)
        if to_db_first:
            a = to_db(a).astype(np.float64)
        finite = np.isfinite(a)
        a = np.where(finite, a, 0.0)
        c = a.shape[0]
        if s is None:
            s, s2, n = np.zeros(c), np.zeros(c), np.zeros(c)
        s += a.reshape(c, -1).sum(1)
        s2 += (a.reshape(c, -1) ** 2).sum(1)
        n += finite.reshape(c, -1).sum(1)
    if s is None or (n == 0).any():
        raise ValueError("no finite pixel to compute normalisation statistics from")
    mean = s / n
    std = np.sqrt(np.maximum(s2 / n - mean ** 2, 0.0))
    return mean.tolist(), np.maximum(std, _EPS).tolist()
