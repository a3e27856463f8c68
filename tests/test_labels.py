"""core/data/labels.py on the North Carolina sample: class raster, label points and polygons."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mmlc.core.classes import ClassInfo
from mmlc.core.data.labels import apply_remap, labels_from_table, read_labels
from mmlc.core.engine.grid import Grid
from mmlc.core.errors import GridError, InputError
from osgeo import gdal, ogr, osr

# the label names of the shapefiles and their integer ids (ogrinfo: one id per label)
NC_NAMES = {1: "developed", 2: "agriculture", 3: "herbaceous", 4: "shrubland", 5: "forest", 6: "water", 7: "sediment"}


@pytest.fixture(scope="module")
def nc(nc_landsat: Path) -> dict:
    grid = Grid.from_path(str(nc_landsat / "lsat7_2000_10.tif"))
    raw = gdal.Open(str(nc_landsat / "landsat96_labelled_pixels.tif")).ReadAsArray()
    return {
        "grid": grid,
        "raster": str(nc_landsat / "landsat96_labelled_pixels.tif"),
        "raw": raw,
        "points": str(nc_landsat / "landsat96_points.shp"),
        "polygons": str(nc_landsat / "landsat96_polygons.shp"),
    }


def test_class_raster_on_its_own_grid(nc):
    labels, classes = read_labels(nc["raster"], nc["grid"])
    assert labels.dtype == np.uint16 and labels.shape == (443, 489)
    expected = np.where(nc["raw"] == -99999, 0, nc["raw"]).astype(np.uint16)
    np.testing.assert_array_equal(labels, expected)
    assert int((labels > 0).sum()) == 2872
    assert [c.value for c in classes] == [1, 2, 3, 4, 5, 6, 7]
    assert classes[0].name == "class 1"


def test_class_raster_in_another_crs_is_warped_nearest(nc, tmp_path):
    geo = str(tmp_path / "labels_4326.tif")
    gdal.Warp(geo, nc["raster"], dstSRS="EPSG:4326", resampleAlg="near")
    labels, _ = read_labels(geo, nc["grid"])
    ref = np.where(nc["raw"] > 0, nc["raw"], 0).astype(np.uint16)
    labelled = ref > 0
    # two nearest-neighbour resamplings lose/shift a few pixels at most; values are never blended
    assert (labels[labelled] == ref[labelled]).mean() > 0.95
    assert set(np.unique(labels)) <= set(range(8))


def test_category_names_and_colour_table_give_the_classes(nc, tmp_path):
    path = str(tmp_path / "named.tif")
    src = gdal.Translate(path, nc["raster"], outputType=gdal.GDT_Byte, noData=0,
                         scaleParams=None, creationOptions=["COMPRESS=DEFLATE"])
    band = src.GetRasterBand(1)
    names = [""] + [NC_NAMES[v] for v in range(1, 8)]
    band.SetCategoryNames(names)
    ct = gdal.ColorTable()
    ct.SetColorEntry(6, (0, 0, 255, 255))
    band.SetColorTable(ct)
    src = None
    _, classes = read_labels(path, nc["grid"])
    assert [c.name for c in classes] == [NC_NAMES[v] for v in range(1, 8)]
    assert classes[5] == ClassInfo(6, "water", "#0000ff")


def test_points_burn_their_class_into_their_pixel(nc):
    grid = nc["grid"]
    labels, classes = read_labels(nc["points"], grid, "id")
    ds = ogr.Open(nc["points"])
    per_pixel: dict[tuple[int, int], set[int]] = {}
    for f in ds.GetLayer():
        x, y = f.GetGeometryRef().GetX(), f.GetGeometryRef().GetY()
        r, c = grid.pixel_of(x, y)
        if 0 <= r < grid.height and 0 <= c < grid.width:
            per_pixel.setdefault((r, c), set()).add(f.GetField("id"))
    assert len(per_pixel) == int((labels > 0).sum())  # nothing burnt elsewhere, points outside skipped
    single = [(rc, v.pop()) for rc, v in per_pixel.items() if len(v) == 1]
    assert len(single) > 800
    for (r, c), value in single:
        assert labels[r, c] == value
    assert {c.value for c in classes} == set(range(1, 8))


def test_polygons_fill_the_pixels_whose_centre_they_cover(nc):
    grid = nc["grid"]
    labels, _ = read_labels(nc["polygons"], grid, "id")
    expected = np.zeros_like(labels)
    x0, dx, _, y0, _, dy = grid.transform
    ds = ogr.Open(nc["polygons"])  # keep the data source alive while its layer is iterated
    for f in ds.GetLayer():
        geom = f.GetGeometryRef()
        xmin, xmax, ymin, ymax = geom.GetEnvelope()
        r0, c0 = grid.pixel_of(xmin, ymax)
        r1, c1 = grid.pixel_of(xmax, ymin)
        for r in range(max(r0, 0), min(r1 + 1, grid.height)):  # a polygon pokes out of the grid
            for c in range(max(c0, 0), min(c1 + 1, grid.width)):
                pt = ogr.Geometry(ogr.wkbPoint)
                pt.AddPoint_2D(x0 + (c + 0.5) * dx, y0 + (r + 0.5) * dy)
                if geom.Contains(pt):
                    expected[r, c] = f.GetField("id")
    np.testing.assert_array_equal(labels, expected)
    assert int((labels > 0).sum()) == 2264
    # the polygons are the source of the labelled-pixel raster: every burnt pixel agrees with it
    both = (labels > 0) & (nc["raw"] > 0)
    assert both.sum() == 2264 and np.all(labels[both] == nc["raw"][both])


def test_string_field_sorted_to_1_to_k_and_consistent_with_ids(nc):
    by_label, classes = read_labels(nc["polygons"], nc["grid"], "label")
    assert [c.name for c in classes] == sorted(NC_NAMES.values())
    assert [c.value for c in classes] == list(range(1, 8))
    by_id, _ = read_labels(nc["polygons"], nc["grid"], "id")
    merged, remap = labels_from_table([ClassInfo(v, n, "#000000") for v, n in NC_NAMES.items()], classes, by="name")
    assert remap[1] == 2  # agriculture, first alphabetically, has id 2
    np.testing.assert_array_equal(apply_remap(by_label, remap), by_id)
    assert [c.value for c in merged] == list(range(1, 8))


def test_vector_in_another_crs_gives_the_same_raster(nc, tmp_path):
    geo = str(tmp_path / "polygons_4326.gpkg")
    gdal.VectorTranslate(geo, nc["polygons"], dstSRS="EPSG:4326", format="GPKG")
    a, _ = read_labels(nc["polygons"], nc["grid"], "id")
    b, _ = read_labels(geo, nc["grid"], "id")
    assert int((a != b).sum()) <= 25  # boundary pixels only (2264 labelled pixels)
    pts = str(tmp_path / "points_4326.gpkg")
    gdal.VectorTranslate(pts, nc["points"], dstSRS="EPSG:4326", format="GPKG")
    np.testing.assert_array_equal(read_labels(pts, nc["grid"], "id")[0], read_labels(nc["points"], nc["grid"], "id")[0])


def test_read_labels_on_a_window_equals_the_crop(nc):
    full, _ = read_labels(nc["polygons"], nc["grid"], "id")
    win = nc["grid"].window(100, 50, 120, 200)
    part, _ = read_labels(nc["polygons"], win, "id")
    np.testing.assert_array_equal(part, full[100:220, 50:250])


def _shapefile(path: Path, srs_epsg: int, features: list[tuple[str, int]]) -> str:
    drv = ogr.GetDriverByName("ESRI Shapefile")
    ds = drv.CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(srs_epsg)
    layer = ds.CreateLayer("l", srs=srs, geom_type=ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("klass", ogr.OFTInteger))
    for wkt, value in features:
        f = ogr.Feature(layer.GetLayerDefn())
        f.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        f.SetField("klass", value)
        layer.CreateFeature(f)
    ds = None
    return str(path)


def test_errors_are_clear(nc, tmp_path):
    with pytest.raises(InputError, match=r"no field 'klass'; its fields: label \(String\), id \(Integer\)"):
        read_labels(nc["polygons"], nc["grid"], "klass")
    with pytest.raises(InputError, match="choose the field"):
        read_labels(nc["polygons"], nc["grid"])
    with pytest.raises(InputError, match="does not exist"):
        read_labels(str(tmp_path / "nothing.tif"), nc["grid"])
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00 this is not a tiff")
    with pytest.raises(InputError, match="cannot open"):
        read_labels(str(bad), nc["grid"])
    square = "POLYGON ((635000 220000, 636000 220000, 636000 221000, 635000 221000, 635000 220000))"
    zeros = _shapefile(tmp_path / "zeros.shp", 3358, [(square, 0)])
    with pytest.raises(InputError, match="no usable values"):
        read_labels(zeros, nc["grid"], "klass")
    far = "POLYGON ((100 100, 200 100, 200 200, 100 200, 100 100))"
    away = _shapefile(tmp_path / "away.shp", 3358, [(far, 3)])
    with pytest.raises(GridError, match="do not overlap"):
        read_labels(away, nc["grid"], "klass")


def test_labels_from_table_by_value(tmp_path):
    table = tmp_path / "classes.csv"
    table.write_text("value,name,color\n1,water,#0000ff\n2,forest,#00ff00\n5,urban,#ff0000\n")
    found = [ClassInfo(1, "class 1", "#111111"), ClassInfo(5, "class 5", "#555555")]
    classes, remap = labels_from_table(str(table), found)
    assert [c.name for c in classes] == ["water", "forest", "urban"]
    assert remap == {1: 1, 5: 5}
    with pytest.raises(InputError, match="does not list: 9"):
        labels_from_table(str(table), found + [ClassInfo(9, "class 9", "#999999")])
