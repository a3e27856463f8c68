"""One patch geometry for training, the Xi'an cutter and the engine (core/data/patches.py)."""
from __future__ import annotations

import numpy as np
import pytest
from mmlc.core.data.patches import PatchCutter, halo_for, patch_margins
from mmlc.core.engine.io import reflect101
from mmlc.core.errors import InputError


def _crop(a: np.ndarray, r: int, c: int, p: int, anchor: int, k: int) -> np.ndarray:
    """Reference: index the image with reflect-101 coordinates, pixel by pixel."""
    rows = reflect101(np.arange(k * r - anchor, k * r - anchor + p), a.shape[1])
    cols = reflect101(np.arange(k * c - anchor, k * c - anchor + p), a.shape[2])
    return a[:, rows][:, :, cols]


def test_margins_and_halo_of_das2f() -> None:
    assert patch_margins(16, 7, 1) == (7, 8) and patch_margins(64, 28, 4) == (28, 32)
    assert halo_for(16, 7, 1) == 8 and halo_for(64, 28, 4) == 8 and halo_for(11, 5, 1) == 5
    with pytest.raises(ValueError, match="inside the patch"):
        patch_margins(8, 8, 1)


def test_cutter_equals_reflect101_crops_at_borders_and_inside() -> None:
    rng = np.random.default_rng(0)
    ms, pan = rng.random((4, 20, 23)).astype(np.float32), rng.random((1, 80, 92)).astype(np.float32)
    cutter = PatchCutter([ms, pan], [16, 64], [7, 28], [1, 4])
    rows, cols = np.array([0, 0, 19, 10, 19, 3]), np.array([0, 22, 0, 11, 22, 5])
    got_ms, got_pan = cutter.cut(rows, cols)
    assert got_ms.shape == (6, 4, 16, 16) and got_pan.shape == (6, 1, 64, 64)
    for j, (r, c) in enumerate(zip(rows, cols)):
        np.testing.assert_array_equal(got_ms[j], _crop(ms, r, c, 16, 7, 1))
        np.testing.assert_array_equal(got_pan[j], _crop(pan, r, c, 64, 28, 4))
    with pytest.raises(InputError, match="must lie in the 20x23"):
        cutter.cut(np.array([20]), np.array([0]))
    with pytest.raises(InputError, match="exactly 4x"):
        PatchCutter([ms, pan[:, :-1]], [16, 64], [7, 28], [1, 4])
