"""Benchmark folder readers (``core.data.datasets.scenes_from_dataset``) on tiny synthetic layouts.

Each test builds a few 16x16 files in the layout the reader's docstring (and the dataset's
public release) describes, checks the scenes it returns (count, input order, labels, split,
label mapping), and loads every scene through ``load_scene`` (the training data path) to check
class values on known pixels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mmlc.core.data.datasets import Scene, load_scene, scenes_from_dataset
from mmlc.core.errors import InputError
from osgeo import gdal, ogr, osr

N = 16
UTM = 32631  # SpaceNet 6 Rotterdam / a SEN12MS-like UTM zone
ORIGIN = (594000.0, 5757000.0)


def _srs(epsg: int) -> osr.SpatialReference:
    s = osr.SpatialReference()
    s.ImportFromEPSG(epsg)
    s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return s


def _mem(arr: np.ndarray, dtype: int, georef: bool, res: float = 1.0) -> gdal.Dataset:
    arr = arr if arr.ndim == 3 else arr[None]
    ds = gdal.GetDriverByName("MEM").Create("", arr.shape[2], arr.shape[1], arr.shape[0], dtype)
    if georef:
        ds.SetGeoTransform((ORIGIN[0], res, 0.0, ORIGIN[1], 0.0, -res))
        ds.SetProjection(_srs(UTM).ExportToWkt())
    for i, band in enumerate(arr):
        ds.GetRasterBand(i + 1).WriteArray(band)
    return ds


def write_tif(path: Path, arr: np.ndarray, dtype: int = gdal.GDT_Byte, georef: bool = True, res: float = 1.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    gdal.GetDriverByName("GTiff").CreateCopy(str(path), _mem(arr, dtype, georef, res))


def write_copy(path: Path, arr: np.ndarray, driver: str) -> None:
    """PNG/JPEG (not georeferenced, as in DDHR) written by CreateCopy from a MEM dataset."""
    path.parent.mkdir(parents=True, exist_ok=True)
    gdal.GetDriverByName(driver).CreateCopy(str(path), _mem(arr, gdal.GDT_Byte, georef=False))


def image(bands: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 250, size=(bands, N, N)).astype(np.uint8)


def class_raster(seed: int, values: list[int]) -> np.ndarray:
    """Known label pattern: (0, 0) holds values[0], (N-1, N-1) values[-1], the rest random."""
    lab = np.random.default_rng(seed).choice(values, size=(N, N)).astype(np.uint8)
    lab[0, 0], lab[-1, -1] = values[0], values[-1]
    return lab


# ---------------------------------------------------------------------------------------------
# PIE-RGB-SAR: rgb/ sar/ label/ + train.txt / val.txt; classes 0..5 real (offset 1), 255 unlabelled
# ---------------------------------------------------------------------------------------------

def test_pie_rgb_sar(tmp_path: Path) -> None:
    root = tmp_path / "PIE-RGB-SAR"
    labels = {}
    for i, name in enumerate(["p_001", "p_002", "p_003"]):
        write_tif(root / "rgb" / f"{name}.tif", image(3, i))
        write_tif(root / "sar" / f"{name}.tif", image(1, 10 + i))
        lab = class_raster(i, [0, 1, 2, 3, 4, 5])
        lab[3, 5] = 255
        labels[name] = lab
        write_tif(root / "label" / f"{name}.tif", lab)
    (root / "train.txt").write_text("p_003\np_001\n\n")  # list order is kept, blank lines skipped
    (root / "val.txt").write_text("p_002\n")

    train = scenes_from_dataset("pie-rgb-sar", root, "train")
    assert [s.name for s in train] == ["p_003", "p_001"]
    s = train[0]
    assert s.inputs == [str(root / "rgb" / "p_003.tif"), str(root / "sar" / "p_003.tif")]
    assert s.labels == str(root / "label" / "p_003.tif")
    assert (s.label_offset, s.unlabelled_value, s.label_divisor) == (1, 255, 1)
    val = scenes_from_dataset("pie", root, "val")
    assert [v.name for v in val] == ["p_002"]

    d = load_scene(s, [1, 1])
    raw = labels["p_003"]
    assert d.shape == (N, N) and [a.shape for a in d.arrays] == [(3, N, N), (1, N, N)]
    assert d.values[0, 0] == 1  # background (0) is a real class -> 1
    assert d.values[-1, -1] == 6  # farmland (5) -> 6
    assert d.values[3, 5] == 0  # 255 -> unlabelled
    ok = raw != 255
    np.testing.assert_array_equal(d.values[ok], raw[ok].astype(np.uint16) + 1)
    np.testing.assert_array_equal(d.arrays[0][:, 2, 7], image(3, 2)[:, 2, 7].astype(np.float32))

    (root / "test.txt").unlink(missing_ok=True)
    with pytest.raises(InputError, match="test.txt"):
        scenes_from_dataset("pie-rgb-sar", root, "test")
    (root / "val.txt").write_text("p_004\n")
    with pytest.raises(InputError, match="p_004"):
        scenes_from_dataset("pie-rgb-sar", root, "val")


# ---------------------------------------------------------------------------------------------
# DDHR: GF2/<id>.jpg GF3/<id>.jpg label/<id>.png, classes 0..4 (offset 1); split by id blocks
# ---------------------------------------------------------------------------------------------

def _ddhr_root(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "korea" / "256_cloud"
    labels = {}
    for i, sid in enumerate(["5", "150", "201", "299", "305", "410"]):
        write_copy(root / "GF2" / f"{sid}.jpg", image(3, i), "JPEG")
        write_copy(root / "GF3" / f"{sid}.jpg", image(1, 20 + i), "JPEG")
        lab = class_raster(i, [0, 1, 2, 3, 4])
        labels[sid] = lab
        write_copy(root / "label" / f"{sid}.png", lab, "PNG")
    return root, labels


def test_ddhr_id_block_split_and_loading(tmp_path: Path) -> None:
    root, labels = _ddhr_root(tmp_path)
    train = scenes_from_dataset("ddhr", root, "train")
    val = scenes_from_dataset("ddhr", root, "val")
    # ids in [200j, 200j+99] for j >= 1 are validation (200-299, 400-499, ...), the rest training
    assert sorted(s.name for s in train) == ["150", "305", "5"]
    assert sorted(s.name for s in val) == ["201", "299", "410"]
    assert [s.name for s in scenes_from_dataset("ddhr", root, "test")] == [s.name for s in val]
    s = next(v for v in val if v.name == "201")
    assert s.inputs == [str(root / "GF2" / "201.jpg"), str(root / "GF3" / "201.jpg")]
    assert s.labels == str(root / "label" / "201.png")


def test_ddhr_scene_loads(tmp_path: Path) -> None:
    root, labels = _ddhr_root(tmp_path)
    s = next(v for v in scenes_from_dataset("ddhr", root, "val") if v.name == "201")
    d = load_scene(s, [1, 1])
    assert d.shape == (N, N) and [a.shape[0] for a in d.arrays] == [3, 1]
    assert d.values[0, 0] == 1 and d.values[-1, -1] == 5  # buildings (0) -> 1, farmland (4) -> 5
    np.testing.assert_array_equal(d.values, labels["201"].astype(np.uint16) + 1)
    assert d.valid.all()


def test_ddhr_split_list_with_path_triplets(tmp_path: Path) -> None:
    root, _ = _ddhr_root(tmp_path)
    (root / "train.txt").write_text("GF2/299.jpg GF3/299.jpg label/299.png\nGF2/5.jpg GF3/5.jpg label/5.png\n")
    train = scenes_from_dataset("ddhr", root, "train")
    assert [s.name for s in train] == ["299", "5"]
    assert train[0].labels == str(root / "label" / "299.png")


# ---------------------------------------------------------------------------------------------
# SEN12MS: ROIs<season>/{s1,s2,lc}_<scene>/ROIs<season>_{s1,s2,lc}_<scene>_p<k>.tif, holdout list
# ---------------------------------------------------------------------------------------------

def _sen12ms_root(tmp_path: Path, holdout: str | None) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "SEN12MS"
    igbp = {}
    k = 0
    for roi, scenes in (("ROIs1158_spring", ["15", "63"]), ("ROIs2017_winter", ["64"])):
        for sid in scenes:
            for p in (30, 7):
                stem = f"{roi}_{{}}_{sid}_p{p}.tif"
                s2 = np.random.default_rng(k).integers(0, 4000, size=(13, N, N)).astype(np.uint16)
                s1 = np.random.default_rng(100 + k).normal(-12, 3, size=(2, N, N)).astype(np.float32)
                lc = np.stack([class_raster(k, [1, 4, 10, 13, 17])] + [np.full((N, N), 7, np.uint8)] * 3)
                write_tif(root / roi / f"s2_{sid}" / stem.format("s2"), s2, gdal.GDT_UInt16, res=10.0)
                write_tif(root / roi / f"s1_{sid}" / stem.format("s1"), s1, gdal.GDT_Float32, res=10.0)
                write_tif(root / roi / f"lc_{sid}" / stem.format("lc"), lc.astype(np.uint16), gdal.GDT_UInt16,
                          res=10.0)
                igbp[stem.format("s2")[:-4]] = lc[0]
                k += 1
    if holdout is not None:
        (root / "splits").mkdir()
        (root / "splits" / "SEN12MS_holdOutScenes.txt").write_text(holdout)
    return root, igbp


def test_sen12ms_holdout_split_and_loading(tmp_path: Path) -> None:
    # the official list (schmitt-muc/SEN12MS splits/SEN12MS_holdOutScenes.txt) writes "<ROI>/s1_<n>"
    root, igbp = _sen12ms_root(tmp_path, "ROIs1158_spring/s1_63\nROIs2017_winter/s1_64\n")
    train = scenes_from_dataset("sen12ms", root, "train")
    val = scenes_from_dataset("sen12ms", root, "val")
    assert [s.name for s in train] == ["ROIs1158_spring_s2_15_p30", "ROIs1158_spring_s2_15_p7"]
    assert sorted(s.name for s in val) == sorted(
        f"{r}_s2_{n}_p{p}" for r, n in (("ROIs1158_spring", "63"), ("ROIs2017_winter", "64")) for p in (30, 7))
    s = train[0]
    roi = root / "ROIs1158_spring"
    assert s.inputs == [str(roi / "s2_15" / "ROIs1158_spring_s2_15_p30.tif"),
                        str(roi / "s1_15" / "ROIs1158_spring_s1_15_p30.tif")]  # optical first
    assert s.labels == str(roi / "lc_15" / "ROIs1158_spring_lc_15_p30.tif")

    d = load_scene(val[0], [1, 1])
    assert [a.shape[0] for a in d.arrays] == [13, 2]
    ref = igbp[val[0].name]
    assert d.values[0, 0] == 1 and d.values[-1, -1] == 17  # IGBP band 1 used as is
    np.testing.assert_array_equal(d.values, ref.astype(np.uint16))


def test_sen12ms_without_holdout_list(tmp_path: Path) -> None:
    root, _ = _sen12ms_root(tmp_path, None)
    assert len(scenes_from_dataset("sen12ms", root, "train")) == 6
    # no hold-out list: a validation split would silently repeat the training tiles
    with pytest.raises(InputError, match="SEN12MS_holdOutScenes"):
        scenes_from_dataset("sen12ms", root, "val")


def test_sen12ms_skips_incomplete_triplets(tmp_path: Path) -> None:
    root, _ = _sen12ms_root(tmp_path, None)
    (root / "ROIs1158_spring" / "lc_15" / "ROIs1158_spring_lc_15_p7.tif").unlink()
    names = [s.name for s in scenes_from_dataset("sen12ms", root, "train")]
    assert len(names) == 5 and "ROIs1158_spring_s2_15_p7" not in names
    with pytest.raises(InputError, match="no s2/s1/lc"):
        (tmp_path / "empty").mkdir()
        scenes_from_dataset("sen12ms", tmp_path / "empty", "train")


# ---------------------------------------------------------------------------------------------
# SpaceNet 6: {PS-RGBNIR, SAR-Intensity}/..._tile_<n>.tif + geojson_buildings (EPSG:4326)
# ---------------------------------------------------------------------------------------------

def _building_geojson(path: Path, boxes: list[tuple[int, int, int, int]]) -> None:
    """Buildings as lon/lat polygons covering pixel boxes (row0, col0, row1, col1) of the UTM tile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    to_ll = osr.CoordinateTransformation(_srs(UTM), _srs(4326))
    ds = ogr.GetDriverByName("GeoJSON").CreateDataSource(str(path))
    layer = ds.CreateLayer("buildings", srs=_srs(4326), geom_type=ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("TileBuildingID", ogr.OFTInteger))  # SN6 has no class field
    for i, (r0, c0, r1, c1) in enumerate(boxes):
        ring = ogr.Geometry(ogr.wkbLinearRing)
        for r, c in ((r0, c0), (r0, c1), (r1, c1), (r1, c0), (r0, c0)):
            ring.AddPoint_2D(*to_ll.TransformPoint(ORIGIN[0] + c, ORIGIN[1] - r)[:2])
        poly = ogr.Geometry(ogr.wkbPolygon)
        poly.AddGeometry(ring)
        f = ogr.Feature(layer.GetLayerDefn())
        f.SetGeometry(poly)
        f.SetField("TileBuildingID", i)
        layer.CreateFeature(f)
    ds = None


