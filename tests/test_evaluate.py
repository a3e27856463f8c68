"""core/assessment/evaluate.py and core/assessment/reports.py on the North Carolina sample labels."""
from __future__ import annotations

import builtins
import csv
from pathlib import Path

import numpy as np
import pytest
from mmlc.core.assessment.evaluate import evaluate
from mmlc.core.assessment.metrics import Metrics
from mmlc.core.assessment.reports import write_evaluation_report, write_training_report
from mmlc.core.classes import ClassInfo
from mmlc.core.errors import Cancelled, GridError, InputError, OutputError
from mmlc.core.modelfiles.modelfile import ModalityCard, ModelCard
from mmlc.core.progress import CallbackProgress
from osgeo import gdal

NAMES = {1: "developed", 2: "agriculture", 3: "herbaceous", 4: "shrubland", 5: "forest", 6: "water", 7: "sediment"}
COUNTS = [427, 65, 609, 290, 939, 433, 109]  # labelled pixels per class in landsat96_labelled_pixels.tif


@pytest.fixture(scope="module")
def nc(nc_landsat: Path) -> dict:
    path = str(nc_landsat / "landsat96_labelled_pixels.tif")
    raw = gdal.Open(path).ReadAsArray()
    return {"raster": path, "labels": np.where(raw > 0, raw, 0).astype(np.uint8),
            "polygons": str(nc_landsat / "landsat96_polygons.shp"), "points": str(nc_landsat / "landsat96_points.shp")}


def _write_prediction(path: Path, like: str, values: np.ndarray, names: bool = True,
                      origin_shift: float = 0.0) -> str:
    """A uint8 class raster on ``like``'s grid (nodata 0), with category names and colours."""
    src = gdal.Open(like)
    ds = gdal.GetDriverByName("GTiff").Create(str(path), src.RasterXSize, src.RasterYSize, 1, gdal.GDT_Byte)
    gt = list(src.GetGeoTransform())
    gt[0] += origin_shift
    ds.SetGeoTransform(gt)
    ds.SetProjection(src.GetProjection())
    band = ds.GetRasterBand(1)
    band.SetNoDataValue(0)
    if names:  # GTiff takes a colour table only before any pixel is written (refused by GDAL 3.10)
        band.SetCategoryNames([""] + [NAMES[v] for v in range(1, 8)])
        ct = gdal.ColorTable()
        ct.SetColorEntry(6, (0, 0, 255, 255))
        band.SetColorTable(ct)
    band.WriteArray(values)
    ds = None
    return str(path)


def test_labels_against_themselves_are_perfect_and_outputs_name_the_classes(nc, tmp_path):
    pred = _write_prediction(tmp_path / "pred.tif", nc["raster"], nc["labels"])
    table, report = tmp_path / "cm.csv", tmp_path / "report.html"
    r = evaluate(pred, nc["raster"], output_report=str(report), output_table=str(table))
    assert r.metrics.overall_accuracy == 1.0 and r.metrics.kappa == 1.0 and r.metrics.miou == 1.0
    np.testing.assert_array_equal(r.confusion, np.diag(COUNTS))
    assert [c.name for c in r.classes] == [NAMES[v] for v in range(1, 8)]
    assert r.classes[5].color == "#0000ff"
    rows = list(csv.reader(table.open()))
    assert rows[0][1:] == [NAMES[v] for v in range(1, 8)]
    assert rows[3] == ["herbaceous"] + ["0", "0", "609", "0", "0", "0", "0"]
    text = report.read_text()
    for name in NAMES.values():
        assert name in text
    assert "data:image/png;base64," in text and "100.00 %" in text
    assert r.paths == {"OUTPUT_REPORT": str(report), "OUTPUT_TABLE": str(table)}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_perturbed_prediction_gives_the_predicted_confusion(nc, tmp_path):
    # all class-2 pixels predicted as 3; class-7 pixels left unclassified (nodata) in the prediction
    perturbed = nc["labels"].copy()
    perturbed[perturbed == 2] = 3
    perturbed[perturbed == 7] = 0
    pred = _write_prediction(tmp_path / "pert.tif", nc["raster"], perturbed)
    r = evaluate(pred, nc["raster"], block_pixels=5000)  # 10 rows per block: exercises streaming
    # class 7 has no classified pixel -> not in the matrix; its 109 pixels are reported as unclassified
    expected = np.diag(COUNTS[:6])
    expected[1, 1], expected[1, 2] = 0, 65
    np.testing.assert_array_equal(r.confusion, expected)
    assert r.unclassified == 109
    n = sum(COUNTS[:6])  # 2763 pixels, 2698 correct
    assert r.metrics.overall_accuracy == pytest.approx((n - 65) / n)
    assert r.metrics.recall[1] == 0.0 and r.metrics.iou[1] == 0.0
    assert r.metrics.precision[2] == pytest.approx(609 / 674) and r.metrics.iou[2] == pytest.approx(609 / 674)
    assert r.metrics.average_accuracy == pytest.approx(5 / 6)
    one_block = evaluate(pred, nc["raster"])
    np.testing.assert_array_equal(one_block.confusion, r.confusion)


