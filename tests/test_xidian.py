"""Xi'an/Nanjing layout reader and the vectorised MS/PAN patch cutter, on the shipped sample."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mmlc.core.data.xidian import PatchCutter, cut_patches, labelled_pixels, minmax_normalise, read_xidian
from mmlc.core.engine.io import reflect101
from mmlc.core.errors import GridError, InputError
from osgeo import gdal


@pytest.fixture(scope="module")
def tile(spacenet6: Path):
    return read_xidian(spacenet6 / "xidian_layout_tile1")


def _reflect_patch(img: np.ndarray, r0: int, c0: int, size: int) -> np.ndarray:
    """Independent reference: the patch starting at (r0, c0) read pixel by pixel with reflect-101."""
    ri = reflect101(np.arange(r0, r0 + size), img.shape[1])
    ci = reflect101(np.arange(c0, c0 + size), img.shape[2])
    return img[:, ri][:, :, ci]


def test_reader_arrays_labels_and_georeferencing(tile, spacenet6):
    assert tile.ms.shape == (4, 150, 150) and tile.pan.shape == (1, 600, 600)
    assert tile.ms.dtype == np.uint16 and tile.ratio == 4
    assert set(tile.labels) == {"train", "test"}
    info = json.loads((spacenet6 / "xidian_layout_tile1" / "labels_info.json").read_text())
    for split in ("train", "test"):
        px = tile.labelled(split)
        counts = np.bincount(px.classes, minlength=3)
        assert counts.tolist() == [info[f"counts_{split}"][k] for k in ("1", "2", "3")]
        assert np.all(tile.labels[split][px.rows, px.cols] == px.classes + 1)
    assert tile.geotransform is not None and tile.geotransform[1] == pytest.approx(2.0001, abs=1e-3)
    assert "UTM" in tile.projection or "PROJCS" in tile.projection
    with pytest.raises(InputError, match="label"):
        tile.labelled("label")


def test_patch_centres_equal_source_pixels(tile):
    px = tile.labelled("train")
    ms, pan = PatchCutter(tile.ms, tile.pan).cut(px.rows, px.cols)
    assert ms.shape == (240, 4, 16, 16) and pan.shape == (240, 1, 64, 64) and ms.dtype == np.uint16
    assert np.array_equal(ms[:, :, 7, 7], tile.ms[:, px.rows, px.cols].T)
    for i in (0, 17, 239):
        r, c = px.rows[i], px.cols[i]
        assert np.array_equal(pan[i, :, 28:32, 28:32], tile.pan[:, 4 * r:4 * r + 4, 4 * c:4 * c + 4])
        assert np.array_equal(ms[i], _reflect_patch(tile.ms, r - 7, c - 7, 16))
        assert np.array_equal(pan[i], _reflect_patch(tile.pan, 4 * r - 28, 4 * c - 28, 64))


def test_border_patches_reflect101(tile):
    rows = np.array([0, 0, 149, 149, 3, 75])
    cols = np.array([0, 149, 0, 149, 148, 1])
    ms, pan = cut_patches(tile.ms, tile.pan, rows, cols)
    for i, (r, c) in enumerate(zip(rows, cols)):
        assert np.array_equal(ms[i], _reflect_patch(tile.ms, r - 7, c - 7, 16))
        assert np.array_equal(pan[i], _reflect_patch(tile.pan, 4 * r - 28, 4 * c - 28, 64))
    # reflect-101 does not repeat the edge: above row 0 comes row 1, then row 2...
    assert np.array_equal(ms[0, :, 6, 7], tile.ms[:, 1, 0]) and np.array_equal(ms[0, :, 0, 0], tile.ms[:, 7, 7])
    assert np.array_equal(pan[0, :, 27, 28], tile.pan[:, 1, 0])
    assert not np.array_equal(tile.ms[:, 1, 0], tile.ms[:, 0, 0])  # the check above can tell the modes apart


def test_cutter_float_input_and_coordinate_errors(tile):
    msn, pann = minmax_normalise(tile.ms), minmax_normalise(tile.pan)
    assert msn.dtype == np.float32 and msn.min() == 0.0 and msn.max() == pytest.approx(1.0)
    cutter = PatchCutter(msn, pann)
    ms, pan = cutter.cut(np.array([10]), np.array([20]))
    assert ms.dtype == np.float32 and ms[0, 2, 7, 7] == msn[2, 10, 20]
    with pytest.raises(InputError, match="150x150"):
        cutter.cut(np.array([150]), np.array([0]))
    with pytest.raises(InputError, match="differ"):
        cutter.cut(np.array([1, 2]), np.array([0]))
    with pytest.raises(GridError, match="4x"):
        PatchCutter(tile.ms, tile.pan[:, :-1])


def _write_tif(path: Path, arr: np.ndarray) -> None:
    ds = gdal.GetDriverByName("GTiff").Create(str(path), arr.shape[2], arr.shape[1], arr.shape[0], gdal.GDT_UInt16)
    for b in range(arr.shape[0]):
        ds.GetRasterBand(b + 1).WriteArray(arr[b])
    ds = None


def test_reader_errors(tmp_path):
    with pytest.raises(InputError, match="ms4.tif"):
        read_xidian(tmp_path)
    _write_tif(tmp_path / "ms4.tif", np.ones((4, 8, 8), np.uint16))
    _write_tif(tmp_path / "pan.tif", np.ones((1, 30, 32), np.uint16))
    with pytest.raises(GridError, match="exactly 4x"):
        read_xidian(tmp_path)
    _write_tif(tmp_path / "pan.tif", np.ones((1, 32, 32), np.uint16))
    with pytest.raises(InputError, match="no label grid"):
        read_xidian(tmp_path)
    np.save(tmp_path / "train.npy", np.zeros((8, 9), np.uint8))
    with pytest.raises(InputError, match="must match"):
        read_xidian(tmp_path)
    lab = np.zeros((8, 8), np.uint8)
    lab[2, 5], lab[7, 0] = 3, 1
    np.save(tmp_path / "train.npy", lab)
    scene = read_xidian(tmp_path)
    px = scene.labelled("train")
    assert px.rows.tolist() == [2, 7] and px.cols.tolist() == [5, 0] and px.classes.tolist() == [2, 0]
    assert scene.geotransform is None or scene.geotransform[1] == 1.0
    (tmp_path / "ms4.tif").write_bytes(b"not a tiff")
    with pytest.raises(InputError):
        read_xidian(tmp_path)
    with pytest.raises(InputError, match="2-D"):
        labelled_pixels(np.zeros((2, 2, 2), np.uint8))
