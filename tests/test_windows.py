"""Streamed training windows (core.data.windows) against the in-memory path on the same real scenes."""
from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pytest
from mmlc.core.assessment.validation import DenseValidation
from mmlc.core.data.datasets import Scene, load_scene
from mmlc.core.data.prepare import prepare_data, resolve_classes
from mmlc.core.data.samplers import DenseTileSampler, PatchSampler
from mmlc.core.data.streamed_prepare import prepare_streamed, sample_windows
from mmlc.core.data.streamed_samplers import StreamedDenseValidation, StreamedPatchSampler, StreamedTileSampler
from mmlc.core.data.windows import WindowDataset, open_scenes
from mmlc.core.errors import InputError


def ben_scene(folder: Path, i: int = 0) -> Scene:
    p = sorted(glob.glob(str(folder / "*__s2_10band_10m.tif")))[i]
    return Scene([p, p.replace("s2_10band_10m", "s1_vv_vh_db")], p.replace("s2_10band_10m", "weak_label_s2rules"))


def both(scenes, names, ratios, *, tile, seed, guard=0, fraction=0.25):
    datas = [load_scene(s, ratios) for s in scenes]
    classes = resolve_classes(datas, None)
    mem = prepare_data(datas, names, ratios, classes=classes, validation_fraction=fraction, seed=seed, tile=tile,
                       guard=guard)
    streamed = prepare_streamed(open_scenes(scenes, ratios), names, ratios, table=None, validation_fraction=fraction,
                                seed=seed, tile=tile, guard=guard, given_cards=mem.modality_cards)
    return mem, streamed


def test_dense_windows_and_targets_match_in_memory(bigearthnet):
    scenes = [ben_scene(bigearthnet, 0), ben_scene(bigearthnet, 1)]
    mem, st = both(scenes, ["optical", "sar"], [1, 1], tile=32, seed=5)
    assert [c.value for c in st.classes] == [c.value for c in mem.classes]
    assert (st.n_train, st.n_val) == (mem.n_train, mem.n_val) and st.n_val > 0
    for s_mem, s_st in zip(mem.scenes, st.scenes):  # same split, row by row
        np.testing.assert_array_equal(s_mem.train.sum(1), s_st.train_rows)
        np.testing.assert_array_equal(s_mem.val.sum(1), s_st.val_rows)
    a = DenseTileSampler(mem.scenes, 32, 24, seed=7, scale_range=(0.5, 2.0))
    b = StreamedTileSampler(st.scenes, 32, 24, seed=7, scale_range=(0.5, 2.0))
    for epoch in (0, 1):
        for i in range(24):
            (xa, ya), (xb, yb) = a.item(epoch, i), b.item(epoch, i)
            np.testing.assert_array_equal(ya, yb)
            for m, n in zip(xa, xb):
                np.testing.assert_allclose(m, n, rtol=0, atol=1e-5)
    va, vb = DenseValidation(mem.scenes, 32), StreamedDenseValidation(st.scenes, 32)
    assert sorted(va.windows) == sorted(vb.windows) and len(vb) > 0
    for w in vb.windows:  # the scored pixels are the validation pixels
        si, r, c, rows, cols = w
        _, target, val, (dr, dc, _, _) = vb.item(w)
        s = mem.scenes[si]
        np.testing.assert_array_equal(val[dr:dr + rows, dc:dc + cols], s.val[r:r + rows, c:c + cols])
        np.testing.assert_array_equal(target[dr:dr + rows, dc:dc + cols][val[dr:dr + rows, dc:dc + cols]],
                                      s.target[r:r + rows, c:c + cols][s.val[r:r + rows, c:c + cols]])


