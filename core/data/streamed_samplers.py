"""Samplers and validations over streamed scenes (:class:`.windows.SceneWindows`): subclasses of
the in-memory ones (``core.data.samplers``, ``core.assessment.validation``) that keep their item
rules and read each window from disk when it is drawn. ``core.head_kinds`` picks the pair a head
kind trains with (``HeadKind.streamed``).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..assessment.validation import PatchValidation
from .patches import halo_for
from .samplers import IGNORE, DenseTileSampler, PatchSampler, collate, item_rng
from .windows import SceneWindows


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
