"""Grid arithmetic and aligned windowed reading on the shipped georeferenced samples."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mmlc.core.engine.grid import Grid
from mmlc.core.engine.io import AlignedReader, reflect101
from mmlc.core.errors import GridError, InputError
from osgeo import gdal, osr


def test_grid_scaled_window_cut_pixel_of(spacenet6: Path) -> None:
    g = Grid.from_path(str(spacenet6 / "ms1_2m_uint16.tif"))
    assert (g.width, g.height) == (150, 150)
    s = g.scaled(4)
    assert (s.width, s.height) == (600, 600) and s.bounds == pytest.approx(g.bounds)
    assert s.res[0] == pytest.approx(g.res[0] / 4)
    w = g.window(10, 20, 5, 6)
    assert w.xy_of(0, 0) == pytest.approx(g.xy_of(10, 20)) and (w.height, w.width) == (5, 6)
    x, y = g.xy_of(12.5, 30.5)
    assert g.pixel_of(x, y) == (12, 30)
    # cut: an extent inside pixels snaps outward to whole pixels
    x0, y1 = g.xy_of(10.3, 20.6)
    x1, y0 = g.xy_of(40.2, 50.1)  # row 40.2 -> y0, col 50.1 -> x1
    c = g.cut_to_extent(x0, y0, x1, y1)
    assert c.transform[0] == pytest.approx(g.xy_of(0, 20)[0]) and c.transform[3] == pytest.approx(g.xy_of(10, 0)[1])
    assert (c.width, c.height) == (31, 31)
    with pytest.raises(GridError, match="does not overlap"):
        g.cut_to_extent(0, 0, 10, 10)


def test_reflect101() -> None:
    assert reflect101(np.arange(-3, 8), 5).tolist() == [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]


def test_nan_sar_rows_and_hair_different_pixels(spacenet6: Path) -> None:
    rgb, sar = spacenet6 / "rgb_unmasked.tif", spacenet6 / "sar_masked.tif"
    raw = gdal.Open(str(sar)).ReadAsArray()
    with AlignedReader([str(rgb), str(sar)]) as r:
        assert r.band_counts == [3, 4] and r.grid == Grid.from_path(str(rgb))
        (a_rgb, a_sar), valid = r.read(0, 0, 200, 200)
    assert a_sar.shape == (4, 200, 200)
    np.testing.assert_array_equal(a_rgb, gdal.Open(str(rgb)).ReadAsArray().astype(np.float32))
    # NaN rows of the SAR are invalid, the rest valid
    nan_rows = np.isnan(raw).all(axis=(0, 2))
    assert 0.35 < nan_rows.mean() < 0.45
    assert not valid[nan_rows].any() and valid[~np.isnan(raw).any(axis=0)][5:].all()
    # the SAR (4.49970 m) lands on the RGB (4.49997 m) pixel centres: expected bilinear value
    rgb_gt, sar_gt = gdal.Open(str(rgb)).GetGeoTransform(), gdal.Open(str(sar)).GetGeoTransform()
    for row, col in [(120, 20), (150, 150), (198, 198), (190, 60)]:
        x, y = rgb_gt[0] + (col + 0.5) * rgb_gt[1], rgb_gt[3] + (row + 0.5) * rgb_gt[5]
        u, v = (x - sar_gt[0]) / sar_gt[1] - 0.5, (y - sar_gt[3]) / sar_gt[5] - 0.5
        i, j = int(np.floor(v)), int(np.floor(u))
        fy, fx = v - i, u - j
        exp = ((1 - fy) * (1 - fx) * raw[:, i, j] + (1 - fy) * fx * raw[:, i, j + 1]
               + fy * (1 - fx) * raw[:, i + 1, j] + fy * fx * raw[:, i + 1, j + 1])
        assert fx > 0.0005 or fy > 0.0005  # really off-grid by a hair
        np.testing.assert_allclose(a_sar[:, row, col], exp, atol=2e-3)


def test_pan_ratio4_window(spacenet6: Path) -> None:
    ms, pan = spacenet6 / "ms1_2m_uint16.tif", spacenet6 / "pan1.tif"
    with AlignedReader([str(ms), str(pan)], ratios=[1, 4]) as r:
        (a_ms, a_pan), valid = r.read(40, 50, 16, 24, halo=3)
        assert a_ms.shape == (4, 22, 30) and a_pan.shape == (1, 88, 120)
        assert valid.shape == (16, 24) and valid.all()
    raw_ms = gdal.Open(str(ms)).ReadAsArray(50 - 3, 40 - 3, 30, 22).astype(np.float32)
    np.testing.assert_array_equal(a_ms, raw_ms)
    raw_pan = gdal.Open(str(pan)).ReadAsArray(4 * 47, 4 * 37, 120, 88).astype(np.float32)
    # pan 0.499993 m vs ms/4 0.500024 m: a drift of < 0.04 pan pixel, so values are nearly the raw ones
    assert np.corrcoef(a_pan.ravel(), raw_pan.ravel())[0, 1] > 0.99


def test_reflect_and_nan_padding_at_border(spacenet6: Path) -> None:
    ms = str(spacenet6 / "ms1_2m_uint16.tif")
    raw = gdal.Open(ms).ReadAsArray().astype(np.float32)
    with AlignedReader([ms]) as r:
        (a,), valid = r.read(-3, 145, 8, 8, halo=2)
        (b,), _ = r.read(-3, 145, 8, 8, halo=2, pad="nan")
    rows, cols = reflect101(np.arange(-5, 7), 150), reflect101(np.arange(143, 155), 150)
    np.testing.assert_array_equal(a, raw[:, rows][:, :, cols])
    assert valid[:3].sum() == 0 and valid[:, 5:].sum() == 0 and valid[3:, :5].all()
    assert np.isnan(b[:, :5]).all() and np.isnan(b[:, :, 7:]).all() and not np.isnan(b[:, 5:, :7]).any()


def test_other_crs_lands_on_the_right_pixels(tmp_path: Path, spacenet6: Path) -> None:
    rgb, sar = str(spacenet6 / "rgb_unmasked.tif"), str(spacenet6 / "sar_masked.tif")
    geo = str(tmp_path / "rgb_4326.tif")
    gdal.Warp(geo, rgb, dstSRS="EPSG:4326", resampleAlg="bilinear")
    raw = gdal.Open(rgb).ReadAsArray().astype(np.float32)
    with AlignedReader([sar, geo]) as r:
        (_, back), _ = r.read(0, 0, 200, 200)
    inner = (slice(None), slice(20, 180), slice(20, 180))

    def err(dr: int, dc: int) -> float:
        return float(np.nanmean(np.abs(np.roll(back, (dr, dc), axis=(1, 2))[inner] - raw[inner])))

    e0 = err(0, 0)
    assert e0 < min(err(dr, dc) for dr, dc in [(1, 0), (-1, 0), (0, 1), (0, -1)])
    assert e0 < 12.0


def test_nodata_value_and_mask_band_become_nan(tmp_path: Path, spacenet6: Path) -> None:
    ms = str(spacenet6 / "ms1_2m_uint16.tif")
    nd = tmp_path / "nd.tif"
    ds = gdal.Translate(str(nd), ms)
    arr = ds.GetRasterBand(2).ReadAsArray()
    arr[5, 7] = 65535
    ds.GetRasterBand(2).WriteArray(arr)
    for b in range(1, 5):
        ds.GetRasterBand(b).SetNoDataValue(65535)
    ds = None
    mk = tmp_path / "mask.tif"
    ds = gdal.Translate(str(mk), ms)
    ds.CreateMaskBand(gdal.GMF_PER_DATASET)
    m = np.full((150, 150), 255, np.uint8)
    m[10:12, 20:25] = 0
    ds.GetRasterBand(1).GetMaskBand().WriteArray(m)
    ds = None
    with AlignedReader([str(nd), str(mk)]) as r:
        (a, b), valid = r.read(0, 0, 150, 150)
    assert np.isnan(a[:, 5, 7]).all() and not valid[5, 7]
    assert np.isnan(b[:, 10:12, 20:25]).all() and not valid[10:12, 20:25].any()
    assert valid.sum() == 150 * 150 - 1 - 10


def test_errors_unreadable_no_crs_no_overlap(tmp_path: Path, spacenet6: Path) -> None:
    ms = str(spacenet6 / "ms1_2m_uint16.tif")
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00 not really a tiff")
    with pytest.raises(InputError, match="cannot read raster"):
        AlignedReader([ms, str(bad)])
    nocrs = tmp_path / "nocrs.tif"
    ds = gdal.Translate(str(nocrs), ms)
    ds.SetProjection("")
    ds.SetSpatialRef(None) if hasattr(ds, "SetSpatialRef") else None
    ds = None
    assert not gdal.Open(str(nocrs)).GetProjection()
    with pytest.raises(GridError, match="no coordinate reference system"):
        AlignedReader([ms, str(nocrs)])
    far = tmp_path / "far.tif"
    ds = gdal.Translate(str(far), ms)
    gt = list(ds.GetGeoTransform())
    gt[0] += 50_000
    ds.SetGeoTransform(gt)
    ds = None
    with pytest.raises(GridError, match="does not overlap"):
        AlignedReader([ms, str(far)])
    # same place, other CRS, still overlaps (no false alarm)
    geo = str(tmp_path / "geo.tif")
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    gdal.Warp(geo, ms, dstSRS=srs.ExportToWkt())
    with AlignedReader([ms, geo]) as r:
        assert r.band_counts == [4, 4]


def test_mask_band_honoured_through_the_warp(tmp_path: Path, spacenet6: Path) -> None:
    ms = str(spacenet6 / "ms1_2m_uint16.tif")
    geo = tmp_path / "geo_masked.tif"
    ds = gdal.Warp(str(geo), ms, dstSRS="EPSG:4326")
    ds.CreateMaskBand(gdal.GMF_PER_DATASET)
    m = np.full((ds.RasterYSize, ds.RasterXSize), 255, np.uint8)
    m[: ds.RasterYSize // 2] = 0  # north half masked
    ds.GetRasterBand(1).GetMaskBand().WriteArray(m)
    ds = None
    with AlignedReader([ms, str(geo)]) as r:
        (_, b), valid = r.read(0, 0, 150, 150)
    assert np.isnan(b[:, :70]).all() and not np.isnan(b[:, 80:]).any()
    assert not valid[:70].any() and valid[80:].all()


def test_release_cache_drops_the_blocks_read(tmp_path: Path) -> None:
    """Blocks read stay in GDAL's cache until release_cache(): the memory bound of the prefetcher."""
    path = str(tmp_path / "big.tif")
    ds = gdal.GetDriverByName("GTiff").Create(path, 1024, 512, 3, gdal.GDT_Float32, ["TILED=YES"])
    ds.SetGeoTransform((0.0, 1.0, 0.0, 0.0, 0.0, -1.0))
    for b in range(3):
        ds.GetRasterBand(b + 1).Fill(b + 1.0)
    ds = None
    gdal.GetCacheUsed()
    with AlignedReader([path]) as r:
        before = gdal.GetCacheUsed()
        for c in range(0, 1024, 256):
            arrays, valid = r.read(0, c, 256, 256)
            assert valid.all() and arrays[0][2, 0, 0] == 3.0
        assert gdal.GetCacheUsed() - before >= 3 * 256 * 1024 * 4  # one tile row of 3 float bands cached
        r.release_cache()
        assert gdal.GetCacheUsed() - before < 256 * 256 * 4
        arrays, _ = r.read(256, 512, 256, 256)  # still readable afterwards
        assert arrays[0][1].min() == arrays[0][1].max() == 2.0
