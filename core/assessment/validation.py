"""Validation of a network during training: confusion matrices on the validation blocks.

Two kinds, chosen by the head kind (``core.head_kinds``): :class:`DenseValidation` runs tiles
over the validation blocks and scores only their pixels; :class:`PatchValidation` classifies the
patches of a capped, deterministic subset of validation pixels. Both shard their items over the
ranks of a distributed run (the caller sums the matrices) and share one calling convention:
``confusion(net, predict, K, batch, device, ctx, to_device) -> (K, K) int64``.
:func:`metric_of` turns a matrix into the run's selection metric.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..classes import ClassInfo
from ..data.samplers import PatchSampler, PreparedScene, collate

if TYPE_CHECKING:
    from ..fitting.ddp import DistContext

__all__ = ["DenseValidation", "PatchValidation", "default_predict", "metric_of"]


def default_predict(net: Any, inputs: list[Any]) -> Any:
    """Logits of ``net`` for one batch: ``net(*inputs)``."""
    return net(*inputs)


def metric_of(cm: np.ndarray, classes: Sequence[ClassInfo], name: str) -> tuple[float, Any]:
    """(value of metric ``name``, core.assessment.metrics.Metrics) of a confusion matrix; (nan, None) if empty."""
    from .metrics import Metrics

    if cm.sum() == 0:
        return float("nan"), None
    m = Metrics.from_confusion(cm, list(classes))
    return float(getattr(m, name)), m


class PatchValidation:
    """Validation on the validation-block pixels of patch models (capped, deterministic subset)."""

    def __init__(self, scenes: Sequence[PreparedScene], sizes: Sequence[int], anchors: Sequence[int],
                 seed: int, max_items: int = 20000) -> None:
        self.sampler = PatchSampler(scenes, sizes, anchors, seed, which="val", augment=False, max_items=max_items)

    def __len__(self) -> int:
        return len(self.sampler)

    def confusion(self, net: Any, predict: Callable, k: int, batch: int, device: Any, ctx: DistContext,
                  to_device: Callable) -> np.ndarray:
        import torch

        cm = np.zeros((k, k), np.int64)
        idx = np.arange(len(self.sampler))[ctx.rank::ctx.world_size]
        with torch.no_grad():
            for b in range(0, len(idx), batch):
                inputs, target = collate([self.sampler.item(0, int(i)) for i in idx[b:b + batch]])
                pred = predict(net, to_device(inputs)).argmax(1).cpu().numpy()
                np.add.at(cm, (target.numpy(), pred), 1)
        return cm


class DenseValidation:
    """Validation of dense models: tiles over the validation blocks, scored on their pixels only."""

    def __init__(self, scenes: Sequence[PreparedScene], tile: int) -> None:
        self.scenes = list(scenes)
        self.tile = tile
        self.windows: list[tuple[int, int, int, int, int]] = []  # scene, r0, c0, own rows, own cols
        for si, s in enumerate(self.scenes):
            h, w = s.target.shape
            for r in range(0, h, tile):
                for c in range(0, w, tile):
                    if s.val[r:r + tile, c:c + tile].any():
                        self.windows.append((si, r, c, min(tile, h - r), min(tile, w - c)))

    def __len__(self) -> int:
        return len(self.windows)

    def confusion(self, net: Any, predict: Callable, k: int, batch: int, device: Any, ctx: DistContext,
                  to_device: Callable) -> np.ndarray:
        import torch

        cm = np.zeros((k, k), np.int64)
        mine = self.windows[ctx.rank::ctx.world_size]
        with torch.no_grad():
            for b in range(0, len(mine), batch):
                items, owns = [], []
                for si, r, c, rows, cols in mine[b:b + batch]:
                    s = self.scenes[si]
                    h, w = s.target.shape
                    t = min(self.tile, h, w)
                    r0, c0 = min(r, h - t), min(c, w - t)
                    arrays = [a[:, q * r0:q * (r0 + t), q * c0:q * (c0 + t)] for a, q in zip(s.arrays, s.ratios)]
                    items.append((arrays, s.target[r0:r0 + t, c0:c0 + t]))
                    owns.append((s, r, c, rows, cols, r - r0, c - c0))
                inputs, _ = collate(items)
                pred = predict(net, to_device(inputs)).argmax(1).cpu().numpy()
                for p, (s, r, c, rows, cols, dr, dc) in zip(pred, owns):
                    ref = s.target[r:r + rows, c:c + cols]
                    sel = s.val[r:r + rows, c:c + cols]
                    np.add.at(cm, (ref[sel], p[dr:dr + rows, dc:dc + cols][sel]), 1)
        return cm