def test_vector_references_integer_and_text_fields(nc, tmp_path):
    pred = _write_prediction(tmp_path / "pred.tif", nc["raster"], nc["labels"])
    r = evaluate(pred, nc["polygons"], label_field="id")
    assert r.metrics.overall_accuracy == 1.0 and r.metrics.n_pixels == 2264
    # text field: names matched to the prediction's category names, not the alphabetical numbers
    r = evaluate(pred, nc["polygons"], label_field="label")
    assert r.metrics.overall_accuracy == 1.0 and r.metrics.n_pixels == 2264
    assert [c.name for c in r.classes] == [NAMES[v] for v in range(1, 8)]
    # without names in the prediction the numbers are compared (agriculture=1 vs developed=1) and it says so
    bare = _write_prediction(tmp_path / "bare.tif", nc["raster"], nc["labels"], names=False)
    prog = CallbackProgress()
    r = evaluate(bare, nc["polygons"], label_field="label", progress=prog)
    assert r.metrics.overall_accuracy < 0.5
    assert any("numbered alphabetically" in m for m in prog.messages)


def test_reference_in_another_crs(nc, tmp_path):
    pred = _write_prediction(tmp_path / "pred.tif", nc["raster"], nc["labels"])
    geo = str(tmp_path / "ref_4326.tif")
    gdal.Warp(geo, nc["raster"], dstSRS="EPSG:4326", resampleAlg="near")
    r = evaluate(pred, geo)
    assert r.metrics.n_pixels > 2700 and r.metrics.overall_accuracy > 0.95


def test_bad_inputs_give_their_messages_and_write_nothing(nc, tmp_path):
    table, report = tmp_path / "cm.csv", tmp_path / "r.html"
    outs = {"output_table": str(table), "output_report": str(report)}
    far = _write_prediction(tmp_path / "far.tif", nc["raster"], nc["labels"], origin_shift=1e6)
    with pytest.raises(GridError, match="do not overlap"):
        evaluate(far, nc["raster"], **outs)
    empty = _write_prediction(tmp_path / "empty.tif", nc["raster"], np.zeros_like(nc["labels"]))
    with pytest.raises(InputError, match="no labelled reference pixel.*2872 labelled reference pixels fall where"):
        evaluate(empty, nc["raster"], **outs)
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not a raster")
    with pytest.raises(InputError, match="cannot read raster"):
        evaluate(str(broken), nc["raster"], **outs)
    pred = _write_prediction(tmp_path / "pred.tif", nc["raster"], nc["labels"])
    with pytest.raises(InputError, match="its fields: label"):
        evaluate(pred, nc["polygons"], label_field="class", **outs)
    with pytest.raises(OutputError, match="does not exist"):
        evaluate(pred, nc["raster"], output_table=str(tmp_path / "missing" / "cm.csv"))
    with pytest.raises(OutputError, match="would overwrite the input"):
        evaluate(pred, nc["raster"], output_table=pred)
    with pytest.raises(Cancelled):
        evaluate(pred, nc["raster"], progress=CallbackProgress(cancel_after=1), block_pixels=5000, **outs)
    assert not table.exists() and not report.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _metrics() -> Metrics:
    classes = [ClassInfo(1, "water", "#0000ff"), ClassInfo(2, "forest <old>", "#00ff00")]
    return Metrics.from_confusion(np.array([[8, 2], [1, 9]]), classes)


def test_report_without_matplotlib_is_still_written(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    path = write_evaluation_report(tmp_path / "r.html", _metrics(), title="t", extra={"note": "x"})
    text = path.read_text()
    assert "plot not available" in text and "<img" not in text
    assert "forest &lt;old&gt;" in text  # user text is escaped
    assert "85.00 %" in text  # OA = 17/20


def test_training_report_renders_any_logged_key(tmp_path):
    card = ModelCard(
        architecture="prsanet", build_kwargs={"num_classes": 2}, head_kind="patch",
        modalities=[ModalityCard("hsi", 144, patch_size=11, patch_anchor=5),
                    ModalityCard("lidar", 1, band_names=["dsm"])],
        classes=[ClassInfo(1, "water", "#0000ff"), ClassInfo(2, "forest", "#00ff00")],
        variant="small", provenance={"epochs": 2, "data": ["scene_a"]},
    )
    history = [
        {"epoch": 1, "loss": 1.2, "val_oa": 0.61, "imbalance_hsi": 1.4, "proto_acc_lidar": 0.35},
        {"epoch": 2, "loss": 0.8, "val_oa": 0.74, "imbalance_hsi": 1.1, "proto_acc_lidar": 0.52},
    ]
    path = write_training_report(tmp_path / "train.html", card, history, _metrics(), {"device": "cpu"})
    text = path.read_text()
    for needle in ("prsanet", "small", "hsi", "lidar", "dsm", "#0000ff", "scene_a", "imbalance_hsi",
                   "proto_acc_lidar", "0.5200", "Validation", "forest &lt;old&gt;"):
        assert needle in text, needle
    assert text.count("data:image/png;base64,") == 3  # loss curve, metric curves, confusion matrix
