"""Class-balanced sampling (core.data.samplers, issue 21): rare classes drawn more often, 0 = as before."""
from __future__ import annotations

import numpy as np
import pytest
from mmlc.core.data.samplers import IGNORE, DenseTileSampler, PatchSampler, PreparedScene, class_weights


def _scene(counts: dict[int, int], size: int = 64) -> PreparedScene:
    """A scene whose training pixels hold ``counts`` pixels of each class, scattered."""
    rng = np.random.default_rng(0)
    target = np.full((size, size), IGNORE, np.int64)
    cells = rng.permutation(size * size)
    at = 0
    for cls, n in counts.items():
        target.ravel()[cells[at:at + n]] = cls
        at += n
    train = target != IGNORE
    arrays = [rng.normal(size=(3, size, size)).astype(np.float32)]
    return PreparedScene("s", arrays, target, train, np.zeros_like(train), [1])


def test_class_weights_equalise_classes_at_power_one() -> None:
    classes = np.array([0] * 90 + [1] * 10)
    w = class_weights(classes, 1.0)
    assert w is not None and abs(w.sum() - 1) < 1e-12
    assert w[classes == 0].sum() == pytest.approx(0.5) and w[classes == 1].sum() == pytest.approx(0.5)
    half = class_weights(classes, 0.5)
    assert half[classes == 1].sum() == pytest.approx(np.sqrt(10) / (np.sqrt(10) + np.sqrt(90)))
    assert class_weights(classes, 0.0) is None


def _patch_shares(sampler: PatchSampler, scene: PreparedScene, epoch: int) -> np.ndarray:
    labels = np.array([int(sampler.item(epoch, i)[1]) for i in range(len(sampler))])
    return np.bincount(labels, minlength=3) / len(labels)


def test_patch_sampler_draws_rare_classes_as_often_as_common_ones() -> None:
    scene = _scene({0: 800, 1: 150, 2: 50})
    plain = PatchSampler([scene], [5], [2], seed=3, which="train")
    assert np.allclose(_patch_shares(plain, scene, 0), [0.8, 0.15, 0.05])  # one item per labelled pixel
    balanced = PatchSampler([scene], [5], [2], seed=3, which="train", class_balance=1.0)
    assert len(balanced) == len(plain)  # an epoch keeps its length
    shares = _patch_shares(balanced, scene, 0)
    assert np.all(np.abs(shares - 1 / 3) < 0.05), shares
    # a pure function of (seed, epoch, index): same items again, other items next epoch
    assert [int(balanced.item(0, i)[1]) for i in range(50)] == [int(balanced.item(0, i)[1]) for i in range(50)]
    assert not np.array_equal(balanced.drawn(0), balanced.drawn(1))


def test_dense_sampler_centres_crops_on_rare_classes() -> None:
    def centre_classes(sampler: DenseTileSampler) -> np.ndarray:
        rng_items = [sampler._crop(0, np.random.default_rng([5, i]), 1)[1] for i in range(3000)]
        return np.bincount(np.array([int(x[0, 0]) for x in rng_items]), minlength=3) / 3000

    plain = centre_classes(DenseTileSampler([_scene({0: 800, 1: 150, 2: 50})], 1, 10, seed=1))
    balanced = centre_classes(DenseTileSampler([_scene({0: 800, 1: 150, 2: 50})], 1, 10, seed=1, class_balance=1.0))
    assert plain[2] < 0.08 and np.all(np.abs(balanced - 1 / 3) < 0.04), (plain, balanced)
