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
:class:`WindowDataset` wraps a sampler for ``torch.utils.data.DataLoader``.

The samplers are subclasses of the in-memory ones and keep their item rules (``(seed, epoch,
index)`` -> item), so on a scene without nodata a streamed run draws the same windows and targets
as an in-memory one (tests/test_windows.py). One difference by design: the in-memory path drops
labels under input nodata before the split, the streamed path counts labels alone and sets the
target to ignore under nodata when a window is read.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..assessment.validation import PatchValidation
from ..classes import ClassInfo, default_classes
from ..engine import normalize
from ..errors import InputError
from ..modelfiles.modelfile import ModalityCard
from ..progress import NullProgress, Progress
from .datasets import Scene, fingerprint
from .patches import halo_for
from .prepare import looks_linear_sar, record_profile
from .samplers import IGNORE, DenseTileSampler, PatchSampler, collate, item_rng
from .splits import default_block_size, validation_blocks

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
class StreamedData:
    """Streamed scenes ready for sampling plus what the model card needs (like PreparedData)."""

    scenes: list[SceneWindows]
    modality_cards: list[ModalityCard]
    classes: list[ClassInfo]
    band_counts: list[int]
    fingerprints: list[dict]
    n_train: int
    n_val: int
    unknown: set[int] = field(default_factory=set)


def open_scenes(scenes: Sequence[Scene], ratios: Sequence[int]) -> list[SceneWindows]:
    """Open every scene (headers only); InputError when band counts differ, naming the scene."""
    out = [SceneWindows(s, ratios) for s in scenes]
    for s in out[1:]:
        if s.band_counts != out[0].band_counts:
            raise InputError(f"scene {s.name} has band counts {s.band_counts} but the first scene has "
                             f"{out[0].band_counts}; every scene must have the same bands in the same order")
    return out


def present_values(scenes: Sequence[SceneWindows]) -> list[tuple[SceneWindows, set[int]]]:
    """First pass: the label values present in each scene (strip by strip)."""
    found = []
    for s in scenes:
        vals: set[int] = set()
        for r0, rows in s.strips():
            v = s.values(r0, 0, rows, s.shape[1])
            vals.update(int(x) for x in np.unique(v) if x > 0)
        found.append((s, vals))
    return found


def resolve_streamed_classes(found: Sequence[tuple[SceneWindows, set[int]]],
                             table: list[ClassInfo] | None) -> list[ClassInfo]:
    """The run's classes: the table, else the union over scenes by value (first name wins)."""
    from ..classes import default_color

    if table is not None:
        return sorted(table, key=lambda c: c.value)
    by_value: dict[int, ClassInfo] = {}
    for s, vals in found:
        if vals:
            for c in s.declared_classes(sorted(vals)):
                by_value.setdefault(int(c.value), c)
    present = sorted({v for _, vals in found for v in vals})
    out = [by_value.get(v, ClassInfo(v, f"class {v}", default_color(i))) for i, v in enumerate(present)]
    if len({c.color for c in out}) < len(out):
        out = [ClassInfo(c.value, c.name, default_color(i)) for i, c in enumerate(out)]
    return out


