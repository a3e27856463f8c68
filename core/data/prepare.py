"""Data preparation of a training run: scenes in memory -> normalised, label-encoded, split scenes.

:func:`prepare_data` computes per-band normalisation statistics from the training data
(``core.engine.normalize``; or reuses a given modality card), maps label values to class indices
(:func:`resolve_classes` picks the classes) and splits every scene into spatially disjoint
training / validation blocks (``core.data.splits``). The training tile is chosen here too
(:func:`check_tile_option`, :func:`training_tile`, :func:`default_tile`), since the split's block
size follows it, and :func:`record_profile` stores an input's data type and value range in its card.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..classes import ClassInfo, default_color
from ..engine import normalize
from ..errors import InputError
from ..modelfiles.modelfile import ModalityCard
from ..progress import NullProgress, Progress
from .datasets import SceneData
from .samplers import IGNORE, PreparedScene
from .splits import block_split, default_block_size

__all__ = [
    "PreparedData", "prepare_data", "resolve_classes", "record_profile", "check_tile_option", "training_tile",
    "default_tile",
]


@dataclass
class PreparedData:
    """Scenes ready for sampling plus what the model card needs about them."""

    scenes: list[PreparedScene]
    modality_cards: list[ModalityCard]
    classes: list[ClassInfo]
    band_counts: list[int]
    fingerprints: list[dict]
    n_train: int
    n_val: int


def looks_linear_sar(a: np.ndarray) -> bool:
    """Heuristic for SAR given as calibrated linear intensity rather than dB (design choice,
    switchable with train's ``to_db``): no negative value and a median below 1 (backscatter
    coefficients are mostly < 1, i.e. < 0 dB). dB data has negative values; 8-bit stretched SAR
    and SpaceNet 6's positive dB values have medians far above 1, so none of them is converted."""
    v = a[np.isfinite(a)]
    if v.size == 0 or v.min() < 0:
        return False
    med = float(np.median(v))
    return 0.0 < med < 1.0


def subsample(a: np.ndarray, max_pixels: int = 4_000_000) -> np.ndarray:
    """A regular subsample of (C, H, W) with at most about ``max_pixels`` pixels (for statistics)."""
    step = max(1, int(math.ceil(math.sqrt(a.shape[-1] * a.shape[-2] / max_pixels))))
    return a[:, ::step, ::step]


def resolve_classes(datas: Sequence[SceneData], table: list[ClassInfo] | None) -> list[ClassInfo]:
    """The classes of the run: the given table, else the union over scenes by value (first name wins)."""
    if table is not None:
        return sorted(table, key=lambda c: c.value)
    present: set[int] = set()
    for d in datas:
        present.update(int(v) for v in np.unique(d.values) if v > 0)
    by_value: dict[int, ClassInfo] = {}
    for d in datas:
        for c in d.classes:
            by_value.setdefault(int(c.value), c)
    out = [by_value.get(v, ClassInfo(v, f"class {v}", default_color(i))) for i, v in enumerate(sorted(present))]
    if len({c.color for c in out}) < len(out):  # scenes coloured their classes independently
        out = [ClassInfo(c.value, c.name, default_color(i)) for i, c in enumerate(out)]
    return out


def _band_counts(datas: Sequence[SceneData]) -> list[int]:
    band_counts = [int(a.shape[0]) for a in datas[0].arrays]
    for d in datas[1:]:
        counts = [int(a.shape[0]) for a in d.arrays]
        if counts != band_counts:
            raise InputError(f"scene {d.name} has band counts {counts} but the first scene has {band_counts}; "
                             "every scene must have the same bands in the same order")
    return band_counts


def _modality_card(i: int, name: str, bands: int, ratio: int, datas: Sequence[SceneData], to_db: bool | None,
                   progress: Progress) -> ModalityCard:
    """A new modality card with statistics of input ``i`` over all scenes (``to_db`` None: detect)."""
    if to_db is not None:
        db = bool(to_db)
    else:
        db = name == "sar" and all(looks_linear_sar(subsample(d.arrays[i])) for d in datas)
        if db:
            progress.info(f"input {i + 1} looks like linear SAR intensity: converting it to dB (to_db)")
    try:
        mean, std = normalize.compute_stats((subsample(d.arrays[i]) for d in datas), to_db_first=db)
    except ValueError as e:
        raise InputError(f"input {i + 1} has no valid pixel in the training scenes: {e}") from e
    return ModalityCard(name=name, bands=bands, grid_ratio=int(ratio), mean=[float(x) for x in mean],
                        std=[float(x) for x in std], to_db=db)


