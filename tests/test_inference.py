"""Tiled inference: tile geometry, blending, patch cutting, OOM back-off, tiled == one pass.

Also home of the tiny test-only networks (a dense FCN and a patch net) that the other engine
tests import: real networks are written elsewhere and must not be needed here.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from mmlc.core.classes import ClassInfo, default_color
from mmlc.core.engine.classify import classify
from mmlc.core.engine.forward import Runner
from mmlc.core.engine.io import AlignedReader
from mmlc.core.engine.normalize import apply as normalize_apply
from mmlc.core.engine.tiling import Axis, TileBlender, patch_halo, tile_starts
from mmlc.core.errors import Cancelled
from mmlc.core.modelfiles.modelfile import ModalityCard, ModelCard, save_model_file
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
def test_tile_starts_even_cover_and_end_at_border() -> None:
    assert tile_starts(200, 64, 16) == [0, 45, 91, 136]
    assert tile_starts(50, 64, 16) == [0]
    for size, tile, ov in [(1000, 256, 32), (8192, 256, 32), (257, 256, 32), (2048, 256, 32), (481, 256, 32)]:
        s = tile_starts(size, tile, ov)
        gaps = [b - a for a, b in zip(s, s[1:])]
        assert s[0] == 0 and s[-1] + tile == size and all(0 < g <= tile - ov for g in gaps)
        assert len(s) == -(-(size - ov) // (tile - ov))  # as few tiles as the overlap allows
        assert max(gaps) - min(gaps) <= 1  # evenly spread


@pytest.mark.parametrize("size,tile,ov", [(1000, 256, 32), (200, 64, 16), (300, 256, 32)])
def test_ramps_sum_to_one_where_tiles_meet(size: int, tile: int, ov: int) -> None:
    axis = Axis.of(size, tile_starts(size, tile, ov), tile)
    total = np.zeros(size)
    for i, s in enumerate(axis.starts):
        total[s:s + axis.sizes[i]] += axis.ramp(i)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def _blend_reference(K: int, H: int, W: int, rows: Axis, cols: Axis, tiles: dict) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: full-grid weighted sums / total weight."""
    sums, wsum = np.zeros((K, H, W)), np.zeros((H, W))
    valid = np.zeros((H, W), bool)
    for (i, j), (p, v) in tiles.items():
        r, c, h, w = rows.starts[i], cols.starts[j], rows.sizes[i], cols.sizes[j]
        valid[r:r + h, c:c + w] |= v[:h, :w]
        if p is not None:
            wt = np.outer(rows.ramp(i), cols.ramp(j))
            sums[:, r:r + h, c:c + w] += p[:, :h, :w] * wt
            wsum[r:r + h, c:c + w] += wt
    return sums / np.maximum(wsum, 1e-12), valid & (wsum > 0)


@pytest.mark.parametrize("H,W,tile,ov", [(300, 220, 64, 16), (481, 130, 256, 32), (40, 50, 64, 16)])
def test_tile_blender_equals_brute_force_and_emits_each_pixel_once(H: int, W: int, tile: int, ov: int) -> None:
    """Blended output == weighted mean over all tiles (incl. three tiles meeting, a tile without
    valid pixels and a grid smaller than a tile); every pixel emitted exactly once."""
    rng = np.random.default_rng(3)
    K = 3
    rows, cols = Axis.of(H, tile_starts(H, tile, ov), tile), Axis.of(W, tile_starts(W, tile, ov), tile)
    tiles = {}
    for i in range(len(rows.starts)):
        for j in range(len(cols.starts)):
            p = rng.dirichlet([1] * K, size=(tile, tile)).transpose(2, 0, 1).astype(np.float32)
            v = rng.random((tile, tile)) > 0.1
            tiles[(i, j)] = (p, v)
    if len(tiles) > 2:
        tiles[list(tiles)[1]] = (None, np.zeros((tile, tile), bool))
    got = np.full((K, H, W), np.nan, np.float32)
    got_valid = np.zeros((H, W), bool)
    seen = np.zeros((H, W), int)
    max_state = 0

    def sink(r: int, c: int, p: np.ndarray, v: np.ndarray) -> None:
        h, w = v.shape
        got[:, r:r + h, c:c + w] = p
        got_valid[r:r + h, c:c + w] = v
        seen[r:r + h, c:c + w] += 1

    blender = TileBlender(K, rows, cols, sink)
    for (i, j), (p, v) in tiles.items():
        blender.add(i, j, None if p is None else p.copy(), v)
        if blender.below is not None:
            max_state = max(max_state, blender.below[0].shape[1])
    assert (seen == 1).all()
    ref, ref_valid = _blend_reference(K, H, W, rows, cols, tiles)
    np.testing.assert_array_equal(got_valid, ref_valid)
    np.testing.assert_allclose(got[:, ref_valid], ref[:, ref_valid], rtol=1e-5, atol=1e-6)
    assert blender.valid_pixels == int(ref_valid.sum())
    # between tile rows only the shared strip is kept, never a tile's height
    shared = [rows.starts[i] + rows.sizes[i] - rows.starts[i + 1] for i in range(len(rows.starts) - 1)]
    assert max_state == max(shared, default=0)


