"""Preparing streamed scenes for a training run: the classes present, the spatial validation split
counted in label strips, and the modality cards (normalisation) from a bounded sample of windows.

The counterpart of ``core.data.prepare.prepare_data`` for scenes that stay on disk
(:class:`.windows.SceneWindows`); its :class:`.windows.StreamedData` feeds the streamed samplers
(:mod:`.streamed_samplers`).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..classes import ClassInfo
from ..engine import normalize
from ..errors import InputError
from ..modelfiles.modelfile import ModalityCard
from ..progress import NullProgress, Progress
from .datasets import fingerprint
from .prepare import looks_linear_sar, record_profile
from .samplers import IGNORE
from .splits import default_block_size, validation_blocks
from .windows import STATS_WINDOWS, STRIP_ROWS, SceneWindows, StreamedData


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
