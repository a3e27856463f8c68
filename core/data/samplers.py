"""Training samples from prepared scenes: tiles for dense models, centred patches for patch models.

The ModelSpec's ``head_kind`` chooses the sampler (``core.head_kinds``: ``HeadKind.training_sampler``),
never the network name.
Every item is a pure function of ``(seed, epoch, index)`` (its own numpy Generator), so an epoch
is identical whether it runs straight through, after a resume, or sharded over DDP ranks.

- :class:`DenseTileSampler`: class-aware random crops from labelled areas, following the ASANet
  recipe (spec ``asanet.md`` section 4.2): up to ``max_draws`` crops are drawn until one holds at
  least two labelled classes and no class covers ``cat_max_ratio`` (0.75) or more of it, else the
  last draw is kept; an optional joint random rescale (``scale_range``, ASANet uses (0.5, 2.0)).
- :class:`PatchSampler`: one patch per labelled training pixel; patch geometry from the
  ModalitySpec (``patch_size``, ``patch_anchor``, ``grid_ratio``), reflect-101 at raster borders.

Class-balanced sampling (``class_balance`` = p > 0, a design choice for small label sets, not from
the papers; issue 21): each labelled pixel is drawn with weight ``count(its class) ** -p``, so p = 1
gives every class the same share of an epoch and p = 0.5 halves the imbalance on a log scale. Patch
models draw an epoch's items with replacement by these weights; dense models draw the pixel each
crop is centred near by them. 0 (the default) keeps one item per labelled pixel (patch) and
uniform anchors (dense).

Geometric augmentation (flips, 90-degree rotations) is applied identically to every modality and
the label. For patch models it is only applied when every patch is centred on its target pixel
(``2*anchor + ratio == patch_size``), since otherwise a flip moves the target off the anchor.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .patches import PatchCutter

IGNORE = 255


@dataclass
class PreparedScene:
    """A scene ready for sampling: normalised arrays (NaN replaced by 0), class indices, masks.

    arrays: (C_i, ratio_i*H, ratio_i*W) float32 per modality.
    target: (H, W) int64 class indices 0..K-1, IGNORE where unlabelled/invalid.
    train / val: (H, W) bool masks of labelled pixels usable for training / validation.
    """

    name: str
    arrays: list[np.ndarray]
    target: np.ndarray
    train: np.ndarray
    val: np.ndarray
    ratios: list[int]


def item_rng(seed: int, epoch: int, index: int, stream: int = 0) -> np.random.Generator:
    """The Generator of one item: independent of the order items are drawn in."""
    return np.random.default_rng([int(seed), int(epoch), int(index), int(stream)])


def class_weights(classes: np.ndarray, power: float) -> np.ndarray | None:
    """Drawing probabilities of pixels whose class indices are ``classes``: ``count ** -power``
    normalised (None when ``power`` is 0: uniform)."""
    if power <= 0 or classes.size == 0:
        return None
    counts = np.bincount(classes).astype(float)
    w = counts[classes] ** -float(power)
    return w / w.sum()


def draw(cdf: np.ndarray, u: np.ndarray | float) -> np.ndarray | int:
    """Indices drawn by the cumulative weights ``cdf`` for uniform numbers ``u`` in [0, 1)."""
    picks = np.minimum(np.searchsorted(cdf, np.asarray(u) * cdf[-1], side="right"), len(cdf) - 1)
    return picks if np.ndim(picks) else int(picks)


def augment(arrays: list[np.ndarray], label: np.ndarray | None, rng: np.random.Generator):
    """Same random flip / 90-degree rotation for every modality and the label (dihedral group D4)."""
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))

    def tf(a: np.ndarray) -> np.ndarray:
        if flip:
            a = a[..., ::-1]
        if k:
            a = np.rot90(a, k, axes=(-2, -1))
        return np.ascontiguousarray(a)

    return [tf(a) for a in arrays], (tf(label) if label is not None and label.ndim >= 2 else label)


def _pad_to(a: np.ndarray, rows: int, cols: int, value: float | None) -> np.ndarray:
    pr, pc = max(0, rows - a.shape[-2]), max(0, cols - a.shape[-1])
    if pr == 0 and pc == 0:
        return a
    widths = [(0, 0)] * (a.ndim - 2) + [(0, pr), (0, pc)]
    if value is None:
        return np.pad(a, widths, mode="reflect" if min(a.shape[-2:]) > 1 else "edge")
    return np.pad(a, widths, mode="constant", constant_values=value)


class DenseTileSampler:
    """Random class-aware tiles from labelled training areas (dense models)."""

    def __init__(
        self,
        scenes: Sequence[PreparedScene],
        tile: int,
        length: int,
        seed: int,
        *,
        cat_max_ratio: float = 0.75,
        max_draws: int = 10,
        scale_range: tuple[float, float] | None = None,
        augment: bool = True,
        class_balance: float = 0.0,
    ) -> None:
        self.tile = int(tile)
        self.seed = seed
        self.length = int(length)
        self.cat_max_ratio = cat_max_ratio
        self.max_draws = max_draws
        self.scale_range = scale_range
        self.do_augment = augment
        self.scenes = list(scenes)
        # Scenes smaller than a tile are padded once (reflect-101, labels IGNORE).
        for s in self.scenes:
            h, w = s.target.shape
            if h < self.tile or w < self.tile:
                s.arrays = [_pad_to(a, r * max(h, self.tile), r * max(w, self.tile), None) for a, r in zip(s.arrays, s.ratios)]
                s.target = _pad_to(s.target, max(h, self.tile), max(w, self.tile), IGNORE)
                s.train = _pad_to(s.train, max(h, self.tile), max(w, self.tile), False)
                s.val = _pad_to(s.val, max(h, self.tile), max(w, self.tile), False)
        self._pixels = [np.flatnonzero(s.train) for s in self.scenes]
        weights = np.array([len(p) for p in self._pixels], float)
        if weights.sum() == 0:
            raise ValueError("no labelled training pixel")
        #: per scene, the cumulative drawing weights of its anchor pixels (None: uniform)
        self._anchor_cdf: list[np.ndarray | None] = [None] * len(self.scenes)
        balanced = class_weights(np.concatenate([s.target.ravel()[p] for s, p in zip(self.scenes, self._pixels)]),
                                 class_balance)
        if balanced is not None:
            parts = np.split(balanced, np.cumsum([len(p) for p in self._pixels])[:-1])
            weights = np.array([w.sum() for w in parts])
            self._anchor_cdf = [np.cumsum(w) if len(w) else None for w in parts]
        self._weights = weights / weights.sum()

    def __len__(self) -> int:
        return self.length

    def _crop(self, si: int, rng: np.random.Generator, size: int):
        s = self.scenes[si]
        h, w = s.target.shape
        cdf = self._anchor_cdf[si]
        k = int(rng.integers(len(self._pixels[si]))) if cdf is None else draw(cdf, rng.random())
        pix = self._pixels[si][k]
        pr, pc = divmod(int(pix), w)
        size = min(size, h, w)
        r0 = int(np.clip(pr - rng.integers(size), 0, h - size))
        c0 = int(np.clip(pc - rng.integers(size), 0, w - size))
        label = np.where(s.train[r0:r0 + size, c0:c0 + size], s.target[r0:r0 + size, c0:c0 + size], IGNORE)
        arrays = [a[:, r * r0:r * (r0 + size), r * c0:r * (c0 + size)] for a, r in zip(s.arrays, s.ratios)]
        return arrays, label

    def _acceptable(self, label: np.ndarray) -> bool:
        lab = label[label != IGNORE]
        if lab.size == 0:
            return False
        counts = np.bincount(lab.ravel())
        counts = counts[counts > 0]
        return len(counts) >= 2 and counts.max() / lab.size < self.cat_max_ratio

    def item(self, epoch: int, index: int) -> tuple[list[np.ndarray], np.ndarray]:
        rng = item_rng(self.seed, epoch, index)
        si = int(rng.choice(len(self.scenes), p=self._weights))
        size = self.tile
        if self.scale_range is not None:
            size = max(4, int(round(self.tile / rng.uniform(*self.scale_range))))
        arrays, label = self._crop(si, rng, size)
        for _ in range(self.max_draws - 1):
            if self._acceptable(label):
                break
            arrays, label = self._crop(si, rng, size)
        if label.shape[0] != self.tile or label.shape[1] != self.tile:
            arrays, label = _resize(arrays, label, self.tile, self.scenes[si].ratios)
        if self.do_augment:
            arrays, label = augment(arrays, label, rng)
        return [np.ascontiguousarray(a, dtype=np.float32) for a in arrays], label.astype(np.int64)


def _resize(arrays: list[np.ndarray], label: np.ndarray, tile: int, ratios: Sequence[int]):
    """Joint rescale to ``tile``: bilinear for images, nearest for labels (ASANet 4.2); a crop
    smaller than the tile after rescaling is padded (reflect-101, labels IGNORE)."""
    import torch
    import torch.nn.functional as F

    out = []
    for a, r in zip(arrays, ratios):
        t = torch.from_numpy(np.ascontiguousarray(a))[None]
        out.append(F.interpolate(t, size=(r * tile, r * tile), mode="bilinear", align_corners=False)[0].numpy())
    lab = torch.from_numpy(label.astype(np.int64))[None, None].float()
    lab = F.interpolate(lab, size=(tile, tile), mode="nearest")[0, 0].numpy().astype(np.int64)
    return out, lab


class PatchSampler:
    """One centred patch per modality and labelled pixel (patch models).

    The patch of target pixel (r, c) in modality i starts at (ratio_i*r - anchor_i,
    ratio_i*c - anchor_i) in that modality's pixels (:mod:`.patches`, which pads each image once
    with reflect-101).
    ``which`` selects the ``train`` or ``val`` pixels.
    """

    def __init__(
        self,
        scenes: Sequence[PreparedScene],
        patch_sizes: Sequence[int],
        anchors: Sequence[int],
        seed: int,
        *,
        which: str = "train",
        augment: bool = True,
        max_items: int | None = None,
        class_balance: float = 0.0,
    ) -> None:
        self.scenes = list(scenes)
        self.sizes = [int(p) for p in patch_sizes]
        self.anchors = [int(a) for a in anchors]
        self.seed = seed
        ratios = self.scenes[0].ratios if self.scenes else [1] * len(self.sizes)
        centred = all(2 * a + r == p for a, r, p in zip(self.anchors, ratios, self.sizes))
        self.do_augment = augment and centred
        self._cutters = [PatchCutter(s.arrays, self.sizes, self.anchors, s.ratios) for s in self.scenes]
        index = []
        for si, s in enumerate(self.scenes):
            mask = getattr(s, which)
            rr, cc = np.nonzero(mask)
            index.append(np.stack([np.full_like(rr, si), rr, cc], 1))
        self.index = np.concatenate(index, 0) if index else np.zeros((0, 3), np.int64)
        if max_items is not None and len(self.index) > max_items:
            keep = np.sort(np.random.default_rng([seed, 104729]).choice(len(self.index), max_items, replace=False))
            self.index = self.index[keep]
        classes = np.zeros(len(self.index) if class_balance > 0 else 0, np.int64)
        for si, s in enumerate(self.scenes if class_balance > 0 else []):
            mine = self.index[:, 0] == si
            classes[mine] = s.target[self.index[mine, 1], self.index[mine, 2]]
        weights = class_weights(classes, class_balance)
        self._cdf = None if weights is None else np.cumsum(weights)
        self._drawn: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.index)

    def drawn(self, epoch: int) -> np.ndarray:
        """With class balance, the items of ``epoch``: as many as labelled pixels, drawn with
        replacement by class weight (a pure function of seed and epoch, cached for the epoch)."""
        if self._drawn is None or self._drawn[0] != epoch:
            u = np.random.default_rng([int(self.seed), int(epoch), 7919]).random(len(self.index))
            self._drawn = (epoch, draw(self._cdf, u))
        return self._drawn[1]

    def item(self, epoch: int, index: int) -> tuple[list[np.ndarray], np.ndarray]:
        at = index if self._cdf is None else int(self.drawn(epoch)[index])
        si, r, c = (int(v) for v in self.index[at])
        s = self.scenes[si]
        arrays = [p[0] for p in self._cutters[si].cut(np.array([r]), np.array([c]))]
        label = np.asarray(s.target[r, c], np.int64)
        if self.do_augment:
            arrays, _ = augment(arrays, None, item_rng(self.seed, epoch, index))
        return [np.ascontiguousarray(a, dtype=np.float32) for a in arrays], label


def collate(items: Sequence[tuple[list[np.ndarray], np.ndarray]]):
    """Stack items into one float32 tensor per modality and an int64 target tensor."""
    import torch

    n_mod = len(items[0][0])
    inputs = [torch.from_numpy(np.stack([it[0][m] for it in items])) for m in range(n_mod)]
    target = torch.from_numpy(np.stack([np.asarray(it[1], np.int64) for it in items]))
    return inputs, target


def epoch_order(n: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> np.ndarray:
    """The shuffled item order of one epoch, sharded like DistributedSampler (padded to equal shares)."""
    perm = np.random.default_rng([int(seed), int(epoch), 15485863]).permutation(n)
    if world > 1:
        per = -(-n // world)
        perm = np.concatenate([perm, perm[: per * world - n]]) if per * world > n else perm
        perm = perm[rank::world]
    return perm