def test_patch_halo_covers_patches() -> None:
    mods = [ModalityCard("ms", 4, 1, 5, 2), ModalityCard("pan", 1, 4, 16, 6)]
    assert patch_halo(mods) == 2  # MS: 2 before, 2 after; PAN: ceil(6/4)=2 before, ceil(10/4)-1=2 after
    assert patch_halo([ModalityCard("m", 1, 1, 11, 5)]) == 5


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
    from mmlc.core.modelfiles.modelfile import build_from_file

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
    from mmlc.core.modelfiles.modelfile import build_from_file

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


@pytest.mark.parametrize("to_db", [False, True])
def test_normalisation_on_the_model_side_equals_training_normalisation(spacenet6: Path, to_db: bool) -> None:
    """The engine reads windows in the files' own types and normalises with torch on the model's
    device: the result equals the numpy normalisation training uses, with nodata -> 0."""
    from mmlc.core.engine.io import AlignedReader
    from mmlc.core.engine.normalize import apply_torch, model_input

    card = ModalityCard("sar", 4, mean=[0.5, 0.4, 0.3, 0.2] if to_db else [-12.0] * 4, std=[2.0, 3.0, 4.0, 5.0],
                        to_db=to_db)
    path = str(spacenet6 / "sar_masked.tif")
    with AlignedReader([path], row_cache=True) as r:
        masks: list = []
        (native,), valid = r.read(40, 10, 120, 90, halo=3, native=True, masks=masks)
        (flt,), _ = r.read(40, 10, 120, 90, halo=3)
    assert masks[0] is not None and masks[0].any() and not masks[0].all()  # the sample's NaN rows
    ref = np.nan_to_num(normalize_apply(flt, card), nan=0.0, posinf=0.0, neginf=0.0)
    got = apply_torch(torch.from_numpy(native.copy()), card, torch.from_numpy(masks[0])).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
    assert (got[:, masks[0]] == 0).all()
    twin = model_input(native, card, masks[0])  # the reader thread's numpy twin (models on a CPU)
    np.testing.assert_allclose(twin, ref, rtol=1e-6, atol=1e-6)
    assert (twin[:, masks[0]] == 0).all()


@pytest.mark.parametrize("keep", ["0", "1"])
def test_heap_threshold_pinned_once_unless_switched_off(keep: str) -> None:
    """classify() pins glibc's mmap threshold (bounded peak memory on large rasters, see
    core/engine/heap.py); MMLC_KEEP_MALLOC_SETTINGS=1 leaves glibc alone."""
    import subprocess
    import sys

    code = ("from mmlc.core.engine.heap import pin_mmap_threshold as p; a = p(); b = p(); "
            "print(a, b)")
    import mmlc

    env = dict(os.environ, MMLC_KEEP_MALLOC_SETTINGS=keep, PYTHONPATH=str(Path(mmlc.__file__).parent.parent))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == (["True", "True"] if keep == "0" else ["False", "False"])


def _model_and_inputs(kind: str, tmp_path: Path, spacenet6: Path) -> tuple[Path, list[str]]:
    """A tiny dense (RGB + SAR) or patch (MS + exact 4x PAN) model and its SpaceNet 6 inputs."""
    if kind == "dense":
        return make_dense_model(tmp_path / "m.mmlc"), [str(spacenet6 / "rgb_unmasked.tif"),
                                                        str(spacenet6 / "sar_masked.tif")]
    ms = spacenet6 / "ms1_2m_uint16.tif"
    return make_patch_model(tmp_path / "m.mmlc"), [str(ms), str(exact_pan(spacenet6 / "pan1.tif", ms,
                                                                              tmp_path / "pan.tif"))]


@pytest.mark.parametrize("kind", ["dense", "patch"])
def test_serial_mode_equals_threaded_mode(tmp_path: Path, spacenet6: Path, kind: str) -> None:
    """background_writer=False (read, model, blend and write on one thread) gives the same map."""
    model, ins = _model_and_inputs(kind, tmp_path, spacenet6)
    a = classify(model, ins, str(tmp_path / "a.tif"), device="cpu")
    b = classify(model, ins, str(tmp_path / "b.tif"), device="cpu", background_writer=False)
    np.testing.assert_array_equal(gdal.Open(a.output).ReadAsArray(), gdal.Open(b.output).ReadAsArray())
    assert a.valid_pixels == b.valid_pixels > 0 and b.read_cpu_seconds > 0