def test_spacenet6(tmp_path: Path) -> None:
    root = tmp_path / "SN6_buildings"
    base = root / "train" / "AOI_11_Rotterdam"
    ts = "20190823162315_20190823162606"
    tiles = {"10": [(4, 4, 9, 9)], "7": [(2, 10, 6, 14)], "3": []}
    for i, (t, boxes) in enumerate(tiles.items()):
        pre = f"SN6_Train_AOI_11_Rotterdam_{{}}_{ts}_tile_{t}"
        write_tif(base / "PS-RGBNIR" / f"{pre.format('PS-RGBNIR')}.tif", image(4, i))
        write_tif(base / "SAR-Intensity" / f"{pre.format('SAR-Intensity')}.tif",
                  np.random.default_rng(i).random((4, N, N)).astype(np.float32), gdal.GDT_Float32)
        _building_geojson(base / "geojson_buildings" / f"{pre.format('Buildings')}.geojson", boxes)
    # a SAR tile without optical/buildings is not a scene
    write_tif(base / "SAR-Intensity" / f"SN6_Train_AOI_11_Rotterdam_SAR-Intensity_{ts}_tile_5.tif",
              np.zeros((4, N, N), np.float32), gdal.GDT_Float32)

    train = scenes_from_dataset("spacenet6", root, "train")
    val = scenes_from_dataset("sn6", root, "val")
    assert [s.name for s in train] == ["tile_3", "tile_7"]  # odd tiles train, numeric order
    assert [s.name for s in val] == ["tile_10"]
    s = val[0]
    assert Path(s.inputs[0]).parent.name == "PS-RGBNIR" and Path(s.inputs[1]).parent.name == "SAR-Intensity"
    assert s.labels.endswith(f"Buildings_{ts}_tile_10.geojson")

    d = load_scene(s, [1, 1])
    assert [a.shape[0] for a in d.arrays] == [4, 4]
    names = {c.value: c.name for c in d.classes}
    bld = next(v for v, n in names.items() if "building" in n.lower())
    bg = next(v for v, n in names.items() if "background" in n.lower())
    assert bld != bg and min(bld, bg) >= 1
    assert d.values[6, 6] == bld and d.values[0, 0] == bg and d.values[12, 2] == bg
    assert (d.values == bld).sum() == 25  # the 5x5 pixel box, pixel-centre rule
    # a tile without buildings is all background, not an error
    empty = load_scene(next(t for t in train if t.name == "tile_3"), [1, 1])
    assert (empty.values == bg).all()
    seven = load_scene(next(t for t in train if t.name == "tile_7"), [1, 1])
    assert seven.values[3, 12] == bld and seven.values[3, 3] == bg


def test_scene_defaults() -> None:
    s = Scene(["a/x.tif", "b/x.tif"], "l/x.tif")
    assert s.name == "x" and s.label_offset == 0 and s.unlabelled_value is None
