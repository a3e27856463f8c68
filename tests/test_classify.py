"""classify(): georeferenced, styled outputs on real samples, and every bad input refused cleanly."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from mmlc.core import api
from mmlc.core.classes import ClassInfo
from mmlc.core.engine.classify import classify
from mmlc.core.engine.grid import Grid
from mmlc.core.errors import GridError, InputError, ModelFileError, OutputError
from mmlc.core.modelfiles.builtin import list_builtin, resolve_model
from osgeo import gdal, ogr
from test_inference import CLASSES3, make_dense_model, make_patch_model


@pytest.fixture(scope="module")
def dense_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dense_model(tmp_path_factory.mktemp("m") / "fcn.mmlc")


@pytest.fixture()
def pair(spacenet6: Path) -> list[str]:
    return [str(spacenet6 / "rgb_unmasked.tif"), str(spacenet6 / "sar_masked.tif")]


def test_outputs_georeferenced_styled_with_nodata(tmp_path: Path, dense_model: Path, pair: list[str],
                                                  spacenet6: Path) -> None:
    out = tmp_path / "classes.tif"
    res = api.classify(dense_model, pair, str(out), confidence=str(tmp_path / "conf.tif"),
                       vector=str(tmp_path / "poly.gpkg"), tile_size=64, overlap=16, device="cpu")
    assert res.tiles > 1 and res.pixels == 200 * 200 and res.device == "cpu"
    src, ds = gdal.Open(pair[0]), gdal.Open(str(out))
    assert ds.GetGeoTransform() == src.GetGeoTransform()
    assert Grid.from_dataset(ds).crs_wkt == src.GetProjection()
    band = ds.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Byte and band.GetNoDataValue() == 0
    a = band.ReadAsArray()
    sar = gdal.Open(pair[1]).ReadAsArray()
    nan_px = np.isnan(sar).any(axis=0)
    assert (a[nan_px] == 0).all() and (a[~nan_px][400:] > 0).all()  # first valid row may blend at the edge
    assert set(np.unique(a[a > 0])) <= {1, 2, 5}
    assert res.valid_pixels == int((a > 0).sum()) == sum(res.class_pixels.values())
    ct = band.GetRasterColorTable()
    assert ct.GetColorEntry(5)[:3] == ClassInfo(5, "built", CLASSES3[2].color).rgb()
    assert band.GetCategoryNames()[1] == "water" and band.GetCategoryNames()[5] == "built"
    qml = Path(res.style).read_text()
    assert 'value="5"' in qml and 'label="built"' in qml and res.style == str(out.with_suffix(".qml"))
    conf = gdal.Open(res.confidence).ReadAsArray()
    assert conf.dtype == np.float32 and (conf[nan_px] == 0).all()
    assert ((conf[a > 0] >= 1 / 3 - 1e-6) & (conf[a > 0] <= 1 + 1e-6)).all()
    vec = ogr.Open(res.vector)
    layer = vec.GetLayer(0)
    feats = list(layer)
    assert len(feats) >= 2
    names = {c.value: c.name for c in CLASSES3}
    assert all(f["name"] == names[f["class"]] for f in feats)
    area = sum(f.GetGeometryRef().GetArea() for f in feats)
    assert area == pytest.approx(res.valid_pixels * src.GetGeoTransform()[1] ** 2, rel=1e-6)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_extent_cut_and_uint16_classes(tmp_path: Path, pair: list[str]) -> None:
    classes = [ClassInfo(1, "a", "#000000"), ClassInfo(300, "b", "#ff0000"), ClassInfo(7, "c", "#00ff00")]
    model = make_dense_model(tmp_path / "wide.mmlc", classes=classes)
    g = Grid.from_path(pair[0])
    x0, y0 = g.xy_of(150.2, 10.0)
    x1, y1 = g.xy_of(120.0, 70.7)  # rows 120..150(+1), cols 10..70(+1)
    res = classify(model, pair, str(tmp_path / "cut.tif"), extent=(x0, y0, x1, y1), device="cpu")
    ds = gdal.Open(res.output)
    assert (ds.RasterXSize, ds.RasterYSize) == (61, 31)
    assert ds.GetGeoTransform()[0] == pytest.approx(g.xy_of(0, 10)[0])
    assert ds.GetGeoTransform()[3] == pytest.approx(g.xy_of(120, 0)[1])
    assert ds.GetRasterBand(1).DataType == gdal.GDT_UInt16
    assert set(np.unique(ds.ReadAsArray())) <= {0, 1, 7, 300}


def test_patch_model_on_ms_pan(tmp_path: Path, spacenet6: Path) -> None:
    model = make_patch_model(tmp_path / "p.mmlc")
    res = classify(model, [str(spacenet6 / "ms1_2m_uint16.tif"), str(spacenet6 / "pan1.tif")],
                   str(tmp_path / "o.tif"), tile_size=64, device="cpu")
    a = gdal.Open(res.output).ReadAsArray()
    assert a.shape == (150, 150) and (a > 0).all() and res.tiles == 9


# --- bad input: a clear error, nothing written -------------------------------------------
def _nothing_written(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.suffix in (".tif", ".qml", ".gpkg", ".xml")]


def test_missing_modality_named(tmp_path: Path, dense_model: Path, pair: list[str]) -> None:
    with pytest.raises(InputError, match="missing: sar"):
        classify(dense_model, pair[:1], str(tmp_path / "o.tif"), device="cpu")
    assert _nothing_written(tmp_path)


def test_band_count_mismatch(tmp_path: Path, pair: list[str]) -> None:
    model = make_dense_model(tmp_path / "m.mmlc", bands=(3, 2))
    with pytest.raises(InputError, match=r"input 2 \(sar.*has 4 band\(s\) but the model expects 2"):
        classify(model, pair, str(tmp_path / "o.tif"), device="cpu")
    assert _nothing_written(tmp_path)


def test_no_valid_pixel_in_extent(tmp_path: Path, dense_model: Path, pair: list[str]) -> None:
    g = Grid.from_path(pair[0])
    x0, y0 = g.xy_of(40, 0)
    x1, y1 = g.xy_of(0, 100)  # the top rows: SAR is NaN there
    with pytest.raises(GridError, match="no pixel"):
        classify(dense_model, pair, str(tmp_path / "o.tif"), confidence=str(tmp_path / "c.tif"),
                 extent=(x0, y0, x1, y1), device="cpu")
    assert _nothing_written(tmp_path)


def test_no_overlap_no_crs_unreadable(tmp_path: Path, dense_model: Path, pair: list[str]) -> None:
    far = tmp_path / "far.tif"
    ds = gdal.Translate(str(far), pair[1])
    gt = list(ds.GetGeoTransform())
    gt[3] += 10_000
    ds.SetGeoTransform(gt)
    ds = None
    with pytest.raises(GridError, match="does not overlap"):
        classify(dense_model, [pair[0], str(far)], str(tmp_path / "o.tif"), device="cpu")
    nocrs = tmp_path / "nocrs.tif"
    ds = gdal.Translate(str(nocrs), pair[1])
    ds.SetProjection("")
    ds = None
    assert gdal.Open(str(nocrs)).GetProjection() == ""
    with pytest.raises(GridError, match="no coordinate reference system"):
        classify(dense_model, [pair[0], str(nocrs)], str(tmp_path / "o.tif"), device="cpu")
    junk = tmp_path / "junk.tif"
    junk.write_text("not a raster")
    with pytest.raises(InputError, match="cannot read raster"):
        classify(dense_model, [pair[0], str(junk)], str(tmp_path / "o.tif"), device="cpu")
    assert not (tmp_path / "o.tif").exists() and not (tmp_path / "o.qml").exists()


def test_unwritable_output_and_overwriting_an_input(tmp_path: Path, dense_model: Path, pair: list[str]) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        classify(dense_model, pair, str(tmp_path / "nope" / "o.tif"), device="cpu")
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        if not os.access(ro, os.W_OK):  # root ignores permissions
            with pytest.raises(OutputError, match="not writable"):
                classify(dense_model, pair, str(ro / "o.tif"), device="cpu")
    finally:
        os.chmod(ro, 0o755)
    with pytest.raises(OutputError, match="is an input"):
        classify(dense_model, pair, pair[1], device="cpu")
    with pytest.raises(OutputError, match="same file"):
        classify(dense_model, pair, str(tmp_path / "a.tif"), confidence=str(tmp_path / "a.tif"), device="cpu")


def test_builtin_names(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="unknown model 'no_such_model'.*built-in"):
        resolve_model("no_such_model")
    with pytest.raises(ModelFileError, match="does not exist"):
        resolve_model(str(tmp_path / "x.mmlc"))
    for name in list_builtin():
        assert resolve_model(name).is_file() and resolve_model(name.upper()).is_file()


# --- mask: classify only inside polygons (any CRS) or a raster's non-zero pixels -----------
def _polygon_file(path: Path, rings_xy: list[list[tuple[float, float]]], src_epsg: int, dst_epsg: int,
                  geom_type: int = ogr.wkbPolygon) -> str:
    """A GeoPackage with one feature per ring (given in ``src_epsg``), stored in ``dst_epsg``."""
    from osgeo import osr

    s, d = osr.SpatialReference(), osr.SpatialReference()
    s.ImportFromEPSG(src_epsg)
    d.ImportFromEPSG(dst_epsg)
    for sr in (s, d):
        sr.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ct = osr.CoordinateTransformation(s, d)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = ds.CreateLayer("mask", srs=d, geom_type=geom_type)
    for ring_xy in rings_xy:
        if geom_type == ogr.wkbPolygon:
            ring = ogr.Geometry(ogr.wkbLinearRing)
            for x, y in ring_xy + ring_xy[:1]:
                ring.AddPoint_2D(x, y)
            geom = ogr.Geometry(ogr.wkbPolygon)
            geom.AddGeometry(ring)
        else:
            geom = ogr.Geometry(ogr.wkbPoint)
            geom.AddPoint_2D(*ring_xy[0])
        geom.Transform(ct)
        f = ogr.Feature(layer.GetLayerDefn())
        f.SetGeometry(geom)
        layer.CreateFeature(f)
    ds = None
    return str(path)


def _epsg(path: str) -> int:
    from osgeo import osr

    s = osr.SpatialReference(wkt=gdal.Open(path).GetProjection())
    s.AutoIdentifyEPSG()
    return int(s.GetAuthorityCode(None))


@pytest.mark.parametrize("kind", ["dense", "patch"])
def test_polygon_mask_in_another_crs(tmp_path: Path, dense_model: Path, pair: list[str], spacenet6: Path,
                                     kind: str) -> None:
    """A triangle stored in WGS 84 over UTM inputs: the output is cut to its extent (whole input
    pixels), pixels whose centre it covers are classified exactly as without the mask (same grid,
    same tiles), all others are nodata."""
    if kind == "dense":
        inputs, model, opts = pair, dense_model, {"tile_size": 64, "overlap": 16}
    else:
        inputs = [str(spacenet6 / "ms1_2m_uint16.tif"), str(spacenet6 / "pan1.tif")]
        model, opts = make_patch_model(tmp_path / "p.mmlc"), {"tile_size": 32}
    g = Grid.from_path(inputs[0])
    tri_px = [(60.3, 20.2), (190.7, 35.4), (120.1, 140.6)] if kind == "dense" else [(40.3, 10.2), (140.7, 25.4), (90.1, 120.6)]
    tri = [g.xy_of(r, c) for r, c in tri_px]
    mask = _polygon_file(tmp_path / "mask.gpkg", [tri], _epsg(inputs[0]), 4326)
    res = classify(model, inputs, str(tmp_path / "m.tif"), mask=mask, device="cpu", **opts)
    ds = gdal.Open(res.output)
    rows, cols = ds.RasterYSize, ds.RasterXSize
    r0, c0 = int(min(r for r, _ in tri_px)), int(min(c for _, c in tri_px))
    r1 = min(int(max(r for r, _ in tri_px)) + 1, g.height)
    assert (rows, cols) == (r1 - r0, int(max(c for _, c in tri_px)) + 1 - c0)
    gt = ds.GetGeoTransform()
    assert gt[1] == g.transform[1] and gt[5] == g.transform[5]
    assert (gt[0], gt[3]) == pytest.approx(g.xy_of(r0, c0), abs=1e-6)
    a = ds.ReadAsArray()
    polygon = ogr.CreateGeometryFromWkt("POLYGON ((" + ", ".join(f"{x} {y}" for x, y in tri + tri[:1]) + "))")
    inside = np.zeros_like(a, bool)
    for r in range(rows):
        for c in range(cols):
            x, y = g.xy_of(r0 + r + 0.5, c0 + c + 0.5)
            pt = ogr.Geometry(ogr.wkbPoint)
            pt.AddPoint_2D(x, y)
            inside[r, c] = polygon.Contains(pt)
    assert inside.sum() > 1000
    assert (a[~inside] == 0).all()
    # the same grid without the mask: equal values wherever the mask lets pixels through
    x0, y0 = g.xy_of(r0 + rows, c0)
    x1, y1 = g.xy_of(r0, c0 + cols)
    ref = classify(model, inputs, str(tmp_path / "e.tif"), extent=(x0 + 0.01, y0 + 0.01, x1 - 0.01, y1 - 0.01),
                   device="cpu", **opts)
    b = gdal.Open(ref.output).ReadAsArray()
    assert b.shape == a.shape
    assert np.array_equal(a[inside], b[inside])
    assert res.valid_pixels == int((a > 0).sum()) == int(((b > 0) & inside).sum())


def test_raster_mask_on_a_coarser_grid(tmp_path: Path, dense_model: Path, pair: list[str]) -> None:
    """A Byte raster at 3x the pixel size, offset by half a cell: nearest cell decides."""
    g = Grid.from_path(pair[0])
    x0, dx, _, y0, _, dy = g.transform
    gt = (x0 + 1.5 * dx, 3 * dx, 0.0, y0 + 1.5 * dy, 0.0, 3 * dy)
    h, w = 60, 50  # covers rows 1.5..181.5, cols 1.5..151.5 of the input
    cells = np.zeros((h, w), np.uint8)
    cells[10:50, 5:45] = 7
    cells[20:30, 20:30] = 0  # a hole
    path = tmp_path / "mask.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), w, h, 1, gdal.GDT_Byte)
    ds.SetGeoTransform(gt)
    ds.SetProjection(g.crs_wkt)
    ds.GetRasterBand(1).WriteArray(cells)
    ds = None
    res = classify(dense_model, pair, str(tmp_path / "o.tif"), mask=str(path), tile_size=64, overlap=16, device="cpu")
    out = gdal.Open(res.output)
    # the output grid: the mask raster's extent snapped outward to input pixels (rows 1..182, cols 1..152)
    assert (out.RasterYSize, out.RasterXSize) == (181, 151)
    ogt = out.GetGeoTransform()
    assert (ogt[0], ogt[3]) == pytest.approx(g.xy_of(1, 1), abs=1e-6)
    a = out.ReadAsArray()
    rr, cc = np.mgrid[0:181, 0:151]
    cell_r = np.floor((rr + 1 + 0.5 - 1.5) / 3).astype(int)
    cell_c = np.floor((cc + 1 + 0.5 - 1.5) / 3).astype(int)
    ok = (cell_r >= 0) & (cell_r < h) & (cell_c >= 0) & (cell_c < w)
    inside = np.zeros_like(ok)
    inside[ok] = cells[cell_r[ok], cell_c[ok]] > 0
    sar = gdal.Open(pair[1]).ReadAsArray()[:, 1:182, 1:152]
    expect_valid = inside & ~np.isnan(sar).any(axis=0)
    assert expect_valid.sum() > 5000 and np.array_equal(a > 0, expect_valid)


def test_bad_masks_are_refused(tmp_path: Path, dense_model: Path, pair: list[str]) -> None:
    g = Grid.from_path(pair[0])
    epsg = _epsg(pair[0])
    points = _polygon_file(tmp_path / "pts.gpkg", [[g.xy_of(50, 50)]], epsg, epsg, ogr.wkbPoint)
    with pytest.raises(InputError, match="has no polygon"):
        classify(dense_model, pair, str(tmp_path / "o.tif"), mask=points, device="cpu")
    far = _polygon_file(tmp_path / "far.gpkg", [[g.xy_of(-500, 0), g.xy_of(-400, 0), g.xy_of(-450, 50)]], epsg, epsg)
    with pytest.raises(GridError, match="the mask .* do not overlap the grid"):
        classify(dense_model, pair, str(tmp_path / "o.tif"), mask=far, device="cpu")
    with pytest.raises(InputError, match="mask file .* does not exist"):
        classify(dense_model, pair, str(tmp_path / "o.tif"), mask=str(tmp_path / "none.gpkg"), device="cpu")
    nan_rows = _polygon_file(tmp_path / "top.gpkg", [[g.xy_of(2, 10), g.xy_of(2, 90), g.xy_of(20, 50)]], epsg, epsg)
    with pytest.raises(GridError, match="no pixel of the output extent inside the mask"):  # SAR is NaN there
        classify(dense_model, pair, str(tmp_path / "o.tif"), mask=nan_rows, device="cpu")
    with pytest.raises(OutputError, match="is an input"):
        classify(dense_model, pair, str(tmp_path / "top.gpkg"), mask=nan_rows, device="cpu")
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".tif", ".qml", ".xml") or p.name.startswith(".")]
