"""The Processing algorithms in a real QGIS: parameter ids, dialogs, processing.run on the shipped
samples, styled layers, cancel, bad inputs, qgis_process and the Graphical Modeler chain."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from mmlc.core.operations import OPERATIONS
from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
)
from test_inference import CLASSES3, make_dense_model

# The algorithms' parameters are generated from the operation specs; the ids themselves are frozen
# in tests/test_operations.py (FROZEN_PROCESSING).
PARAMETER_IDS = {f"mmlc:{op.id}": [p.id for p in op.processing_params()] for op in OPERATIONS.values()}


@pytest.fixture(scope="module")
def copies(tmp_path_factory, spacenet6: Path, bigearthnet: Path, nc_landsat: Path) -> dict[str, Path]:
    """Copies of the samples for tests that hand rasters to QGIS layers: QGIS's GDAL provider
    caches histograms in .aux.xml files beside the rasters it loads, and the shipped samples must
    stay untouched (the session guard in conftest checks)."""
    import shutil

    root = tmp_path_factory.mktemp("samples")
    out = {}
    for name, src in (("spacenet6", spacenet6), ("bigearthnet", bigearthnet), ("nc_landsat", nc_landsat)):
        out[name] = Path(shutil.copytree(src, root / name))
    return out


def _grid(path: Path) -> tuple:
    ds = gdal.Open(str(path))
    return ds.GetGeoTransform(), ds.RasterXSize, ds.RasterYSize, ds.GetProjection()


@pytest.mark.parametrize("alg_id", sorted(PARAMETER_IDS))
def test_parameter_ids_are_stable(provider, alg_id: str) -> None:
    alg = QgsApplication.processingRegistry().algorithmById(alg_id)
    assert [p.name() for p in alg.parameterDefinitions()] == PARAMETER_IDS[alg_id]
    assert alg.shortHelpString() and alg.group() and not alg.icon().isNull()
    if alg_id == "mmlc:evaluate":
        assert {o.name() for o in alg.outputDefinitions()} >= {"OA", "AA", "KAPPA", "MIOU"}
    if alg_id == "mmlc:classify":  # a built-in name is an acceptable MODEL value, as is a file
        model = alg.parameterDefinition("MODEL")
        assert model.checkValueIsAcceptable("asanet-demo") and model.checkValueIsAcceptable("/x/y.mmlc")


@pytest.mark.parametrize("alg_id", sorted(PARAMETER_IDS))
def test_toolbox_dialog_opens_with_the_parameters(provider, qgis_iface, monkeypatch, alg_id: str) -> None:
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.gui import QgsBrowserGuiModel

    browser = QgsBrowserGuiModel()  # pytest-qgis's iface mocks this; the dialog needs a real one
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser, raising=False)

    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    dialog = AlgorithmDialog(alg, False, qgis_iface.mainWindow())
    try:
        wrappers = dialog.mainWidget().wrappers
        assert set(PARAMETER_IDS[alg_id]) <= set(wrappers)  # destinations included
        assert all(wrappers[p].wrappedWidget() is not None for p in PARAMETER_IDS[alg_id])
    finally:
        dialog.close()


@pytest.fixture
def layer_tree_view(qgis_iface, monkeypatch):
    """A real layer tree view on the project for pytest-qgis's mocked iface: QGIS 3.44's Processing
    post-processing hands ``iface.layerTreeView()`` to C++, which refuses a MagicMock."""
    from qgis.core import QgsLayerTreeModel
    from qgis.gui import QgsLayerTreeView
    from qgis.PyQt import sip

    view = QgsLayerTreeView()
    model = QgsLayerTreeModel(QgsProject.instance().layerTreeRoot(), view)
    view.setModel(model)
    monkeypatch.setattr(qgis_iface, "layerTreeView", lambda: view, raising=False)
    yield view
    sip.delete(view)  # now, with its model, while the QGIS application still exists


def test_classify_runs_and_loads_a_paletted_layer(provider, layer_tree_view, tmp_path: Path, copies: dict) -> None:
    spacenet6 = copies["spacenet6"]
    from qgis import processing

    model = make_dense_model(tmp_path / "m.mmlc")
    out = tmp_path / "lc.tif"
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    params = {"MODEL": str(model), "INPUT_1": str(spacenet6 / "rgb_unmasked.tif"),
              "INPUT_2": str(spacenet6 / "sar_masked.tif"), "TILE_SIZE": 0, "OVERLAP": 16, "BATCH_SIZE": 2,
              "DEVICE": "cpu", "OUTPUT": str(out), "OUTPUT_CONFIDENCE": str(tmp_path / "conf.tif")}
    results = processing.runAndLoadResults("mmlc:classify", params, context=context)
    assert Path(results["OUTPUT"]) == out and out.exists() and out.with_suffix(".qml").exists()
    assert _grid(out) == _grid(spacenet6 / "rgb_unmasked.tif")
    values = set(np.unique(gdal.Open(str(out)).ReadAsArray()).tolist())
    assert values <= {0, 1, 2, 5} and values & {1, 2, 5}
    layers = [lyr for lyr in QgsProject.instance().mapLayers().values()
              if isinstance(lyr, QgsRasterLayer) and Path(lyr.source()) == out]
    assert layers, "the class raster was not loaded"
    renderer = layers[0].renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    got = {(c.value, c.label, c.color.name()) for c in renderer.classes()}
    assert got == {(c.value, c.name, c.color) for c in CLASSES3}
    QgsProject.instance().removeAllMapLayers()


def test_temporary_outputs_load_stacked_and_polygons_styled_on_their_field(provider, layer_tree_view, tmp_path: Path,
                                                                          copies: dict) -> None:
    """With temporary outputs (random paths: QGIS 3.22 loads them in path order) the class map
    ends up above the confidence, the polygons above both, and the polygons' categorised
    renderer uses a field the GeoPackage has."""
    from qgis import processing
    from qgis.core import QgsCategorizedSymbolRenderer, QgsVectorLayer

    spacenet6 = copies["spacenet6"]
    project = QgsProject.instance()
    project.removeAllMapLayers()
    context = QgsProcessingContext()
    context.setProject(project)
    params = {"MODEL": str(make_dense_model(tmp_path / "m.mmlc")), "INPUT_1": str(spacenet6 / "rgb_unmasked.tif"),
              "INPUT_2": str(spacenet6 / "sar_masked.tif"), "EXTENT": "", "DEVICE": "cpu",
              "OUTPUT": "TEMPORARY_OUTPUT", "OUTPUT_CONFIDENCE": "TEMPORARY_OUTPUT",
              "OUTPUT_VECTOR": "TEMPORARY_OUTPUT"}
    results = processing.runAndLoadResults("mmlc:classify", params, context=context)
    order = [Path(node.layer().source().split("|")[0]) for node in project.layerTreeRoot().findLayers()]
    assert order == [Path(results["OUTPUT_VECTOR"]), Path(results["OUTPUT"]), Path(results["OUTPUT_CONFIDENCE"])]
    polygons = project.layerTreeRoot().findLayers()[0].layer()
    assert isinstance(polygons, QgsVectorLayer)
    renderer = polygons.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer)
    assert polygons.fields().indexOf(renderer.classAttribute()) >= 0
    drawn = {f[renderer.classAttribute()] for f in polygons.getFeatures()}
    assert drawn and drawn <= {c.value() for c in renderer.categories()}
    project.removeAllMapLayers()


def test_classify_inside_a_memory_polygon_layer(provider, tmp_path: Path, copies: dict) -> None:
    """MASK takes any polygon layer, here an unsaved memory layer in WGS 84 over UTM rasters:
    the output is cut to its extent and only pixels inside are classified."""
    from qgis import processing
    from qgis.core import (
        QgsCoordinateReferenceSystem,
        QgsCoordinateTransform,
        QgsFeature,
        QgsGeometry,
        QgsPointXY,
        QgsVectorLayer,
    )

    spacenet6 = copies["spacenet6"]
    rgb = spacenet6 / "rgb_unmasked.tif"
    gt, w, h, wkt = _grid(rgb)
    px = [(60.7, 40.7), (170.6, 40.7), (170.6, 150.8), (60.7, 150.8)]  # (row, col): a rectangle
    utm = QgsCoordinateReferenceSystem.fromWkt(wkt)
    wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
    to_wgs = QgsCoordinateTransform(utm, wgs84, QgsProject.instance())
    ring = [to_wgs.transform(QgsPointXY(gt[0] + c * gt[1], gt[3] + r * gt[5])) for r, c in px]
    layer = QgsVectorLayer("Polygon?crs=EPSG:4326", "area", "memory")
    feat = QgsFeature()
    feat.setGeometry(QgsGeometry.fromPolygonXY([ring]))
    assert layer.dataProvider().addFeatures([feat])
    out = tmp_path / "masked.tif"
    processing.run("mmlc:classify", {"MODEL": str(make_dense_model(tmp_path / "m.mmlc")), "INPUT_1": str(rgb),
                                     "INPUT_2": str(spacenet6 / "sar_masked.tif"), "MASK": layer,
                                     "DEVICE": "cpu", "OUTPUT": str(out)})
    ds = gdal.Open(str(out))
    assert (ds.RasterYSize, ds.RasterXSize) == (171 - 60, 151 - 40)
    assert ds.GetGeoTransform()[0] == pytest.approx(gt[0] + 40 * gt[1], abs=1e-6)
    a = ds.ReadAsArray()
    # centres of rows 60 and col 40 lie outside the rectangle (60.5 < 60.7, 40.5 < 40.7), all others inside
    inside = np.zeros(a.shape, bool)
    inside[1:, 1:] = True
    sar_nan = np.isnan(gdal.Open(str(spacenet6 / "sar_masked.tif")).ReadAsArray()[:, 60:171, 40:151]).any(axis=0)
    assert np.array_equal(a > 0, inside & ~sar_nan)


class _CancelAfterProgress(QgsProcessingFeedback):
    def setProgress(self, progress: float) -> None:  # noqa: N802
        super().setProgress(progress)
        if progress > 0:
            self.cancel()


def test_cancel_mid_run_leaves_no_output(provider, tmp_path: Path, copies: dict) -> None:
    spacenet6 = copies["spacenet6"]
    from qgis import processing

    model = make_dense_model(tmp_path / "m.mmlc", tile=32, overlap=8)
    out = tmp_path / "cancelled.tif"
    with pytest.raises(QgsProcessingException):
        processing.run("mmlc:classify", {"MODEL": str(model), "INPUT_1": str(spacenet6 / "rgb_unmasked.tif"),
                                         "INPUT_2": str(spacenet6 / "sar_masked.tif"), "BATCH_SIZE": 1,
                                         "DEVICE": "cpu", "OUTPUT": str(out)}, feedback=_CancelAfterProgress())
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name not in ("m.mmlc",)]


@pytest.mark.parametrize("case", ["missing_second_input", "wrong_band_count", "unknown_model"])
def test_bad_inputs_give_their_message(provider, tmp_path: Path, copies: dict, case: str) -> None:
    spacenet6, bigearthnet = copies["spacenet6"], copies["bigearthnet"]
    from qgis import processing

    model = make_dense_model(tmp_path / "m.mmlc")
    params = {"MODEL": str(model), "INPUT_1": str(spacenet6 / "rgb_unmasked.tif"),
              "INPUT_2": str(spacenet6 / "sar_masked.tif"), "DEVICE": "cpu", "OUTPUT": str(tmp_path / "o.tif")}
    expected = {"missing_second_input": "sar", "wrong_band_count": "band", "unknown_model": "built-in"}[case]
    if case == "missing_second_input":
        del params["INPUT_2"]
    elif case == "wrong_band_count":
        params["INPUT_1"] = str(sorted(bigearthnet.glob("*__s2_10band_10m.tif"))[0])
        params["INPUT_2"] = str(sorted(bigearthnet.glob("*__s1_vv_vh_db.tif"))[0])
    else:
        params["MODEL"] = "no-such-model"
    with pytest.raises(QgsProcessingException) as err:
        processing.run("mmlc:classify", params)
    assert expected in str(err.value).lower()
    assert not (tmp_path / "o.tif").exists()


def test_evaluate_returns_metrics(provider, tmp_path: Path, copies: dict) -> None:
    nc_landsat = copies["nc_landsat"]
    from qgis import processing

    labels = nc_landsat / "landsat96_labelled_pixels.tif"
    res = processing.run("mmlc:evaluate", {"PREDICTION": str(labels), "REFERENCE": str(labels),
                                           "OUTPUT_TABLE": str(tmp_path / "cm.csv"),
                                           "OUTPUT_REPORT": str(tmp_path / "r.html")})
    assert res["OA"] == pytest.approx(1.0) and res["KAPPA"] == pytest.approx(1.0)
    assert (tmp_path / "cm.csv").exists() and (tmp_path / "r.html").exists()


@pytest.mark.parametrize("how", ["REFERENCE_VECTOR", "REFERENCE"])
def test_evaluate_against_points_in_either_parameter(provider, tmp_path: Path, copies: dict, how: str) -> None:
    """Vector references go in REFERENCE_VECTOR (with LABEL_FIELD); a vector in REFERENCE (the former
    single raster-or-vector parameter) still works for older scripts. The class raster is the
    points' own rasterisation, so every point agrees."""
    from qgis import processing

    nc = copies["nc_landsat"]
    res = processing.run("mmlc:evaluate", {"PREDICTION": str(nc / "landsat96_labelled_pixels.tif"),
                                           how: str(nc / "landsat96_points.shp"), "LABEL_FIELD": "id"})
    assert res["OA"] > 0.9


