"""The two head kinds, dense and patch: everything that differs between them, in one place.

A network's ``head_kind`` (its ModelSpec, and the model card written from it) is ``dense`` (a tile
in, a logit map out) or ``patch`` (centred patches in, one logit vector per pixel out). Training,
validation and classification ask the :class:`HeadKind` object instead of branching on the name:

- the training sampler (``core.data.samplers``: :class:`DenseTileSampler` / :class:`PatchSampler`;
  their streamed forms in ``core.data.streamed_samplers`` for scenes read window by window)
  and the guard band the block split leaves around validation blocks (a patch reaches past its pixel);
- the validation (``core.assessment.validation``: :class:`DenseValidation` / :class:`PatchValidation`)
  and the selection metric of the best epoch (mIoU / overall accuracy);
- the tile written in the model card and the default classification window;
- the inference path: :meth:`HeadKind.inference_path` returns the engine's planner of that path
  (``core.engine.head_paths.plan_dense`` / ``plan_patch``: ``paths.run_dense`` / ``run_patch`` with
  their tile, overlap and batch defaults and checks), imported on call (the engine is not loaded when
  the head kinds are). Classification asks the card's head kind for it: the one place where dense
  and patch part ways in classify.

:func:`head_kind` finds the object of a spec, a card or a name.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .assessment.validation import DenseValidation, PatchValidation
from .data import streamed_samplers
from .data.samplers import DenseTileSampler, PatchSampler, PreparedScene
from .errors import ModelFileError

__all__ = ["HeadKind", "DENSE", "PATCH", "HEAD_KINDS", "head_kind"]



def _inference_module() -> Any:
    """core.engine.head_paths, imported on first use (loading the head kinds does not load the engine)."""
    return importlib.import_module(".engine.head_paths", __package__)


@dataclass(frozen=True)
class HeadKind:
    """What a head kind decides. ``modalities`` arguments are ModalitySpec-like objects (``patch_size``,
    ``patch_anchor``, ``grid_ratio``), in input order."""

    name: str
    #: the Metrics attribute the best epoch is selected on
    selection_metric: str
    #: name of the planner in core.engine.head_paths that sets up this kind's inference path
    inference_entry: str

    def split_guard(self, modalities: Sequence[Any]) -> int:
        """Target pixels the block split keeps free around validation blocks (0: none)."""
        return 0

    def training_sampler(self, scenes: Sequence[PreparedScene], modalities: Sequence[Any], *, tile: int,
                         n_train: int, batch_size: int, seed: int,
                         scale_range: tuple[float, float] | None = None, class_balance: float = 0.0,
                         min_batches: int = 1) -> Any:
        """The sampler of the training items (``__len__``, ``item(epoch, index)``); ``class_balance``:
        the power of class-balanced drawing (``core.data.samplers``; 0 = off); ``min_batches``: batches
        an epoch holds at least (the Recipe's ``min_batches_per_epoch``; dense heads only, a patch
        epoch is every training pixel)."""
        raise NotImplementedError

    def validation(self, scenes: Sequence[PreparedScene], modalities: Sequence[Any], *, tile: int,
                   seed: int) -> Any:
        """The validation of the run (``__len__``, ``confusion(...)``)."""
        raise NotImplementedError

    def streamed(self, data: Any, modalities: Sequence[Any], *, tile: int, batch_size: int, seed: int,
                 scale_range: tuple[float, float] | None = None, world_size: int = 1,
                 min_batches: int = 1) -> tuple[Any, Any]:
        """(training sampler, validation) over scenes read window by window (``core.data.windows``)."""
        raise NotImplementedError

    def card_tile(self, training_tile: int, recipe_tile: int) -> int:
        """The tile the model card records for classification."""
        raise NotImplementedError

    def default_window(self, card: Any) -> int:
        """Classification's window (tile) when the caller gives none."""
        raise NotImplementedError

    def inference_path(self) -> Callable[..., Any]:
        """``core.engine.head_paths.plan_dense`` / ``plan_patch``, imported now (not at module import)."""
        return getattr(_inference_module(), self.inference_entry)


def _dense_epoch(n_train: int, tile: int, batch_size: int, min_batches: int = 1) -> int:
    """About four draws per tile-sized area of labelled training pixels, at least ``min_batches``
    batches (and one). Sparse labels (points, a few hundred pixels) fill less than one tile-sized
    area, so without the minimum an epoch is a single optimiser step."""
    return max(batch_size * max(1, int(min_batches)), 4 * int(math.ceil(n_train / float(tile * tile))))


class _Dense(HeadKind):
    def training_sampler(self, scenes, modalities, *, tile, n_train, batch_size, seed, scale_range=None,
                         class_balance=0.0, min_batches=1):
        return DenseTileSampler(scenes, tile, _dense_epoch(n_train, tile, batch_size, min_batches), seed,
                                scale_range=scale_range, class_balance=class_balance)

    def streamed(self, data, modalities, *, tile, batch_size, seed, scale_range=None, world_size=1, min_batches=1):
        # rounded up to a multiple of the world size: DDP ranks share the epoch without repeats
        length = -(-_dense_epoch(data.n_train, tile, batch_size, min_batches) // world_size) * world_size
        return (streamed_samplers.StreamedTileSampler(data.scenes, tile, length, seed, scale_range=scale_range),
                streamed_samplers.StreamedDenseValidation(data.scenes, tile))

    def validation(self, scenes, modalities, *, tile, seed):
        return DenseValidation(scenes, tile)

    def card_tile(self, training_tile, recipe_tile):
        return int(training_tile)

    def default_window(self, card):
        return int(card.tile_size)


class _Patch(HeadKind):
    def split_guard(self, modalities):
        return max([m.patch_size // max(1, m.grid_ratio) for m in modalities] + [0]) // 2 + 1

    def training_sampler(self, scenes, modalities, *, tile, n_train, batch_size, seed, scale_range=None,
                         class_balance=0.0, min_batches=1):
        return PatchSampler(scenes, *_geometry(modalities), seed, which="train", class_balance=class_balance)

    def validation(self, scenes, modalities, *, tile, seed):
        return PatchValidation(scenes, *_geometry(modalities), seed)

    def streamed(self, data, modalities, *, tile, batch_size, seed, scale_range=None, world_size=1, min_batches=1):
        return (streamed_samplers.StreamedPatchSampler(data.scenes, *_geometry(modalities), seed, which="train"),
                streamed_samplers.StreamedPatchValidation(data.scenes, *_geometry(modalities), seed))

    def card_tile(self, training_tile, recipe_tile):
        return int(recipe_tile)

    def default_window(self, card):
        return int(_inference_module().DEFAULT_PATCH_WINDOW)


def _geometry(modalities: Sequence[Any]) -> tuple[list[int], list[int]]:
    return [m.patch_size for m in modalities], [m.patch_anchor for m in modalities]


DENSE: HeadKind = _Dense("dense", "miou", "plan_dense")
PATCH: HeadKind = _Patch("patch", "overall_accuracy", "plan_patch")
HEAD_KINDS: dict[str, HeadKind] = {k.name: k for k in (DENSE, PATCH)}


def head_kind(of: Any) -> HeadKind:
    """The head kind of a ModelSpec, a ModelCard (their ``head_kind``) or a name; ModelFileError if unknown."""
    name = of if isinstance(of, str) else getattr(of, "head_kind", None)
    try:
        return HEAD_KINDS[name]
    except (KeyError, TypeError):
        raise ModelFileError(f"unknown head kind {name!r} (expected {' or '.join(HEAD_KINDS)})") from None
