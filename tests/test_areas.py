"""Class areas (core/engine/areas.py) on a real sample raster with a known grid, in a projected, a
geographic and an area-distorting CRS."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from mmlc.core.classes import ClassInfo
from mmlc.core.engine.areas import area_lines, band_area_m2, class_areas, write_area_csv
from osgeo import gdal

CLASSES = [ClassInfo(1, "water", "#1f78b4"), ClassInfo(2, "dense vegetation", "#33a02c"),
           ClassInfo(3, "sparse, crop", "#b2df8a"), ClassInfo(4, "other", "#e31a1c")]


@pytest.fixture(scope="module")
def labels(bigearthnet: Path, tmp_path_factory) -> dict[str, Path]:
    """The Irish weak-label raster (120 x 120 at 10 m, UTM 29N) and warps of it to WGS 84 and
    Web Mercator (copies: the samples stay untouched)."""
    root = tmp_path_factory.mktemp("areas")
    src = next(bigearthnet.glob("*36_85__weak_label_s2rules.tif"))
    utm = root / "utm.tif"
    gdal.Translate(str(utm), str(src))
    out = {"utm": utm}
    for key, crs in (("geo", "EPSG:4326"), ("merc", "EPSG:3857")):
        out[key] = root / f"{key}.tif"
        gdal.Warp(str(out[key]), str(utm), dstSRS=crs, resampleAlg="near")
    return out


def test_projected_areas_are_pixel_counts_times_the_cell_area(labels: dict[str, Path]) -> None:
    ds = gdal.Open(str(labels["utm"]))
    gt = ds.GetGeoTransform()
    assert (gt[1], gt[5], ds.RasterXSize, ds.RasterYSize) == (10.0, -10.0, 120, 120)
    values = ds.ReadAsArray()
    table = class_areas(labels["utm"], CLASSES)
    assert table.method == "planar" and table.pixel_area_m2 == pytest.approx(100.0)
    for row in table.rows:
        n = int((values == row.value).sum())
        assert row.pixels == n
        assert row.hectares == pytest.approx(n * 100.0 / 1e4)  # 10 m x 10 m = 0.01 ha
    assert table.total_hectares == pytest.approx(120 * 120 * 0.01)
    assert sum(r.share for r in table.rows) == pytest.approx(1.0)
    assert table.rows[1].share == pytest.approx((values == 2).sum() / values.size)
    # the writer's counts give the same table without reading the raster
    given = class_areas(labels["utm"], CLASSES, {c.value: int((values == c.value).sum()) for c in CLASSES})
    assert [r.hectares for r in given.rows] == pytest.approx([r.hectares for r in table.rows])


@pytest.mark.parametrize("key", ["geo", "merc"])
def test_geographic_and_distorting_crs_areas_match_the_utm_areas(labels: dict[str, Path], key: str) -> None:
    utm = class_areas(labels["utm"], CLASSES)
    other = class_areas(labels[key], CLASSES)
    assert other.method == "ellipsoidal" and other.note
    # the same ground, resampled: totals within 0.5 %, the main class within 1 %
    assert other.total_hectares == pytest.approx(utm.total_hectares, rel=0.005)
    assert other.rows[1].hectares == pytest.approx(utm.rows[1].hectares, rel=0.01)
    if key == "merc":  # planar Web Mercator cells would claim about 1 / cos^2(53 deg) = 2.7 x the area
        ds = gdal.Open(str(labels[key]))
        gt = ds.GetGeoTransform()
        planar = other.total_pixels * abs(gt[1] * gt[5]) / 1e4
        assert planar / other.total_hectares > 2.5


def test_band_area_matches_the_sphere_and_the_whole_ellipsoid() -> None:
    # sphere: a^2 * dlon * (sin(lat2) - sin(lat1))
    a = 6_371_000.0
    got = band_area_m2(np.array([10.0]), np.array([11.0]), 1.0, a, 0.0)[0]
    assert got == pytest.approx(a * a * math.radians(1.0) * (math.sin(math.radians(11)) - math.sin(math.radians(10))))
    # WGS 84: the whole surface is 510,065,621.7 km^2
    whole = band_area_m2(np.array([-90.0]), np.array([90.0]), 360.0, 6378137.0, 298.257223563)[0]
    assert whole / 1e6 == pytest.approx(510_065_621.7, rel=1e-6)


def test_no_crs_gives_pixels_and_shares_without_hectares(labels: dict[str, Path], tmp_path: Path) -> None:
    bare = tmp_path / "bare.tif"
    ds = gdal.Translate(str(bare), str(labels["utm"]))
    ds.SetProjection("")
    ds = None
    table = class_areas(bare, CLASSES)
    assert table.method == "none" and "no CRS" in table.note
    assert all(r.hectares is None for r in table.rows) and table.total_pixels == 120 * 120
    assert area_lines(table)[1].split()[:3] == ["0", "–", "0.00%"]


def test_csv_has_one_row_per_class_and_quotes_names(labels: dict[str, Path], tmp_path: Path) -> None:
    table = class_areas(labels["utm"], CLASSES)
    path = write_area_csv(tmp_path / "areas.csv", table)
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert [r["name"] for r in rows] == [c.name for c in CLASSES]  # "sparse, crop" survives the comma
    assert [int(r["pixels"]) for r in rows] == [r.pixels for r in table.rows]
    assert sum(float(r["hectares"]) for r in rows) == pytest.approx(144.0)
    assert sum(float(r["share_percent"]) for r in rows) == pytest.approx(100.0)
    lines = area_lines(table)
    assert lines[0].split() == ["pixels", "hectares", "share", "class"]
    assert lines[-2].split() == ["14,400", "144.00", "100.00%", "total"]
    assert len({line.index("%") for line in lines[1:-1]}) == 1  # the share column lines up