@pytest.mark.parametrize("alg_id", ["mmlc:train", "mmlc:distill", "mmlc:evaluate"])
def test_label_parameters_are_checked_before_running(provider, copies: dict, alg_id: str) -> None:
    """No field widget is parented on a parameter that accepts rasters (QGIS 3.22 crashes), and the
    raster/vector choice is checked up front with a message that says what to do."""
    from qgis.core import QgsProcessingParameterField, QgsProcessingParameterVectorLayer

    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    for p in alg.parameterDefinitions():
        if isinstance(p, QgsProcessingParameterField):
            assert isinstance(alg.parameterDefinition(p.parentLayerParameterName()), QgsProcessingParameterVectorLayer)
    raster_id = "REFERENCE" if alg_id == "mmlc:evaluate" else "LABELS"
    nc = copies["nc_landsat"]
    context = QgsProcessingContext()
    both = {raster_id: str(nc / "landsat96_labelled_pixels.tif"), f"{raster_id}_VECTOR": str(nc / "landsat96_points.shp"),
            "LABEL_FIELD": "id"}
    ok, msg = alg.checkParameterValues(both, context)
    assert not ok and "not both" in msg
    ok, msg = alg.checkParameterValues({f"{raster_id}_VECTOR": str(nc / "landsat96_points.shp")}, context)
    assert not ok and "class field" in msg
    ok, msg = alg.checkParameterValues({}, context)
    assert not ok and "class raster" in msg


