"""Output writers: streamed rows in any chunking, style sidecar, atomic commit/abort."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from mmlc.core.classes import ClassInfo
from mmlc.core.engine.grid import Grid
from mmlc.core.engine.outputs import OutputSet, check_output_paths, qml_text
from mmlc.core.errors import OutputError
from osgeo import gdal

CLASSES = [ClassInfo(3, "water & <ice>", "#1f78b4"), ClassInfo(9, "forest", "#33a02c")]


def _grid(spacenet6: Path) -> Grid:
    return Grid.from_path(str(spacenet6 / "ms1_2m_uint16.tif"))


def test_qml_is_a_paletted_style() -> None:
    root = ET.fromstring(qml_text(CLASSES).split("\n", 1)[1])
    rr = root.find("pipe/rasterrenderer")
    assert rr is not None and rr.get("type") == "paletted" and rr.get("band") == "1"
    entries = [(e.get("value"), e.get("label"), e.get("color")) for e in rr.find("colorPalette")]
    assert entries == [("3", "water & <ice>", "#1f78b4"), ("9", "forest", "#33a02c")]


@pytest.mark.parametrize("rows,cols,shuffle", [([150], [150], False), ([7, 100, 43], [60, 90], False),
                                               ([1] * 150, [150], False), ([40, 70, 40], [33, 50, 67], True)])
def test_streamed_rectangles_written_exactly(tmp_path: Path, spacenet6: Path, rows: list[int], cols: list[int],
                                             shuffle: bool) -> None:
    grid = _grid(spacenet6)
    rng = np.random.default_rng(1)
    probs = rng.dirichlet([1, 1], size=(150, 150)).transpose(2, 0, 1).astype(np.float32)
    valid = rng.random((150, 150)) > 0.1
    out = OutputSet(grid, CLASSES, str(tmp_path / "c.tif"), confidence=str(tmp_path / "p.tif"))
    rects = []
    for r, h in zip(np.cumsum([0] + rows[:-1]), rows):
        for c, w in zip(np.cumsum([0] + cols[:-1]), cols):
            rects.append((int(r), int(c), h, w))
    if shuffle:  # any order is fine: blocks are written when complete
        rects = [rects[k] for k in rng.permutation(len(rects))]
    for r, c, h, w in rects:
        out.write(r, c, probs[:, r:r + h, c:c + w], valid[r:r + h, c:c + w])
    assert not (tmp_path / "c.tif").exists()  # nothing at the target before commit
    out.finish()
    final = out.commit()
    cls = gdal.Open(final["class"]).ReadAsArray()
    expect = np.where(valid, np.array([3, 9])[probs.argmax(0)], 0)
    np.testing.assert_array_equal(cls, expect)
    conf = gdal.Open(final["confidence"]).ReadAsArray()
    np.testing.assert_allclose(conf, np.where(valid, probs.max(0), 0.0))
    assert out.counts.tolist() == [int((expect == 3).sum()), int((expect == 9).sum())]
    ds = gdal.Open(final["class"])
    assert ds.GetGeoTransform() == grid.transform
    assert ds.GetRasterBand(1).GetBlockSize() == [256, 256] or ds.RasterXSize < 256
    # the .aux.xml side-car (category names) exists only where GDAL's PAM is enabled (the test session disables it)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "c.tif.aux.xml") == ["c.qml", "c.tif", "p.tif"]


def test_abort_removes_temporaries(tmp_path: Path, spacenet6: Path) -> None:
    out = OutputSet(_grid(spacenet6), CLASSES, str(tmp_path / "c.tif"), confidence=str(tmp_path / "p.tif"),
                    vector=str(tmp_path / "v.gpkg"))
    out.write(0, 0, np.ones((2, 10, 150), np.float32), np.ones((10, 150), bool))
    assert any(tmp_path.iterdir())
    out.abort()
    assert list(tmp_path.iterdir()) == []


def test_overlapping_outside_and_incomplete_refused(tmp_path: Path, spacenet6: Path) -> None:
    out = OutputSet(_grid(spacenet6), CLASSES, str(tmp_path / "c.tif"))
    with pytest.raises(RuntimeError, match="outside"):
        out.write(145, 0, np.ones((2, 10, 150), np.float32), np.ones((10, 150), bool))
    out.write(0, 0, np.ones((2, 10, 150), np.float32), np.ones((10, 150), bool))
    with pytest.raises(RuntimeError, match="overlapping"):
        out.write(5, 0, np.ones((2, 145, 150), np.float32), np.ones((145, 150), bool))
    with pytest.raises(RuntimeError, match="of 22500 pixels"):
        out.finish()
    out.abort()


def test_check_output_paths(tmp_path: Path, spacenet6: Path) -> None:
    inp = str(spacenet6 / "pan1.tif")
    with pytest.raises(OutputError, match="is an input"):
        check_output_paths([inp], [inp])
    with pytest.raises(OutputError, match="is a folder"):
        check_output_paths([str(tmp_path)], [inp])
    with pytest.raises(OutputError, match="does not exist"):
        check_output_paths([str(tmp_path / "a" / "b.tif")], [inp])
    assert check_output_paths([str(tmp_path / "x.tif"), None], [inp]) == [tmp_path / "x.tif", None]


def test_argmax_max_matches_numpy_including_ties() -> None:
    from mmlc.core.engine.outputs import argmax_max

    rng = np.random.default_rng(3)
    p = rng.integers(0, 3, size=(5, 40, 30)).astype(np.float32)  # many ties
    idx, best = argmax_max(p)
    np.testing.assert_array_equal(idx, p.argmax(0))
    np.testing.assert_array_equal(best, p.max(0))
    assert idx.dtype == np.uint8
    wide = rng.random((300, 6, 7)).astype(np.float32)  # past 256 classes: wide indices
    idx, best = argmax_max(wide)
    assert idx.dtype == np.intp and idx.max() > 255
    np.testing.assert_array_equal(idx, wide.argmax(0))


@pytest.mark.parametrize("k", [1, 4, 40])
def test_class_counts_match_bincount(k: int) -> None:
    from mmlc.core.engine.outputs import class_counts

    rng = np.random.default_rng(k)
    idx = rng.integers(0, k, size=(33, 17)).astype(np.uint8)
    valid = rng.random((33, 17)) > 0.3
    np.testing.assert_array_equal(class_counts(idx, k), np.bincount(idx.ravel(), minlength=k))
    np.testing.assert_array_equal(class_counts(idx[valid], k), np.bincount(idx[valid], minlength=k))
