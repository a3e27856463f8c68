"""The head-kind objects: each owns its sampler, validation, split guard, card tile, metric and inference path."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mmlc.core.assessment.validation import DenseValidation, PatchValidation
from mmlc.core.data.samplers import DenseTileSampler, PatchSampler, PreparedScene
from mmlc.core.errors import ModelFileError
from mmlc.core.head_kinds import DENSE, PATCH, head_kind
from mmlc.models.registry import ModalitySpec

ROOT = Path(__file__).resolve().parent.parent
# DAS2F's geometry: MS 16/7 at ratio 1, PAN 64/28 at ratio 4
DAS2F = (ModalitySpec("ms", 4, 1, 16, 7), ModalitySpec("pan", 1, 4, 64, 28))


def _scene(h: int = 40, w: int = 40) -> PreparedScene:
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, (h, w)).astype(np.int64)
    train = np.zeros((h, w), bool)
    train[:, : w // 2] = True
    val = ~train
    arrays = [rng.normal(size=(4, h, w)).astype(np.float32), rng.normal(size=(1, 4 * h, 4 * w)).astype(np.float32)]
    return PreparedScene("s", arrays, target, train, val, [1, 4])


def test_lookup_by_spec_card_or_name():
    from mmlc.models.registry import get_spec

    assert head_kind(get_spec("das2f")) is PATCH and head_kind(get_spec("asanet")) is DENSE
    assert head_kind("dense") is DENSE and head_kind(type("Card", (), {"head_kind": "patch"})()) is PATCH
    with pytest.raises(ModelFileError, match="unknown head kind 'sparse'"):
        head_kind("sparse")
    with pytest.raises(ModelFileError, match="unknown head kind None"):
        head_kind(object())


def test_dense_owns_tiles_and_miou():
    s = _scene()
    sampler = DENSE.training_sampler([s], DAS2F, tile=16, n_train=800, batch_size=2, seed=0)
    assert isinstance(sampler, DenseTileSampler) and len(sampler) == 4 * 4  # 4 draws per 16x16 of 800 pixels
    assert len(DENSE.training_sampler([s], DAS2F, tile=16, n_train=10, batch_size=8, seed=0)) == 8
    # the Recipe's minimum batches per epoch: sparse labels get that many, plentiful ones are unchanged
    assert len(DENSE.training_sampler([s], DAS2F, tile=16, n_train=10, batch_size=8, seed=0, min_batches=4)) == 32
    assert len(DENSE.training_sampler([s], DAS2F, tile=16, n_train=800, batch_size=2, seed=0, min_batches=4)) == 16
    validation = DENSE.validation([s], DAS2F, tile=16, seed=0)
    assert isinstance(validation, DenseValidation) and len(validation) == 6  # 16-pixel windows over the right half
    assert DENSE.split_guard(DAS2F) == 0 and DENSE.selection_metric == "miou"
    assert DENSE.card_tile(96, 256) == 96
    assert DENSE.default_window(type("Card", (), {"tile_size": 128})()) == 128


def test_patch_owns_patches_guard_and_accuracy():
    s = _scene()
    sampler = PATCH.training_sampler([s], DAS2F, tile=32, n_train=800, batch_size=2, seed=0)
    assert isinstance(sampler, PatchSampler) and len(sampler) == int(s.train.sum())
    # a patch epoch is every training pixel, whatever the minimum
    assert len(PATCH.training_sampler([s], DAS2F, tile=32, n_train=800, batch_size=2, seed=0, min_batches=50)) \
        == int(s.train.sum())
    arrays, label = sampler.item(0, 0)
    assert [a.shape for a in arrays] == [(4, 16, 16), (1, 64, 64)] and label.shape == ()
    validation = PATCH.validation([s], DAS2F, tile=32, seed=0)
    assert isinstance(validation, PatchValidation) and len(validation) == int(s.val.sum())
    assert PATCH.split_guard(DAS2F) == 16 // 2 + 1  # the widest patch in target pixels, halved, plus one
    assert PATCH.selection_metric == "overall_accuracy"
    assert PATCH.card_tile(96, 256) == 256


def test_inference_paths_are_the_engine_planners_imported_on_call():
    from mmlc.core.engine import head_paths

    assert DENSE.inference_path() is head_paths.plan_dense and PATCH.inference_path() is head_paths.plan_patch
    assert PATCH.default_window(None) == head_paths.DEFAULT_PATCH_WINDOW
    code = "import sys, mmlc.core.head_kinds; print('mmlc.core.engine.head_paths' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT / "build" / "pkg").stdout.strip()
    assert out == "False"