@pytest.mark.parametrize("kind", ["dense", "patch"])
def test_reader_side_normalisation_equals_model_side(tmp_path: Path, spacenet6: Path, kind: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU the reader normalises (numpy); on a GPU the model's side does (torch): same map."""
    import mmlc.core.engine.prefetch as prefetch

    model, ins = _model_and_inputs(kind, tmp_path, spacenet6)
    a = classify(model, ins, str(tmp_path / "a.tif"), confidence=str(tmp_path / "ac.tif"), device="cpu")
    monkeypatch.setattr(prefetch, "NORMALISE_IN_READER_ON_CPU", False)
    b = classify(model, ins, str(tmp_path / "b.tif"), confidence=str(tmp_path / "bc.tif"), device="cpu")
    np.testing.assert_array_equal(gdal.Open(a.output).ReadAsArray(), gdal.Open(b.output).ReadAsArray())
    np.testing.assert_allclose(gdal.Open(a.confidence).ReadAsArray(), gdal.Open(b.confidence).ReadAsArray(),
                               atol=1e-5)


@pytest.mark.parametrize("kind", ["dense", "patch"])
def test_model_workers_give_the_same_map(tmp_path: Path, spacenet6: Path, kind: str) -> None:
    """Batches run by 3 model workers at once (1 intra-op thread each) give the map of 1 worker,
    tiles reach the writer in order, and torch's thread count is the caller's again."""
    import torch

    model, ins = _model_and_inputs(kind, tmp_path, spacenet6)
    threads = torch.get_num_threads()
    a = classify(model, ins, str(tmp_path / "a.tif"), confidence=str(tmp_path / "ac.tif"), device="cpu",
                 tile_size=64 if kind == "dense" else 32, batch_size=1, workers=1)
    b = classify(model, ins, str(tmp_path / "b.tif"), confidence=str(tmp_path / "bc.tif"), device="cpu",
                 tile_size=64 if kind == "dense" else 32, batch_size=1, workers=3)
    assert (a.model_workers, b.model_workers) == (1, 3) and b.tiles >= 9
    assert torch.get_num_threads() == threads
    np.testing.assert_array_equal(gdal.Open(a.output).ReadAsArray(), gdal.Open(b.output).ReadAsArray())
    np.testing.assert_allclose(gdal.Open(a.confidence).ReadAsArray(), gdal.Open(b.confidence).ReadAsArray(),
                               atol=1e-5)


def test_model_workers_keep_order_pass_errors_and_restore_threads() -> None:
    import time

    import torch
    from mmlc.core.engine.pipeline import ModelWorkers, cpu_workers

    assert cpu_workers(torch.device("cuda"), 8) == 1
    assert cpu_workers(torch.device("cpu"), 2) == 2 and cpu_workers(torch.device("cpu"), 16) == 4
    threads = torch.get_num_threads()
    seen_threads = []

    def slow_first(i: int) -> int:
        seen_threads.append(torch.get_num_threads())
        time.sleep(0.05 if i % 3 == 0 else 0.0)  # later steps finish first
        return i

    pool = ModelWorkers(3, 1)
    got = []
    for i in range(10):
        got += pool.submit(slow_first, i)
    got += pool.drain()
    pool.close()
    assert got == list(range(10)) and set(seen_threads) == {1}
    assert torch.get_num_threads() == threads

    def boom(i: int) -> int:
        if i == 4:
            raise ValueError("step 4 failed")
        return i

    pool = ModelWorkers(2, 1)
    with pytest.raises(ValueError, match="step 4"):
        for i in range(10):
            pool.submit(boom, i)
        pool.drain()
    pool.close()
    pool.close()  # twice is fine
    assert torch.get_num_threads() == threads
    inline = ModelWorkers(1, 99)
    assert inline.submit(lambda i: i + 1, 1) == [2] and inline.drain() == []
    inline.close()
    assert torch.get_num_threads() == threads


def test_trimmer_trims_only_after_growth(monkeypatch: pytest.MonkeyPatch) -> None:
    """heap.Trimmer calls malloc_trim once the resident size grew by its slack since the last
    trim, never in a steady run."""
    from mmlc.core.engine import heap

    calls = []

    class FakeLibc:
        def malloc_trim(self, pad: int) -> int:
            calls.append(pad)
            return 1

    rss = iter([100, 110, 120, 99, 135, 140, 90, 100, 130, 60])  # MB, one per reading
    monkeypatch.setattr(heap, "_glibc", lambda: FakeLibc())
    monkeypatch.setattr(heap, "_rss_bytes", lambda: next(rss) << 20)
    t = heap.Trimmer(slack=32 << 20)
    assert [t() for _ in range(4)] == [False] * 4 and not calls  # 100 (floor), 110, 120, 99 (lower floor)
    assert t() and calls == [0] and t.floor == 140 << 20  # 135 >= 99 + 32: trimmed; floor = RSS after (140)
    assert not t() and t.floor == 90 << 20  # 90: lower floor
    assert not t() and len(calls) == 1  # 100 < 90 + 32
    assert t() and len(calls) == 2 and t.floor == 60 << 20 and t.trims == 2  # 130: trimmed, then 60