def _real_sar_model(path: Path) -> Path:
    """An untrained but real registry network (HFD-Net, SAR VV/VH) saved as a model file."""
    import torch
    from mmlc.core.modelfiles.modelfile import ModalityCard, ModelCard, save_model_file
    from mmlc.models import build_model

    torch.manual_seed(0)
    kwargs = {"num_classes": 3, "in_channels": 2, "encoder": "resnet18", "channels": 32}
    net = build_model("hfdnet", **kwargs)
    card = ModelCard("hfdnet", kwargs, "dense", [ModalityCard("sar", 2, mean=[-12.0, -18.0], std=[4.0, 4.0])],
                     list(CLASSES3), variant="resnet18", tile_size=128, overlap=16)
    return save_model_file(path, card, net.state_dict())


def test_qgis_process_help_and_run(provider, tmp_path: Path, copies: dict) -> None:
    bigearthnet = copies["bigearthnet"]
    from mmlc.tools.qgis_env import enable_plugin, qgis_process_binary, run_algorithm

    profile = tmp_path / "profile"
    env = enable_plugin(profile)
    help_out = subprocess.run([qgis_process_binary(), "help", "mmlc:classify"], env=env, capture_output=True,
                              text=True, timeout=300)
    assert help_out.returncode == 0 and "INPUT_1" in help_out.stdout and "built-in" in help_out.stdout
    model = _real_sar_model(tmp_path / "sar.mmlc")
    sar = sorted(bigearthnet.glob("*__s1_vv_vh_db.tif"))[0]
    out = tmp_path / "qp.tif"
    res = run_algorithm("mmlc:classify", {"MODEL": str(model), "INPUT_1": str(sar), "DEVICE": "cpu",
                                          "OUTPUT": str(out)}, profile, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert _grid(out) == _grid(sar)
    qml = out.with_suffix(".qml").read_text()
    assert "paletted" in qml and all(c.name in qml for c in CLASSES3)
    ds = gdal.Open(str(out))
    assert ds.GetRasterBand(1).GetColorTable() is not None
    assert ds.GetRasterBand(1).GetCategoryNames()


def test_graphical_modeler_chain_train_classify_evaluate(provider, tmp_path: Path, copies: dict,
                                                          repo_root: Path) -> None:
    """The shipped .model3 (train -> classify -> evaluate) runs and returns its outputs."""
    import csv

    from qgis import processing
    from qgis.core import QgsProcessingModelAlgorithm

    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(repo_root / "resources" / "modeler" / "mmlc_train_classify_evaluate.model3"))
    valid, issues = model.validate()  # every child parameter has a source (what the Modeler checks)
    assert valid, issues
    xs = [model.childAlgorithm(c).position().x() for c in ("train", "classify", "evaluate")]
    assert xs == sorted(xs) and len(set(xs)) == 3  # laid out left to right, not stacked
    assert model.parameterDefinition("ARCHITECTURE").defaultValue() == "asanet"
    assert model.parameterDefinition("CLASSES") is not None
    ben = copies["bigearthnet"]
    pair = "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48"
    lc, cm = tmp_path / "lc.tif", tmp_path / "cm.csv"
    res = processing.run(model, {"ARCHITECTURE": "hfdnet", "INPUT_1": str(ben / f"{pair}__s1_vv_vh_db.tif"),
                                 "LABELS": str(ben / f"{pair}__weak_label_s2rules.tif"), "EPOCHS": 1,
                                 "classify:Land cover": str(lc), "evaluate:Confusion matrix": str(cm)})
    assert lc.exists() and cm.exists(), res
    metrics = res["CHILD_RESULTS"]["evaluate"]  # the chain's OA/AA/KAPPA/MIOU
    assert 0.0 <= metrics["OA"] <= 1.0 and -1.0 <= metrics["KAPPA"] <= 1.0 and 0.0 <= metrics["MIOU"] <= 1.0
    rows = list(csv.reader(cm.open()))
    assert len(rows) >= 3  # header + one row per class present
    counts = [int(v) for r in rows[1:] for v in r[1:] if v.strip().lstrip("-").isdigit()]
    assert sum(counts) > 0