def test_patch_items_match_in_memory_with_guard(nc_landsat, tmp_path):
    from osgeo import gdal

    full = str(tmp_path / "stack.vrt")
    gdal.BuildVRT(full, [str(nc_landsat / f"lsat7_2000_{b}.tif") for b in (10, 20, 30)], separate=True).FlushCache()
    stack = str(tmp_path / "valid_part.tif")  # a part without nodata: both paths then keep the same labels
    gdal.Translate(stack, full, srcWin=[50, 50, 400, 350]).FlushCache()
    scene = Scene([stack], str(nc_landsat / "landsat96_points.shp"), label_field="id")
    mem, st = both([scene], ["ms"], [1], tile=64, seed=2, guard=3)
    assert (st.n_train, st.n_val) == (mem.n_train, mem.n_val)
    a = PatchSampler(mem.scenes, [5], [2], seed=1)
    b = StreamedPatchSampler(st.scenes, [5], [2], seed=1)
    assert len(a) == len(b) == mem.n_train
    idx = np.random.default_rng(0).choice(len(a), 40, replace=False)
    for i in idx:
        (xa, ya), (xb, yb) = a.item(3, int(i)), b.item(3, int(i))
        assert int(ya) == int(yb)
        np.testing.assert_allclose(xa[0], xb[0], atol=1e-5)
    assert np.array_equal(a.index[idx][:, 1:], np.array([b.locate(int(i))[1:] for i in idx]))


def test_statistics_from_a_bounded_sample_and_band_mismatch(bigearthnet, nc_landsat):
    scenes = open_scenes([ben_scene(bigearthnet, 0)], [1, 1])
    sample = sample_windows(scenes, 32, seed=0, n=8)
    assert len(sample) == 8 and all(w[0].shape == (10, 32, 32) for w in sample)
    st = prepare_streamed(scenes, ["optical", "sar"], [1, 1], table=None, validation_fraction=0.2, seed=0, tile=32)
    whole = load_scene(ben_scene(bigearthnet, 0), [1, 1]).arrays[0]
    # the sampled mean is close to the scene's (in units of the band's std)
    z = (np.nanmean(whole, axis=(1, 2)) - np.array(st.modality_cards[0].mean)) / np.array(st.modality_cards[0].std)
    assert np.abs(z).max() < 0.5
    bad = Scene([str(nc_landsat / "lsat7_2000_10.tif"), str(nc_landsat / "lsat7_2000_20.tif")],
                str(nc_landsat / "landsat96_labelled_pixels.tif"), name="landsat row")
    with pytest.raises(InputError, match="landsat row"):
        open_scenes([ben_scene(bigearthnet, 0), bad], [1, 1])


def test_dataloader_workers_open_their_own_handles(bigearthnet):
    import torch

    scenes = [ben_scene(bigearthnet, 0)]
    st = prepare_streamed(open_scenes(scenes, [1, 1]), ["optical", "sar"], [1, 1], table=None,
                          validation_fraction=0.2, seed=0, tile=32)
    sampler = StreamedTileSampler(st.scenes, 32, 8, seed=4)
    loader = torch.utils.data.DataLoader(WindowDataset(sampler, epoch=2), batch_size=4, num_workers=2,
                                         collate_fn=lambda items: items)
    got = [it for batch in loader for it in batch]
    for i, (x, y) in enumerate(got):
        xr, yr = sampler.item(2, i)
        np.testing.assert_array_equal(y, yr)
        np.testing.assert_array_equal(x[1], xr[1])


def test_labels_under_input_nodata_are_ignored_when_streamed(nc_landsat, tmp_path):
    from mmlc.core.data.samplers import IGNORE
    from osgeo import gdal

    full = str(tmp_path / "stack.vrt")
    gdal.BuildVRT(full, [str(nc_landsat / f"lsat7_2000_{b}.tif") for b in (10, 20, 30)], separate=True).FlushCache()
    scene = Scene([full], str(nc_landsat / "landsat96_points.shp"), label_field="id")
    st = prepare_streamed(open_scenes([scene], [1]), ["ms"], [1], table=None, validation_fraction=0.0, seed=0,
                          tile=64, guard=3)
    valid = load_scene(scene, [1]).valid
    b = StreamedPatchSampler(st.scenes, [5], [2], seed=1)
    hit = 0
    for i in range(0, len(b), 7):
        _, r, c = b.locate(i)
        label = int(b.item(0, i)[1])
        assert (label == IGNORE) == (not valid[r, c])
        hit += not valid[r, c]
    assert hit > 0  # the scene's nodata border holds labelled points
