"""Streamed training windows: scenes read window by window from disk, never whole.

The in-memory path (``core.data.datasets.load_scene`` + ``core.fitting.training.prepare_data``)
holds every scene as float32, which a real project outgrows (one Sentinel-2 tile with
Sentinel-1 is ~5.8 GB). Here a scene stays on disk:

* inputs are read through the aligned reader classify uses (``core.engine.io.AlignedReader``:
  every input on input 1's grid, grid-ratio inputs such as DAS2F's PAN on its finer twin);
* labels are read through ``core.data.labels.LabelSource`` a window or a strip at a time;
* what the samplers need is computed in strips: the labelled pixels per split block (for the
  spatial validation split, ``core.data.splits.validation_blocks``) and the training and
  validation pixels per row (to draw the k-th labelled pixel, exactly like the in-memory
  samplers, which draw from the row-major list of training pixels);
* normalisation statistics come from a bounded sample of windows (:data:`STATS_WINDOWS`).

Memory is then a few label strips, per-row counters (8 bytes a row) and the windows of a batch,
whatever the scene size. Readers are opened lazily in each process (:meth:`SceneWindows.reader`
checks the process id), so DataLoader workers and DDP ranks open their own GDAL handles;
:class:`WindowDataset` wraps a sampler for ``torch.utils.data.DataLoader``. The preparation
(classes, split, normalisation from sampled windows) is :mod:`.streamed_prepare`; the samplers
and validations over these scenes are :mod:`.streamed_samplers`, chosen by the head kind.

The samplers are subclasses of the in-memory ones and keep their item rules (``(seed, epoch,
index)`` -> item), so on a scene without nodata a streamed run draws the same windows and targets
as an in-memory one (tests/test_windows.py). One difference by design: the in-memory path drops
labels under input nodata before the split, the streamed path counts labels alone and sets the
target to ignore under nodata when a window is read.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..classes import ClassInfo, default_classes
from ..engine import normalize
from ..errors import InputError
from ..modelfiles.modelfile import ModalityCard
from .datasets import Scene
from .prepare import PreparedData
from .samplers import IGNORE

#: Scenes with more pixels than this (input 1's grid) are streamed by default (8 bands of float32
#: at 4096^2 are 512 MiB in memory).
STREAM_PIXELS: int = 4096 * 4096
#: Windows sampled per run for the normalisation statistics and the input profile.
STATS_WINDOWS: int = 64
#: Side of the label strips the counting passes read (rows).
STRIP_ROWS: int = 512


def scene_pixels(scene: Scene) -> int:
    """Pixels of the scene's grid (input 1), read from the header only."""
    from ..engine.io import open_raster

    ds = open_raster(scene.inputs[0])
    return int(ds.RasterXSize) * int(ds.RasterYSize)


def should_stream(scenes: Sequence[Scene], stream: bool | None) -> bool:
    """``stream`` when given; otherwise stream when any scene is larger than :data:`STREAM_PIXELS`."""
    if stream is not None:
        return bool(stream)
    return any(scene_pixels(s) > STREAM_PIXELS for s in scenes)


