"""Tiled inference: tile geometry, blending, patch cutting, OOM back-off, tiled == one pass.

Also home of the tiny test-only networks (a dense FCN and a patch net) that the other engine
tests import: real networks are written elsewhere and must not be needed here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mmlc.core.classes import ClassInfo, default_color
from mmlc.core.classify import classify
from mmlc.core.errors import Cancelled
from mmlc.core.inference import RowAccumulator, Runner, patch_halo, ramp_weights, tile_starts
from mmlc.core.io import AlignedReader
from mmlc.core.modelfile import ModalityCard, ModelCard, save_model_file
from mmlc.core.normalize import apply as normalize_apply
from mmlc.core.progress import CallbackProgress
from mmlc.models.registry import ModalitySpec, ModelSpec, register
from osgeo import gdal
from torch import nn


# --- tiny test-only networks --------------------------------------------------------------
class TinyFCN(nn.Module):
    """Two 3x3 convs + 1x1 over the concatenated inputs (receptive field 5 px)."""

    def __init__(self, in_channels: list[int], num_classes: int) -> None:
        super().__init__()
        c = sum(in_channels)
        self.body = nn.Sequential(nn.Conv2d(c, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, num_classes, 1))

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat(xs, dim=1))


class TinyPatchNet(nn.Module):
    """One linear layer per modality over the flattened patch; logits summed."""

    def __init__(self, in_channels: list[int], patch_sizes: list[int], num_classes: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(c * p * p, num_classes) for c, p in zip(in_channels, patch_sizes))

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return sum(h(x.flatten(1)) for h, x in zip(self.heads, xs))


register(ModelSpec("tiny_dense_test", TinyFCN, "dense",
                   (ModalitySpec("optical", 3), ModalitySpec("sar", 4)),
                   lambda bands: {"in_channels": list(bands)}))
register(ModelSpec("tiny_patch_test", TinyPatchNet, "patch",
                   (ModalitySpec("ms", 4, 1, 5, 2), ModalitySpec("pan", 1, 4, 16, 6)),
                   lambda bands: {"in_channels": list(bands)}))

CLASSES3 = [ClassInfo(v, n, default_color(i)) for i, (v, n) in enumerate([(1, "water"), (2, "trees"), (5, "built")])]


def make_dense_model(path: Path, classes: list[ClassInfo] = CLASSES3, tile: int = 64, overlap: int = 16,
                     bands: tuple[int, int] = (3, 4), seed: int = 0) -> Path:
    """Save a TinyFCN for (optical 3 bands, SAR 4 bands) with realistic normalisation stats."""
    torch.manual_seed(seed)
    net = TinyFCN(list(bands), len(classes))
    mods = [ModalityCard("optical", bands[0], mean=[90.0] * bands[0], std=[40.0] * bands[0]),
            ModalityCard("sar", bands[1], mean=[-12.0] * bands[1], std=[5.0] * bands[1])]
    card = ModelCard("tiny_dense_test", {"in_channels": list(bands), "num_classes": len(classes)}, "dense", mods,
                     list(classes), tile_size=tile, overlap=overlap)
    return save_model_file(path, card, net.state_dict())


def make_patch_model(path: Path, seed: int = 0) -> Path:
    """Save a TinyPatchNet for MS (4 bands, 5 x 5, anchor 2) + PAN (1 band, ratio 4, 16 x 16, anchor 6)."""
    torch.manual_seed(seed)
    net = TinyPatchNet([4, 1], [5, 16], 3)
    mods = [ModalityCard("ms", 4, 1, 5, 2, mean=[300.0] * 4, std=[150.0] * 4),
            ModalityCard("pan", 1, 4, 16, 6, mean=[300.0], std=[150.0])]
    card = ModelCard("tiny_patch_test", {"in_channels": [4, 1], "patch_sizes": [5, 16], "num_classes": 3}, "patch",
                     mods, list(CLASSES3), tile_size=32)
    return save_model_file(path, card, net.state_dict())


def exact_pan(src: Path, ms: Path, dst: Path) -> Path:
    """A copy of ``src`` PAN whose geotransform is exactly the MS one / 4 (read directly, no warp)."""
    m = gdal.Open(str(ms))
    gt = list(m.GetGeoTransform())
    gt[1] /= 4
    gt[5] /= 4
    out = gdal.Translate(str(dst), str(src))
    out.SetGeoTransform(gt)
    out = None
    return dst


# --- geometry -----------------------------------------------------------------------------
def test_tile_starts_cover_and_end_at_border() -> None:
    assert tile_starts(200, 64, 16) == [0, 48, 96, 136]
    assert tile_starts(50, 64, 16) == [0]
    s = tile_starts(1000, 256, 32)
    assert s[0] == 0 and s[-1] + 256 == 1000 and all(b - a <= 224 for a, b in zip(s, s[1:]))


def test_ramps_sum_to_one_in_overlaps() -> None:
    size, tile, ov = 48 * 3 + 16, 64, 16  # regular stride, no moved-back last tile
    starts = tile_starts(size, tile, ov)
    total = np.zeros(size)
    for i, s in enumerate(starts):
        total[s:s + tile] += ramp_weights(tile, ov, i > 0, i < len(starts) - 1)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_patch_halo_covers_patches() -> None:
    mods = [ModalityCard("ms", 4, 1, 5, 2), ModalityCard("pan", 1, 4, 16, 6)]
    assert patch_halo(mods) == 2  # MS: 2 before, 2 after; PAN: ceil(6/4)=2 before, ceil(10/4)-1=2 after
    assert patch_halo([ModalityCard("m", 1, 1, 11, 5)]) == 5


def test_row_accumulator_blends_and_flushes_in_order() -> None:
    acc = RowAccumulator(2, 6, 5)
    p = np.stack([np.ones((3, 6)), np.zeros((3, 6))]).astype(np.float32)
    acc.add(0, 0, p, np.full((3, 6), 1.0, np.float32), np.ones((3, 6), bool))
    acc.add(2, 0, 1 - p, np.full((3, 6), 3.0, np.float32), np.ones((3, 6), bool))
    got: list[tuple[int, np.ndarray, np.ndarray]] = []

    def sink(r: int, probs: np.ndarray, valid: np.ndarray) -> None:
        got.append((r, probs.copy(), valid.copy()))

    assert acc.flush(2, sink) == 12
    r0, probs, valid = got[0]
    assert r0 == 0 and probs.shape == (2, 2, 6) and valid.all()
    np.testing.assert_allclose(probs[0], 1.0)
    assert acc.flush(5, sink) == 18
    r0, probs, _ = got[1]
    assert r0 == 2 and probs.shape == (2, 3, 6)
    np.testing.assert_allclose(probs[0, 0], 0.25)  # (1*1 + 0*3) / 4 on the shared row
    np.testing.assert_allclose(probs[1, 1:], 1.0)


def test_runner_halves_batch_on_out_of_memory() -> None:
    class Picky(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[0] > 2:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return x.mean(dim=(2, 3))

    progress = CallbackProgress()
    run = Runner(Picky(), torch.device("cpu"), batch=8, progress=progress)
    x = np.random.default_rng(0).normal(size=(7, 3, 4, 4)).astype(np.float32)
    out = run([x])
    assert run.batch == 2 and out.shape == (7, 3)
    np.testing.assert_allclose(out, torch.softmax(torch.from_numpy(x).mean(dim=(2, 3)), 1).numpy(), rtol=1e-5)
    assert any("out of memory" in m for m in progress.messages)


# --- tiled == one forward pass ---------------------------------------------------------------
def test_tiled_equals_one_forward_pass(tmp_path: Path, spacenet6: Path) -> None:
    model = make_dense_model(tmp_path / "fcn.mmlc")
    rgb, sar = str(spacenet6 / "rgb_unmasked.tif"), str(spacenet6 / "sar_masked.tif")
    res = classify(model, [rgb, sar], str(tmp_path / "tiled.tif"), confidence=str(tmp_path / "conf.tif"),
                   tile_size=64, overlap=16, device="cpu")
    assert res.tiles == 16
    # reference: the whole 200 x 200 raster in one forward pass
    from mmlc.core.modelfile import build_from_file

    card, net = build_from_file(model)
    with AlignedReader([rgb, sar]) as r:
        arrays, valid = r.read(0, 0, 200, 200)
    xs = [torch.from_numpy(np.nan_to_num(normalize_apply(a, m), nan=0.0))[None] for a, m in zip(arrays, card.modalities)]
    with torch.inference_mode():
        probs = torch.softmax(net(*xs), 1)[0].numpy()
    ref_cls = np.array([c.value for c in card.classes])[probs.argmax(0)]
    out = gdal.Open(res.output).ReadAsArray()
    conf = gdal.Open(res.confidence).ReadAsArray()
    assert (out[~valid] == 0).all() and (out[valid] > 0).all()
    agree = (out[valid] == ref_cls[valid]).mean()
    assert agree > 0.995, agree
    assert np.abs(conf[valid] - probs.max(0)[valid]).max() < 0.02
    assert np.unique(out[valid]).size >= 2  # the net is not trivially constant


# --- patch mode == a direct per-pixel computation --------------------------------------------
def test_patch_mode_equals_direct_per_pixel(tmp_path: Path, spacenet6: Path) -> None:
    model = make_patch_model(tmp_path / "patch.mmlc")
    ms = spacenet6 / "ms1_2m_uint16.tif"
    pan = exact_pan(spacenet6 / "pan1.tif", ms, tmp_path / "pan_exact.tif")
    res = classify(model, [str(ms), str(pan)], str(tmp_path / "out.tif"), confidence=str(tmp_path / "c.tif"),
                   tile_size=32, batch_size=1, device="cpu")
    out = gdal.Open(res.output).ReadAsArray()
    conf = gdal.Open(res.confidence).ReadAsArray()
    from mmlc.core.modelfile import build_from_file

    card, net = build_from_file(model)
    ms_raw = gdal.Open(str(ms)).ReadAsArray().astype(np.float32)
    pan_raw = gdal.Open(str(pan)).ReadAsArray().astype(np.float32)[None]
    msn = np.pad(normalize_apply(ms_raw, card.modalities[0]), ((0, 0), (8, 8), (8, 8)), mode="reflect")
    pann = np.pad(normalize_apply(pan_raw, card.modalities[1]), ((0, 0), (32, 32), (32, 32)), mode="reflect")
    values = np.array([c.value for c in card.classes])
    for r, c in [(0, 0), (0, 149), (149, 0), (149, 149), (1, 77), (75, 31), (148, 2), (31, 32), (32, 31)]:
        a = msn[:, 8 + r - 2:8 + r + 3, 8 + c - 2:8 + c + 3]
        b = pann[:, 32 + 4 * r - 6:32 + 4 * r + 10, 32 + 4 * c - 6:32 + 4 * c + 10]
        with torch.inference_mode():
            p = torch.softmax(net(torch.from_numpy(a)[None], torch.from_numpy(b)[None]), 1)[0].numpy()
        assert out[r, c] == values[p.argmax()], (r, c)
        assert conf[r, c] == pytest.approx(float(p.max()), abs=1e-5), (r, c)


# --- cancellation -------------------------------------------------------------------------
def test_cancel_leaves_no_file(tmp_path: Path, spacenet6: Path) -> None:
    model = make_dense_model(tmp_path / "fcn.mmlc")
    target = tmp_path / "out" / "classes.tif"
    target.parent.mkdir()
    with pytest.raises(Cancelled):
        classify(model, [str(spacenet6 / "rgb_unmasked.tif"), str(spacenet6 / "sar_masked.tif")], str(target),
                 confidence=str(target.with_name("conf.tif")), vector=str(target.with_name("poly.gpkg")),
                 tile_size=64, overlap=16, batch_size=2, device="cpu", progress=CallbackProgress(cancel_after=2))
    assert list(target.parent.iterdir()) == []


def test_row_accumulator_flushes_in_bounded_chunks_without_weight_plane() -> None:
    """Normalisation by the class sum == by the total weight; chunks of at most FLUSH_ROWS rows."""
    from mmlc.core.inference import FLUSH_ROWS

    h, w = 2 * FLUSH_ROWS + 5, 7
    rng = np.random.default_rng(0)
    acc = RowAccumulator(3, w, h)
    assert not hasattr(acc, "weights")
    p1 = rng.dirichlet([1, 1, 1], size=(h, w)).transpose(2, 0, 1).astype(np.float32)
    p2 = rng.dirichlet([1, 1, 1], size=(h, w)).transpose(2, 0, 1).astype(np.float32)
    w1 = rng.uniform(0.1, 2.0, (h, w)).astype(np.float32)
    w2 = rng.uniform(0.1, 2.0, (h, w)).astype(np.float32)
    valid = rng.random((h, w)) > 0.2
    acc.add(0, 0, p1, w1, valid)
    acc.add(0, 0, p2, w2, valid)
    chunks: list[tuple[int, np.ndarray]] = []
    assert acc.flush(h, lambda r, pr, v: chunks.append((r, pr.copy()))) == int(valid.sum())
    assert [r for r, _ in chunks] == list(range(0, h, FLUSH_ROWS))
    assert all(pr.shape[1] <= FLUSH_ROWS for _, pr in chunks)
    got = np.concatenate([pr for _, pr in chunks], axis=1)
    np.testing.assert_allclose(got, (p1 * w1 + p2 * w2) / (w1 + w2), rtol=1e-5, atol=1e-6)