def prepare_data(
    datas: Sequence[SceneData],
    modality_names: Sequence[str],
    ratios: Sequence[int],
    *,
    classes: list[ClassInfo],
    validation_fraction: float,
    seed: int,
    tile: int,
    guard: int = 0,
    to_db: Sequence[bool] | None = None,
    given_cards: Sequence[ModalityCard | None] | None = None,
    progress: Progress | None = None,
) -> PreparedData:
    """Normalise the scenes, encode labels as class indices, split them into blocks.

    ``given_cards[i]`` reuses an existing modality's normalisation (fine-tuning, distillation
    teachers) instead of computing new statistics.
    """
    progress = progress or NullProgress()
    band_counts = _band_counts(datas)
    cards: list[ModalityCard] = []
    for i, name in enumerate(modality_names):
        given = given_cards[i] if given_cards is not None else None
        if given is not None:
            if given.bands != band_counts[i]:
                raise InputError(f"input {i + 1} has {band_counts[i]} bands but the model expects {given.bands}")
            cards.append(given)
        else:
            cards.append(_modality_card(i, name, band_counts[i], ratios[i], datas,
                                        None if to_db is None else to_db[i], progress))
    lut_size = max([c.value for c in classes] + [int(d.values.max(initial=0)) for d in datas]) + 1
    lut = np.full(lut_size, IGNORE, np.int64)
    for idx, c in enumerate(classes):
        lut[c.value] = idx
    scenes: list[PreparedScene] = []
    n_train = n_val = 0
    unknown: set[int] = set()
    for si, d in enumerate(datas):
        target = lut[d.values.astype(np.int64)]
        unknown.update(int(v) for v in np.unique(d.values[(target == IGNORE) & (d.values > 0)]))
        arrays = []
        for a, card in zip(d.arrays, cards):
            x = normalize.apply(a, card)
            np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
            arrays.append(x)
        labelled = target != IGNORE
        block = default_block_size(labelled.shape, tile)
        split = block_split(labelled, validation_fraction, block, seed=seed + si, guard=guard)
        n_train += int(split.train.sum())
        n_val += int(split.val.sum())
        scenes.append(PreparedScene(d.name, arrays, target, split.train, split.val, [int(r) for r in ratios]))
    if unknown:
        progress.warn(f"label values {sorted(unknown)} are not in the class table: treated as unlabelled")
    if n_train == 0:
        raise InputError("no labelled pixel left for training: check the labels overlap the inputs, "
                         "the class field/table, or lower VALIDATION_FRACTION")
    fps = [fp for d in datas for fp in d.fingerprints]
    return PreparedData(scenes, cards, list(classes), band_counts, fps, n_train, n_val)


def record_profile(card: ModalityCard, path: str, arrays: Sequence[np.ndarray]) -> None:
    """Store the input's data type and value range in its card (classify warns on a mismatch)."""
    from ..engine.value_checks import input_profile, raster_dtype

    card.data_type, card.value_range = input_profile(raster_dtype(path), (subsample(a) for a in arrays))


def check_tile_option(tile_size: int | None) -> None:
    """Refuse a TILE_SIZE a model card could not hold, before any data is read."""
    from ..modelfiles.card_schema import MAX_TILE

    if tile_size and not 8 <= int(tile_size) <= MAX_TILE:
        raise InputError(f"TILE_SIZE {tile_size} must be between 8 and {MAX_TILE} (0 = the network's default)")


def training_tile(tile_size: int, datas: Sequence[SceneData]) -> int:
    """The asked training tile cut to the largest scene (a larger one only pads it)."""
    from ..engine.sizes import clamp_tile

    side = max(max(d.shape) for d in datas)
    return clamp_tile(int(tile_size), side, side, 32)


def default_tile(recipe_tile: int, datas: Sequence[SceneData]) -> int:
    """The Recipe's tile, shrunk to the largest multiple of 32 inside the biggest scene (small data)."""
    side = max(min(d.shape) for d in datas)
    return int(max(32, min(recipe_tile, (side // 32) * 32)))


def run_tile(tile_size: int | None, recipe_tile: int, datas: Sequence[SceneData]) -> int:
    """The tile of a run: TILE_SIZE cut to the data when given (not 0), else the recipe's default."""
    return training_tile(tile_size, datas) if tile_size else default_tile(recipe_tile, datas)