def _count_and_split(s: SceneWindows, fraction: float, seed: int, tile: int, guard: int) -> set[int]:
    """Second and third pass: labelled pixels per block -> validation blocks; training and
    validation pixels per row and the validation tiles. Returns label values outside the table."""
    h, w = s.shape
    s.block = default_block_size((h, w), tile)
    nby, nbx = math.ceil(h / s.block), math.ceil(w / s.block)
    counts = np.zeros((nby, nbx), np.int64)
    unknown: set[int] = set()
    step = max(1, STRIP_ROWS // s.block) * s.block
    for r0, rows in s.strips(step):
        v = s.values(r0, 0, rows, w)
        t = s.lut[np.minimum(v, len(s.lut) - 1)]
        unknown.update(int(x) for x in np.unique(v[(t == IGNORE) & (v > 0)]))
        lab = np.zeros((math.ceil(rows / s.block) * s.block, nbx * s.block), bool)
        lab[:rows, :w] = t != IGNORE
        counts[r0 // s.block:r0 // s.block + lab.shape[0] // s.block] = \
            lab.reshape(-1, s.block, nbx, s.block).sum(axis=(1, 3))
    s.val_blocks = validation_blocks(counts, fraction, seed, (h, w)) if counts.sum() else np.zeros_like(counts, bool)
    s.guard = guard
    s.train_rows = np.zeros(h, np.int64)
    s.val_rows = np.zeros(h, np.int64)
    tiles: set[tuple[int, int]] = set()
    for r0, rows in s.strips(max(1, STRIP_ROWS // tile) * tile):
        _, train, val = s.masks(r0, 0, rows, w)
        s.train_rows[r0:r0 + rows] = train.sum(1)
        s.val_rows[r0:r0 + rows] = val.sum(1)
        if val.any():
            rr, cc = np.nonzero(val)
            tiles.update(zip(((rr + r0) // tile * tile).tolist(), (cc // tile * tile).tolist()))
    s.val_tiles = sorted(tiles)
    s._cum_train, s._cum_val = np.cumsum(s.train_rows), np.cumsum(s.val_rows)
    return unknown


def sample_windows(scenes: Sequence[SceneWindows], side: int, seed: int,
                   n: int = STATS_WINDOWS) -> list[list[np.ndarray]]:
    """Raw float32 windows (NaN = nodata) at seeded random places, spread over the scenes by
    area: a bounded sample for the statistics, whatever the scenes' size."""
    rng = np.random.default_rng([int(seed), 2718281])
    areas = np.array([s.shape[0] * s.shape[1] for s in scenes], float)
    picks = rng.choice(len(scenes), size=n, p=areas / areas.sum())
    out = []
    for si in picks:
        s = scenes[int(si)]
        h, w = s.shape
        rows, cols = min(side, h), min(side, w)
        r0, c0 = int(rng.integers(h - rows + 1)), int(rng.integers(w - cols + 1))
        arrays, _ = s.reader().read(r0, c0, rows, cols, pad="nan")
        out.append(arrays)
    return out


def _cards(scenes: Sequence[SceneWindows], names: Sequence[str], ratios: Sequence[int], seed: int, tile: int,
           to_db: Sequence[bool] | None, given: Sequence[ModalityCard | None] | None,
           progress: Progress) -> list[ModalityCard]:
    band_counts = scenes[0].band_counts
    sample: list[list[np.ndarray]] | None = None
    cards = []
    for i, name in enumerate(names):
        g = given[i] if given is not None else None
        if g is not None:
            if g.bands != band_counts[i]:
                raise InputError(f"input {i + 1} has {band_counts[i]} bands but the model expects {g.bands}")
            cards.append(g)
            continue
        if sample is None:
            sample = sample_windows(scenes, tile, seed)
        windows = [w[i] for w in sample]
        db = bool(to_db[i]) if to_db is not None else name == "sar" and all(looks_linear_sar(a) for a in windows)
        if db and to_db is None:
            progress.info(f"input {i + 1} looks like linear SAR intensity: converting it to dB (to_db)")
        try:
            mean, std = normalize.compute_stats(windows, to_db_first=db)
        except ValueError as e:
            raise InputError(f"input {i + 1} has no valid pixel in the sampled windows: {e}") from e
        card = ModalityCard(name=name, bands=band_counts[i], grid_ratio=int(ratios[i]),
                            mean=[float(x) for x in mean], std=[float(x) for x in std], to_db=db)
        record_profile(card, scenes[0].scene.inputs[i], windows)
        cards.append(card)
    return cards


def prepare_streamed(
    scenes: Sequence[SceneWindows],
    modality_names: Sequence[str],
    ratios: Sequence[int],
    *,
    table: list[ClassInfo] | None,
    validation_fraction: float,
    seed: int,
    tile: int,
    guard: int = 0,
    to_db: Sequence[bool] | None = None,
    given_cards: Sequence[ModalityCard | None] | None = None,
    progress: Progress | None = None,
) -> StreamedData:
    """The streamed twin of ``prepare_data``: classes, split, counts and cards, in strips.

    Scene ``si`` is split with seed ``seed + si`` like the in-memory path. Given cards (fine-tuning)
    are kept and set profiles as they are; new ones are estimated from :func:`sample_windows`.
    """
    progress = progress or NullProgress()
    found = present_values(scenes)
    classes = resolve_streamed_classes(found, table)
    if len(classes) < 2:
        raise InputError(f"the labels hold {len(classes)} class(es); training needs at least 2")
    lut_size = max([c.value for c in classes] + [max(v, default=0) for _, v in found]) + 1
    lut = np.full(lut_size, IGNORE, np.int64)
    for idx, c in enumerate(classes):
        lut[c.value] = idx
    unknown: set[int] = set()
    n_train = n_val = 0
    for si, s in enumerate(scenes):
        progress.info(f"counting the labels of scene {si + 1}/{len(scenes)}: {s.name}")
        s.lut = lut
        unknown |= _count_and_split(s, validation_fraction, seed + si, tile, guard)
        n_train += int(s.train_rows.sum())
        n_val += int(s.val_rows.sum())
    if unknown:
        progress.warn(f"label values {sorted(unknown)} are not in the class table: treated as unlabelled")
    if n_train == 0:
        raise InputError("no labelled pixel left for training: check the labels overlap the inputs, "
                         "the class field/table, or lower VALIDATION_FRACTION")
    cards = _cards(scenes, modality_names, ratios, seed, tile, to_db, given_cards, progress)
    for s in scenes:
        s.cards = cards
    fps = [fingerprint(p) for s in scenes for p in [*s.scene.inputs, s.scene.labels]]
    return StreamedData(list(scenes), cards, list(classes), list(scenes[0].band_counts), fps, n_train, n_val,
                        unknown)


# ---------------------------------------------------------------------------------------------
# Samplers and validation over streamed scenes (the in-memory rules, windows read on demand)
# ---------------------------------------------------------------------------------------------

class StreamedTileSampler(DenseTileSampler):
    """:class:`DenseTileSampler` whose crops are read from disk (same draws, same items)."""

    def __init__(self, scenes: Sequence[SceneWindows], tile: int, length: int, seed: int, *,
                 cat_max_ratio: float = 0.75, max_draws: int = 10,
                 scale_range: tuple[float, float] | None = None, augment: bool = True) -> None:
        self.tile, self.seed, self.length = int(tile), seed, int(length)
        self.cat_max_ratio, self.max_draws = cat_max_ratio, max_draws
        self.scale_range, self.do_augment = scale_range, augment
        self.scenes = list(scenes)
        weights = np.array([s.train_rows.sum() for s in self.scenes], float)
        if weights.sum() == 0:
            raise ValueError("no labelled training pixel")
        self._weights = weights / weights.sum()
        self._counts = [int(s.train_rows.sum()) for s in self.scenes]

    def _crop(self, si: int, rng: np.random.Generator, size: int):
        s = self.scenes[si]
        h, w = max(s.shape[0], self.tile), max(s.shape[1], self.tile)  # small scenes padded like in memory
        pr, pc = s.pixel("train", int(rng.integers(self._counts[si])))
        size = min(size, h, w)
        r0 = int(np.clip(pr - rng.integers(size), 0, h - size))
        c0 = int(np.clip(pc - rng.integers(size), 0, w - size))
        target, train, _ = s.masks(r0, c0, size, size)
        arrays, valid = s.inputs(r0, c0, size, size)
        label = np.where(train & valid, target, IGNORE)
        return arrays, label


class StreamedPatchSampler(PatchSampler):
    """:class:`PatchSampler` over streamed scenes: item k is the k-th labelled pixel (row-major,
    scene after scene), its patches read with the halo their geometry needs."""

    def __init__(self, scenes: Sequence[SceneWindows], patch_sizes: Sequence[int], anchors: Sequence[int],
                 seed: int, *, which: str = "train", augment: bool = True, max_items: int | None = None) -> None:
        self.scenes = list(scenes)
        self.sizes = [int(p) for p in patch_sizes]
        self.anchors = [int(a) for a in anchors]
        self.seed, self.which = seed, which
        ratios = self.scenes[0].ratios if self.scenes else [1] * len(self.sizes)
        self.do_augment = augment and all(2 * a + r == p for a, r, p in zip(self.anchors, ratios, self.sizes))
        self.halo = max(halo_for(p, a, r) for p, a, r in zip(self.sizes, self.anchors, ratios))
        per_scene = [int((s.train_rows if which == "train" else s.val_rows).sum()) for s in self.scenes]
        self._starts = np.concatenate([[0], np.cumsum(per_scene)]).astype(np.int64)
        self._keep: np.ndarray | None = None
        total = int(self._starts[-1])
        if max_items is not None and total > max_items:
            self._keep = np.sort(np.random.default_rng([seed, 104729]).choice(total, max_items, replace=False))

    def __len__(self) -> int:
        return len(self._keep) if self._keep is not None else int(self._starts[-1])

    def locate(self, index: int) -> tuple[int, int, int]:
        """(scene, row, col) of item ``index``."""
        k = int(self._keep[index]) if self._keep is not None else int(index)
        si = int(np.searchsorted(self._starts, k, side="right")) - 1
        r, c = self.scenes[si].pixel(self.which, k - int(self._starts[si]))
        return si, r, c

    def item(self, epoch: int, index: int) -> tuple[list[np.ndarray], np.ndarray]:
        si, r, c = self.locate(index)
        s = self.scenes[si]
        arrays, valid = s.inputs(r, c, 1, 1, halo=self.halo)
        patches = []
        for a, p, anc, k in zip(arrays, self.sizes, self.anchors, s.ratios):
            o = k * self.halo - anc
            patches.append(a[:, o:o + p, o:o + p])
        label = np.asarray(s.target(r, c, 1, 1)[0, 0], np.int64)
        if self.which == "train" and not valid[0, 0]:  # input nodata: no training signal (validation keeps
            label = np.asarray(IGNORE, np.int64)      # the pixel, scored on mean-filled inputs)
        if self.do_augment:
            from .samplers import augment

            patches, _ = augment(patches, None, item_rng(self.seed, epoch, index))
        return [np.ascontiguousarray(a, dtype=np.float32) for a in patches], label


class StreamedPatchValidation(PatchValidation):
    """Patch validation (its confusion rule) over the streamed validation pixels (capped subset)."""

    def __init__(self, scenes: Sequence[SceneWindows], sizes: Sequence[int], anchors: Sequence[int],
                 seed: int, max_items: int = 20000) -> None:
        self.sampler = StreamedPatchSampler(scenes, sizes, anchors, seed, which="val", augment=False,
                                            max_items=max_items)


class StreamedDenseValidation:
    """Dense validation over streamed scenes: tiles holding validation pixels, scored on them."""

    def __init__(self, scenes: Sequence[SceneWindows], tile: int) -> None:
        self.scenes = list(scenes)
        self.tile = tile
        self.windows = [(si, r, c, min(tile, s.shape[0] - r), min(tile, s.shape[1] - c))
                        for si, s in enumerate(self.scenes) for r, c in s.val_tiles]

    def __len__(self) -> int:
        return len(self.windows)

    def item(self, window: tuple[int, int, int, int, int]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, tuple]:
        """(arrays, target, val mask of the own part, (dr, dc, rows, cols)) of one validation window."""
        si, r, c, rows, cols = window
        s = self.scenes[si]
        h, w = s.shape
        t = min(self.tile, h, w)
        r0, c0 = min(r, h - t), min(c, w - t)
        arrays, valid = s.inputs(r0, c0, t, t)
        target, _, val = s.masks(r0, c0, t, t)
        return arrays, np.where(valid, target, IGNORE), val & valid, (r - r0, c - c0, rows, cols)

    def confusion(self, net: Any, predict: Callable, k: int, batch: int, device: Any, ctx: Any,
                  to_device: Callable) -> np.ndarray:
        import torch

        cm = np.zeros((k, k), np.int64)
        mine = self.windows[ctx.rank::ctx.world_size]
        with torch.no_grad():
            for b in range(0, len(mine), batch):
                got = [self.item(wdw) for wdw in mine[b:b + batch]]
                inputs, _ = collate([(g[0], g[1]) for g in got])
                pred = predict(net, to_device(inputs)).argmax(1).cpu().numpy()
                for p, (_, target, val, (dr, dc, rows, cols)) in zip(pred, got):
                    ref = target[dr:dr + rows, dc:dc + cols]
                    sel = val[dr:dr + rows, dc:dc + cols]
                    np.add.at(cm, (ref[sel], p[dr:dr + rows, dc:dc + cols][sel]), 1)
        return cm


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
