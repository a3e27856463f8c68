"""Per-band normalisation: one place for how pixels become network inputs.

Training computes the statistics (:func:`compute_stats`) and stores them in the model card;
inference applies exactly the same transform (:func:`apply`). SAR given as linear intensity is
converted to dB first when the card says ``to_db`` (data already in dB, as in the samples, is not).
"""
from __future__ import annotations

from typing import Any, Iterable, Optional

import numpy as np

from ..modelfiles.modelfile import ModalityCard

_EPS = 1e-6


def to_db(x: np.ndarray) -> np.ndarray:
    """Linear intensity -> decibels; non-positive values become NaN (then treated as nodata)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10.0 * np.log10(x.astype(np.float32))
    out[~np.isfinite(out)] = np.nan
    return out


def apply(x: np.ndarray, card: ModalityCard) -> np.ndarray:
    """Normalise a (C, H, W) or (N, C, H, W) array with the card's transform; returns a new
    float32 array, NaN kept.

    For types float32 holds exactly (8/16-bit integers, float32) without ``to_db`` the type
    conversion is fused into the subtraction: one pass less over the data, and the same float32
    results as converting first, since numpy then subtracts in float32.
    """
    if not card.mean:
        return to_db(x) if card.to_db else x.astype(np.float32, copy=True)
    mean = np.asarray(card.mean, np.float32).reshape(-1, 1, 1)
    std = np.asarray(card.std, np.float32).reshape(-1, 1, 1)
    if card.to_db:
        out = to_db(x)
        out -= mean
    elif not np.can_cast(x.dtype, np.float32):
        out = x.astype(np.float32)
        out -= mean
    else:
        out = np.empty(x.shape, np.float32)
        np.subtract(x, mean, out=out, casting="unsafe")
    out /= np.maximum(std, _EPS)
    return out


def model_input(x: np.ndarray, card: ModalityCard, nodata: Optional[np.ndarray] = None) -> np.ndarray:
    """:func:`apply`, then nodata (``nodata``: a bool mask of the pixels, (H, W) or (N, H, W),
    broadcast over the bands; and NaN/inf) set to 0, i.e. to the training mean, so that it
    cannot poison the neighbours of a pixel. The numpy twin of :func:`apply_torch`."""
    out = apply(x, card)
    if nodata is not None:
        np.copyto(out, np.float32(0.0), where=np.expand_dims(nodata, -3))
    if x.dtype.kind == "f" or card.to_db:  # integer data without to_db cannot become non-finite
        np.copyto(out, np.float32(0.0), where=~np.isfinite(out))
    return out


def apply_torch(t: Any, card: ModalityCard, nodata: Optional[Any] = None) -> Any:
    """:func:`apply` for a torch tensor (C, H, W) or (N, C, H, W) of any dtype, on its device,
    then nodata (``nodata``: a bool mask of the pixels, broadcast over the bands; and NaN) set
    to 0, i.e. to the training mean, so that it cannot poison the neighbours of a pixel.

    The inference engine reads windows in the files' own types and, for a model on a GPU,
    normalises here, on the device: the transfer is then 1 byte a value for Byte imagery (on a
    CPU its reader thread uses :func:`model_input`). The float32 input tensor may be transformed
    in place.
    """
    import torch

    x = t if t.dtype == torch.float32 else t.float()
    if card.to_db:
        x = 10.0 * torch.log10(x)
        x = torch.where(torch.isfinite(x), x, torch.full_like(x, float("nan")))
    if card.mean:
        shape = (-1, 1, 1)
        mean = torch.tensor(card.mean, dtype=torch.float32, device=x.device).reshape(shape)
        std = torch.tensor([max(s, _EPS) for s in card.std], dtype=torch.float32, device=x.device).reshape(shape)
        x.sub_(mean).div_(std)
    if nodata is not None:
        x.masked_fill_(nodata.unsqueeze(-3), 0.0)
    return torch.nan_to_num_(x, nan=0.0, posinf=0.0, neginf=0.0)


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