class SceneWindows:
    """One scene on disk: windows of its inputs and labels on input 1's grid, opened per process.

    After :func:`prepare_streamed` it also knows its split (``val_blocks`` of side ``block``,
    ``guard``), its class mapping (``lut``) and per-row counts of training / validation pixels.
    """

    def __init__(self, scene: Scene, ratios: Sequence[int]) -> None:
        if scene.labels.lower().endswith((".npy", ".mat")):
            raise InputError(f"scene {scene.name}: label arrays (.npy/.mat) cannot be streamed; "
                             "give a class raster or a vector layer, or train in memory")
        self.scene = scene
        self.name = scene.name
        self.ratios = [int(r) for r in ratios]
        self._pid = -1
        self._reader: Any = None
        self._labels: Any = None
        reader = self.reader()
        self.grid = reader.grid
        self.band_counts = list(reader.band_counts)
        self.cards: list[ModalityCard] = []
        self.lut = np.zeros(1, np.int64)
        self.block = 8
        self.val_blocks = np.zeros((1, 1), bool)
        self.guard = 0
        self.train_rows = np.zeros(0, np.int64)
        self.val_rows = np.zeros(0, np.int64)
        self.val_tiles: list[tuple[int, int]] = []
        self._cum_train = self._cum_val = np.zeros(0, np.int64)

    # -- handles, one set per process --------------------------------------------------------
    def reader(self) -> Any:
        """The scene's AlignedReader, (re)opened in the calling process."""
        from ..engine.io import AlignedReader

        if self._pid != os.getpid() or self._reader is None:
            self._reader = AlignedReader(self.scene.inputs, ratios=self.ratios)
            self._labels = None
            self._pid = os.getpid()
        return self._reader

    def label_source(self) -> Any:
        from .labels import LabelSource

        self.reader()
        if self._labels is None:
            presence = self.scene.burn_value is not None
            self._labels = LabelSource(self.scene.labels, self.grid.crs_wkt, self.scene.label_field, presence=presence)
            self._labels.check_overlap(self.grid)
        return self._labels

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(_reader=None, _labels=None, _pid=-1)  # GDAL handles do not travel between processes
        return state

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.grid.height), int(self.grid.width)

    # -- labels ------------------------------------------------------------------------------
    def values(self, r0: int, c0: int, rows: int, cols: int) -> np.ndarray:
        """Mapped label values (int64, 0 = unlabelled) of a window; 0 outside the grid."""
        h, w = self.shape
        out = np.zeros((rows, cols), np.int64)
        a0, a1, b0, b1 = max(r0, 0), min(r0 + rows, h), max(c0, 0), min(c0 + cols, w)
        if a1 <= a0 or b1 <= b0:
            return out
        raw = self.label_source().read(self.grid.window(a0, b0, a1 - a0, b1 - b0)).astype(np.int64)
        s = self.scene
        if s.burn_value is not None:
            vals = np.where(raw > 0, s.burn_value, s.background_value)
        else:
            vals = raw.copy()
            if s.unlabelled_value is not None:
                vals[raw == s.unlabelled_value] = -1
            vals = np.where(vals >= 0, vals // max(1, s.label_divisor) + s.label_offset, 0)
        out[a0 - r0:a1 - r0, b0 - c0:b1 - c0] = vals
        return out

    def declared_classes(self, values: Sequence[int]) -> list[ClassInfo]:
        s = self.scene
        if s.burn_value is not None or s.label_divisor != 1 or s.label_offset != 0:
            classes = default_classes(sorted(values))
        else:
            classes = self.label_source().classes_for(values)
        if s.class_names:
            classes = [ClassInfo(c.value, s.class_names.get(c.value, c.name), c.color) for c in classes]
        return classes

    def target(self, r0: int, c0: int, rows: int, cols: int) -> np.ndarray:
        """Class indices of a window (IGNORE where unlabelled, outside the grid or not in the table)."""
        v = self.values(r0, c0, rows, cols)
        return self.lut[np.minimum(v, len(self.lut) - 1)] if v.size else v

    def val_region(self, r0: int, c0: int, rows: int, cols: int) -> np.ndarray:
        """Whether each pixel of a window lies in a validation block (False outside the grid)."""
        h, w = self.shape
        r = np.arange(r0, r0 + rows)
        c = np.arange(c0, c0 + cols)
        rin, cin = (r >= 0) & (r < h), (c >= 0) & (c < w)
        rb = np.clip(r // self.block, 0, self.val_blocks.shape[0] - 1)
        cb = np.clip(c // self.block, 0, self.val_blocks.shape[1] - 1)
        return self.val_blocks[rb][:, cb] & rin[:, None] & cin[None, :]

    def masks(self, r0: int, c0: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(target, train, val) of a window, as the in-memory split would give them."""
        from scipy import ndimage

        target = self.target(r0, c0, rows, cols)
        labelled = target != IGNORE
        g = self.guard
        region = self.val_region(r0 - g, c0 - g, rows + 2 * g, cols + 2 * g)
        val_core = region[g:g + rows, g:g + cols]
        train_region = ~val_core
        if g > 0 and region.any():
            near = ndimage.binary_dilation(region, structure=np.ones((3, 3), bool), iterations=g)
            train_region &= ~near[g:g + rows, g:g + cols]
        return target, labelled & train_region, labelled & val_core

    def strips(self, rows: int = STRIP_ROWS):
        """(r0, rows) strips covering the grid top to bottom."""
        h = self.shape[0]
        for r0 in range(0, h, rows):
            yield r0, min(rows, h - r0)

    def pixel(self, which: str, k: int) -> tuple[int, int]:
        """(row, col) of the k-th training or validation pixel in row-major order."""
        cum = self._cum_train if which == "train" else self._cum_val
        row = int(np.searchsorted(cum, k, side="right"))
        j = k - (int(cum[row - 1]) if row else 0)
        _, train, val = self.masks(row, 0, 1, self.shape[1])
        cols = np.flatnonzero((train if which == "train" else val)[0])
        return row, int(cols[j])

    # -- inputs ------------------------------------------------------------------------------
    def inputs(self, r0: int, c0: int, rows: int, cols: int, halo: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
        """Normalised float32 windows (NaN -> 0, reflect-101 outside the grid) and their validity."""
        arrays, valid = self.reader().read(r0, c0, rows, cols, halo=halo, pad="reflect")
        out = []
        for a, card in zip(arrays, self.cards):
            x = normalize.apply(a, card)
            np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
            out.append(x)
        return out, valid


@dataclass
class StreamedData(PreparedData):
    """PreparedData whose scenes stay on disk (:class:`SceneWindows`), plus the label values found
    that the class table does not hold (``unknown``)."""

    scenes: list[SceneWindows]  # type: ignore[assignment]
    unknown: set[int] = field(default_factory=set)


def open_scenes(scenes: Sequence[Scene], ratios: Sequence[int]) -> list[SceneWindows]:
    """Open every scene (headers only); InputError when band counts differ, naming the scene."""
    out = [SceneWindows(s, ratios) for s in scenes]
    for s in out[1:]:
        if s.band_counts != out[0].band_counts:
            raise InputError(f"scene {s.name} has band counts {s.band_counts} but the first scene has "
                             f"{out[0].band_counts}; every scene must have the same bands in the same order")
    return out


class WindowDataset:
    """A map-style dataset of one epoch of a sampler, for ``torch.utils.data.DataLoader``.

    Items are ``sampler.item(epoch, i)``; the scenes reopen their GDAL handles in each worker
    process (lazily, by process id), so workers never share a handle.
    """

    def __init__(self, sampler: Any, epoch: int = 0) -> None:
        self.sampler = sampler
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.sampler)

    def __getitem__(self, i: int) -> tuple[list[np.ndarray], np.ndarray]:
        return self.sampler.item(self.epoch, int(i))