def test_train_from_a_scene_table(provider, tmp_path: Path, copies: dict) -> None:
    """mmlc:train with SCENES (two scenes, one of them in another CRS) and no single-scene inputs:
    one model; SCENES together with INPUT_1 is refused before any training."""
    from mmlc.core.modelfiles.modelfile import load_model_file
    from qgis import processing
    from qgis.core import QgsProcessingContext, QgsProcessingException

    ben = copies["bigearthnet"]
    pairs = ["S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48", "S1A_IW_GRDH_1SDV_20180204T043253_35VPK_57_38"]
    table = tmp_path / "scenes.csv"
    table.write_text("name,input_1,labels\n" + "".join(
        f"s{i},{ben / f'{p}__s1_vv_vh_db.tif'},{ben / f'{p}__weak_label_s2rules.tif'}\n" for i, p in enumerate(pairs)))
    alg = QgsApplication.processingRegistry().algorithmById("mmlc:train")
    both = {"ARCHITECTURE": "hfdnet", "SCENES": str(table), "INPUT_1": str(ben / f"{pairs[0]}__s1_vv_vh_db.tif"),
            "OUTPUT_MODEL": str(tmp_path / "x.mmlc")}
    ok, msg = alg.checkParameterValues(both, QgsProcessingContext())
    assert not ok and "not both" in msg
    ok, msg = alg.checkParameterValues({"ARCHITECTURE": "hfdnet", "OUTPUT_MODEL": str(tmp_path / "x.mmlc")},
                                       QgsProcessingContext())
    assert not ok and "SCENES" in msg
    out = tmp_path / "table.mmlc"
    res = processing.run("mmlc:train", {"ARCHITECTURE": "hfdnet", "VARIANT": "resnet18", "SCENES": str(table),
                                        "EPOCHS": 1, "TILE_SIZE": 32, "DEVICE": "cpu", "OUTPUT_MODEL": str(out),
                                        "OUTPUT_REPORT": ""})
    assert res["OUTPUT_MODEL"] == str(out)
    card, _ = load_model_file(out)
    assert len(card.provenance["inputs"]) == 4 and card.modalities[0].bands == 2
    bad = tmp_path / "bad.csv"
    bad.write_text(table.read_text() + f"s2,{ben / f'{pairs[0]}__s2_10band_10m.tif'},"
                   f"{ben / f'{pairs[0]}__weak_label_s2rules.tif'}\n")
    with pytest.raises(QgsProcessingException, match=r"row 3 \(s2\)"):
        processing.run("mmlc:train", {"ARCHITECTURE": "hfdnet", "SCENES": str(bad), "EPOCHS": 1, "DEVICE": "cpu",
                                      "OUTPUT_MODEL": str(tmp_path / "bad.mmlc")})


def test_an_empty_optional_widget_is_not_a_given_scene_table(provider, copies: dict) -> None:
    """A dialog passes NULL for an empty optional file widget: a single scene with SCENES = NULL is
    accepted (the desktop refused it as 'not both' when NULL counted as given)."""
    from mmlc.ui.algorithms.scene_param import check_scene_source
    from qgis.core import NULL

    nc = copies["nc_landsat"]
    single = {"INPUT_1": str(nc / "landsat96_6band.tif"), "LABELS": str(nc / "landsat96_labelled_pixels.tif"),
              "SCENES": NULL}
    ok, msg, _ = check_scene_source(single, QgsProcessingContext(), ("INPUT_1", "INPUT_2"))
    assert ok, msg
    ok, msg, _ = check_scene_source({**single, "SCENES": "scenes.csv"}, QgsProcessingContext(), ("INPUT_1", "INPUT_2"))
    assert not ok and "not both" in msg
