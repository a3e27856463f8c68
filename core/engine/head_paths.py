"""The engine side of the two head kinds: each kind's planner binds its inference path
(:func:`.paths.run_dense` or :func:`.paths.run_patch`) with that path's defaults and checks of the
tile side, overlap and batch. Which planner a card runs is the card's head kind's decision
(:class:`core.head_kinds.HeadKind`, its ``inference_path``), asked once in :func:`plan_path`.

* dense: tiles of the card's ``tile_size`` sharing its ``overlap`` (the caller may give others;
  tile >= 8, 0 <= overlap < tile / 2, and a batch of tiles must fit in memory); the batch is
  tiles per forward pass.
* patch: non-overlapping windows of :data:`DEFAULT_PATCH_WINDOW` pixels (or the caller's side),
  every valid pixel classified from its own patch; the batch counts units of
  :data:`PATCHES_PER_BATCH_UNIT` patches per forward pass.

A tile larger than the raster is cut to it (:func:`.sizes.clamp_tile`), with a message.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Optional

from ..errors import InputError, ModelFileError
from ..head_kinds import head_kind
from ..modelfiles.modelfile import ModelCard
from ..progress import Progress
from .grid import Grid
from .paths import InferenceStats, run_dense, run_patch
from .sizes import check_tile_memory, clamp_tile

#: Tiles (or patch units) per forward pass when BATCH_SIZE is 0 or not given.
DEFAULT_BATCH_SIZE: int = 4
#: Patches per forward in patch mode = batch_size x this (a "batch unit" of patches).
PATCHES_PER_BATCH_UNIT: int = 256
#: Default window side in patch mode when neither the caller nor the card gives one.
DEFAULT_PATCH_WINDOW: int = 64


@dataclass(frozen=True)
class PathPlan:
    """How one classification runs its head kind's path: ``run`` is that path with the tile
    geometry bound (called as ``run(inputs, card, runner, sink, progress=, background=,
    workers=)``), ``per_forward`` the tiles or patches per forward pass."""

    kind: str
    run: Callable[..., InferenceStats]
    tile: int
    overlap: int
    per_forward: int


def batch_size_or_default(batch_size: Optional[int]) -> int:
    """The batch size asked for, :data:`DEFAULT_BATCH_SIZE` for 0 or None (as in train);
    InputError below 1."""
    batch_size = DEFAULT_BATCH_SIZE if not batch_size else int(batch_size)
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1 (0 = the default, {DEFAULT_BATCH_SIZE}), got {batch_size}")
    return batch_size


def check_head_kind(card: ModelCard, where: object) -> None:
    """ModelFileError when the card's head kind has no path here (``where``: the model file)."""
    try:
        head_kind(card)
    except ModelFileError as e:
        raise ModelFileError(f"{where}: {e}") from None


def plan_dense(card: ModelCard, grid: Grid, tile_size: Optional[int], overlap: Optional[int],
               batch_size: int) -> tuple[int, PathPlan]:
    """(the tile asked for, the dense path's plan): overlapping tiles, logits blended."""
    asked = int(tile_size or card.tile_size)
    tile = clamp_tile(asked, grid.height, grid.width, card.tile_size)
    ov = int(card.overlap if overlap is None else overlap)
    if asked < 8 or ov < 0 or 2 * ov >= tile:
        raise InputError(f"tile size {tile} / overlap {ov}: need tile >= 8 and 0 <= overlap < tile/2")
    check_tile_memory(tile, batch_size, [m.bands for m in card.modalities],
                      [m.grid_ratio for m in card.modalities], card.num_classes)
    return asked, PathPlan("dense", functools.partial(run_dense, tile=tile, overlap=ov), tile, ov, batch_size)


def plan_patch(card: ModelCard, grid: Grid, tile_size: Optional[int], overlap: Optional[int],
               batch_size: int) -> tuple[int, PathPlan]:
    """(the window asked for, the patch path's plan): one patch per pixel, windows without overlap."""
    asked = int(tile_size or DEFAULT_PATCH_WINDOW)
    tile = clamp_tile(asked, grid.height, grid.width, DEFAULT_PATCH_WINDOW)
    if asked < 1:
        raise InputError(f"tile size must be positive, got {asked}")
    return asked, PathPlan("patch", functools.partial(run_patch, tile=tile), tile, 0,
                           batch_size * PATCHES_PER_BATCH_UNIT)


def plan_path(card: ModelCard, grid: Grid, tile_size: Optional[int], overlap: Optional[int], batch_size: int,
              progress: Progress) -> PathPlan:
    """The path of the card's head kind on ``grid``, with the tile side and overlap asked for
    (None/0: the head kind's defaults) checked; InputError when they cannot work."""
    asked, plan = head_kind(card).inference_path()(card, grid, tile_size, overlap, batch_size)
    if plan.tile != asked:
        progress.info(f"tile size {asked} is larger than the raster ({grid.width} x {grid.height}): using {plan.tile}")
    return plan
