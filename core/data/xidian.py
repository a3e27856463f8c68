"""The Xi'an / Nanjing MS + PAN folder layout, read directly, and the patch cutter set up for it.

Layout (the Xidian MS/PAN line of work, spec ``das2f.md`` section 1): one folder holding
``ms4.tif`` (C bands, H x W), ``pan.tif`` (1 band, exactly 4H x 4W: PAN pixel (4r.., 4c..)
covers MS pixel (r, c)) and label grids at MS resolution, ``train.npy`` / ``test.npy`` (or
``label.npy``), uint8 with 0 = unlabelled and k = class k-1.

:class:`PatchCutter` is the one in-memory cutter of :mod:`.patches` (each image padded ONCE with
reflect-101, the patches of many pixels gathered in one indexing operation on a strided window
view) given an MS + PAN pair; its geometry is the engine's ``ModalitySpec`` convention: the
patch of MS pixel (r, c) starts at (r - 7, c - 7) in MS pixels and at (4r - 28, 4c - 28) in PAN
pixels (DAS2F: 16x16 and 64x64, i.e. padding 7/8 and 28/32 as in spec section 1).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..engine.io import open_raster
from ..errors import GridError, InputError
from . import patches
from .datasets import read_label_array

LABEL_FILES: tuple[str, ...] = ("train.npy", "test.npy", "label.npy")


@dataclass(frozen=True)
class LabelledPixels:
    """Labelled MS pixels of one label grid: row/col indices and class indices 0..K-1 (label - 1)."""

    rows: np.ndarray
    cols: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.size)


@dataclass
class XidianScene:
    """One folder of the layout: MS (C, H, W), PAN (C_pan, 4H, 4W), label grids (H, W) by file stem."""

    folder: Path
    ms: np.ndarray
    pan: np.ndarray
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    geotransform: tuple[float, ...] | None = None
    projection: str = ""

    @property
    def ratio(self) -> int:
        return self.pan.shape[-1] // self.ms.shape[-1]

    def labelled(self, split: str = "train") -> LabelledPixels:
        """Labelled pixels of label grid ``split`` (``train``, ``test`` or ``label``)."""
        if split not in self.labels:
            raise InputError(f"{self.folder}: no {split}.npy label grid; present: {', '.join(self.labels) or 'none'}")
        return labelled_pixels(self.labels[split])


def _read_raster(path: Path) -> tuple[np.ndarray, tuple[float, ...] | None, str]:
    """All bands of a GDAL raster as (C, H, W) in the file's dtype, plus geotransform/projection."""
    if not path.is_file():
        raise InputError(f"{path} is missing; the Xi'an/Nanjing layout needs ms4.tif and pan.tif in one folder")
    ds = open_raster(str(path))
    arr = ds.ReadAsArray()
    if arr is None:
        raise InputError(f"{path}: the pixels cannot be read (truncated or corrupt file?)")
    if arr.ndim == 2:
        arr = arr[None]
    gt = ds.GetGeoTransform(can_return_null=True)
    return arr, (tuple(gt) if gt else None), ds.GetProjection() or ""


def labelled_pixels(labels: np.ndarray) -> LabelledPixels:
    """Coordinates (row-major order) and classes (label - 1) of the pixels with a non-zero label."""
    if labels.ndim != 2:
        raise InputError(f"a label grid must be 2-D (H, W); got shape {labels.shape}")
    rows, cols = np.nonzero(labels)
    return LabelledPixels(rows.astype(np.int64), cols.astype(np.int64),
                          labels[rows, cols].astype(np.int64) - 1)


def read_xidian(folder: str | Path, ms_name: str = "ms4.tif", pan_name: str = "pan.tif",
                label_files: Sequence[str] = LABEL_FILES, ratio: int = 4) -> XidianScene:
    """Read one Xi'an/Nanjing folder: MS, PAN and every label grid present (at least one needed).

    Raises InputError for a missing/unreadable file or a label grid not at the MS size, and
    GridError when the PAN size is not exactly ``ratio`` x the MS size.
    """
    folder = Path(folder)
    ms, gt, proj = _read_raster(folder / ms_name)
    pan, _, _ = _read_raster(folder / pan_name)
    h, w = ms.shape[-2:]
    if pan.shape[-2:] != (ratio * h, ratio * w):
        raise GridError(f"{folder}: {pan_name} is {pan.shape[-1]}x{pan.shape[-2]} px but must be exactly {ratio}x "
                        f"{ms_name} ({w}x{h} -> {ratio * w}x{ratio * h}); crop or resample the PAN image")
    labels: dict[str, np.ndarray] = {}
    for name in label_files:
        p = folder / name
        if not p.is_file():
            continue
        lab = read_label_array(str(p), (h, w))
        labels[Path(name).stem] = lab
    if not labels:
        raise InputError(f"{folder}: no label grid ({', '.join(label_files)}); add train.npy/test.npy (0 = unlabelled)")
    return XidianScene(folder, ms, pan, labels, gt, proj)


def minmax_normalise(x: np.ndarray) -> np.ndarray:
    """Global min-max over all bands to [0, 1] as float32 (the line of work's convention, spec s. 1).

    mmlc's engine uses per-band standardisation (``core.engine.normalize``); this one is for
    reproducing the papers' preprocessing.
    """
    x = x.astype(np.float32)
    lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
    return (x - lo) / max(hi - lo, 1e-12)


class PatchCutter(patches.PatchCutter):
    """The one in-memory cutter (:class:`.patches.PatchCutter`) set up for an MS + PAN pair.

    ``cut(rows, cols)`` returns ``[ms, pan]``: ``ms`` (N, C, ms_patch, ms_patch) and ``pan``
    (N, C_pan, pan_patch, pan_patch) in the arrays' dtype; the patch of MS pixel (r, c) starts at
    (r - ms_anchor, c - ms_anchor) in MS and (ratio*r - pan_anchor, ratio*c - pan_anchor) in PAN
    pixels, reflect-101 outside the image. Defaults: DAS2F (16/7, 4, 64/28). A PAN that is not
    exactly ``ratio`` x the MS size is a GridError (the pair's grids disagree).
    """

    def __init__(self, ms: np.ndarray, pan: np.ndarray, ms_patch: int = 16, ms_anchor: int = 7, ratio: int = 4,
                 pan_patch: int = 64, pan_anchor: int = 28) -> None:
        if ms.ndim != 3 or pan.ndim != 3:
            raise InputError(f"MS and PAN must be (bands, rows, cols); got {ms.shape} and {pan.shape}")
        h, w = ms.shape[-2:]
        if pan.shape[-2:] != (ratio * h, ratio * w):
            raise GridError(f"PAN is {pan.shape[-2:]} but must be exactly {ratio}x the MS size {(h, w)}")
        super().__init__([ms, pan], [ms_patch, pan_patch], [ms_anchor, pan_anchor], [1, ratio])


def cut_patches(ms: np.ndarray, pan: np.ndarray, rows: np.ndarray, cols: np.ndarray, ms_patch: int = 16,
                ms_anchor: int = 7, ratio: int = 4, pan_patch: int = 64,
                pan_anchor: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """One-shot :class:`PatchCutter` (pads the images; for many batches keep a cutter instead)."""
    ms_patches, pan_patches = PatchCutter(ms, pan, ms_patch, ms_anchor, ratio, pan_patch, pan_anchor).cut(rows, cols)
    return ms_patches, pan_patches
