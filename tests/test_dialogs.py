"""Dialogs that guide and results an analyst reads (issue 16, items 3 and 4), in a real QGIS:
Advanced flags, help, the DEVICE/VARIANT dropdowns and their plain-string values, the model
chooser and its info panel, the band check before running, the class area table, Help as HTML."""
from __future__ import annotations

import csv
import inspect
import shutil
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import (
    NULL,
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
)
from test_inference import CLASSES3, make_dense_model

ADVANCED = {
    "mmlc:classify": {"TILE_SIZE", "OVERLAP", "BATCH_SIZE", "DEVICE"},
    "mmlc:train": {"VARIANT", "BATCH_SIZE", "LEARNING_RATE", "TILE_SIZE", "VALIDATION_FRACTION", "REFIT_EPOCHS",
                   "INIT_MODEL", "DEVICE"},
    "mmlc:distill": {"BATCH_SIZE", "LEARNING_RATE", "TEMPERATURE", "FEATURE_WEIGHT", "KD_WEIGHT", "DEVICE"},
    "mmlc:evaluate": set(),
}
PAIR = "S1A_IW_GRDH_1SDV_20170617T064724_29UPU_36_85"


@pytest.fixture(scope="module")
def ben(tmp_path_factory, bigearthnet: Path) -> dict[str, Path]:
    """Copies of the Irish pair (QGIS writes .aux.xml beside rasters it opens)."""
    root = tmp_path_factory.mktemp("ben")
    return {k: Path(shutil.copy(bigearthnet / f"{PAIR}__{k}.tif", root)) for k in ("s2_10band_10m", "s1_vv_vh_db",
                                                                               "weak_label_s2rules")}


def _alg(alg_id: str):
    return QgsApplication.processingRegistry().createAlgorithmById(alg_id)


# --- parameters -------------------------------------------------------------------------------
@pytest.mark.parametrize("alg_id", sorted(ADVANCED))
def test_advanced_flags_and_help(provider, alg_id: str) -> None:
    from mmlc.ui.algorithms.common_params import is_advanced

    alg = _alg(alg_id)
    params = alg.parameterDefinitions()
    assert {p.name() for p in params if is_advanced(p)} == ADVANCED[alg_id]
    for p in params:  # every advanced parameter says what it does
        if is_advanced(p):
            assert len(p.help()) > 30, p.name()
    assert alg.helpUrl().startswith("file://") and alg.helpUrl().endswith(f"/docs/html/{alg.name()}.html")


def test_help_pages_are_rendered_html_and_up_to_date(repo_root: Path) -> None:
    from mmlc.tools.docs_html import render, title_of

    for md in sorted((repo_root / "docs").glob("*.md")):
        page = repo_root / "docs" / "html" / f"{md.stem}.html"
        text = md.read_text(encoding="utf-8")
        assert page.read_text(encoding="utf-8") == render(text, title_of(text, md.stem)), \
            f"{page} is stale: run python -m mmlc.tools.docs_html"
    classify = (repo_root / "docs" / "html" / "classify.html").read_text(encoding="utf-8")
    assert "<table>" in classify and "<td><code>MODEL</code></td>" in classify and "| id |" not in classify


@pytest.mark.parametrize("alg_id", ["mmlc:classify", "mmlc:train", "mmlc:distill"])
def test_device_is_a_dropdown_of_device_strings(provider, alg_id: str) -> None:
    from qgis.core import QgsProcessingParameterEnum

    alg = _alg(alg_id)  # kept: its parameter definitions die with it
    device = alg.parameterDefinition("DEVICE")
    assert isinstance(device, QgsProcessingParameterEnum) and device.usesStaticStrings()
    assert device.options()[:2] == ["auto", "cpu"] and device.defaultValue() == "auto"
    assert all(o in ("auto", "cpu", "cuda", "mps") or o.startswith("cuda:") for o in device.options())
    for old in ("auto", "cpu"):  # values of older scripts, models and qgis_process calls
        assert device.checkValueIsAcceptable(old)
    assert not device.checkValueIsAcceptable("tpu")
    labels = device.metadata()["widget_wrapper"]["labels"]
    assert labels["cpu"] == "cpu" and "auto" in labels["auto"]


def test_device_choices_never_import_torch_for_missing_or_cpu_builds(monkeypatch, tmp_path: Path) -> None:
    import importlib.util
    import sys
    import types

    from mmlc.ui import devices

    assert devices._cpu_only_build() is True  # this machine's torch is a CPU build (torch/version.py)
    probed = []
    monkeypatch.setattr(devices, "probe_torch", lambda: probed.append(1) or [("cuda:0", "cuda:0: Fake GPU")])
    monkeypatch.delitem(sys.modules, "torch")  # as in a QGIS that has not imported torch yet
    assert devices.device_choices(refresh=True) == devices.BASE_CHOICES and not probed
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # torch missing
    assert devices.device_choices(refresh=True) == devices.BASE_CHOICES and not probed
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "version.py").write_text("__version__ = '2.13.0+cu128'\ncuda: Optional[str] = '12.8'\nhip = None\n")
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: types.SimpleNamespace(origin=str(fake / "__init__.py")))
    assert devices.device_choices(refresh=True)[-1] == ("cuda:0", "cuda:0: Fake GPU") and probed
    devices.device_choices(refresh=True)  # leave the cache as the machine really is
    monkeypatch.undo()
    devices.device_choices(refresh=True)


def test_variant_dropdown_matches_the_registry(provider) -> None:
    from mmlc.core.fitting.network import variant_kwarg
    from mmlc.models.registry import get_spec
    from mmlc.ui.algorithms.train import ARCHITECTURES, VARIANTS

    for arch in ARCHITECTURES:
        spec = get_spec(arch)
        assert sorted(VARIANTS[arch]) == sorted(spec.variants), arch
        if spec.variants:  # the first listed is the builder's default
            default = inspect.signature(spec.builder).parameters[variant_kwarg(spec)].default
            assert VARIANTS[arch][0] == default, arch
    train = _alg("mmlc:train")
    variant = train.parameterDefinition("VARIANT")
    assert variant.usesStaticStrings() and "convnextv2_atto" in variant.options()
    assert variant.checkValueIsAcceptable("xian") and variant.checkValueIsAcceptable(None)
    assert not variant.checkValueIsAcceptable("resnet101")


def test_train_refuses_a_variant_of_another_architecture(provider, ben: dict[str, Path], tmp_path: Path) -> None:
    alg = _alg("mmlc:train")
    context = QgsProcessingContext()
    params = {"ARCHITECTURE": "das2f", "VARIANT": "resnet18", "INPUT_1": str(ben["s2_10band_10m"]),
              "LABELS": str(ben["weak_label_s2rules"]), "OUTPUT_MODEL": str(tmp_path / "m.mmlc")}
    ok, message = alg.checkParameterValues(params, context)
    assert not ok and message == "Variant resnet18 is not a das2f variant; das2f variants: nanjing, xian"
    ok, message = alg.checkParameterValues({**params, "VARIANT": "xian"}, context)
    assert ok, message
    ok, message = alg.checkParameterValues({**params, "ARCHITECTURE": "prsanet", "VARIANT": "xian"}, context)
    assert not ok and "none (leave Variant empty)" in message


def test_learning_rate_and_refit_are_empty_by_default_and_zero_still_means_the_recipe(provider) -> None:
    from mmlc.ui.algorithms.common_params import learning_rate, optional_int

    for alg_id in ("mmlc:train", "mmlc:distill"):
        alg = _alg(alg_id)
        lr = alg.parameterDefinition("LEARNING_RATE")
        assert lr.defaultValue() is None and lr.flags() & lr.FlagOptional
        assert lr.checkValueIsAcceptable(0.0) and lr.checkValueIsAcceptable(None)
        context = QgsProcessingContext()
        assert learning_rate(alg, {}, context) is None
        assert learning_rate(alg, {"LEARNING_RATE": 0.0}, context) is None
        assert learning_rate(alg, {"LEARNING_RATE": 0.0004}, context) == pytest.approx(4e-4)
    train = _alg("mmlc:train")
    report = train.parameterDefinition("OUTPUT_REPORT")
    refit = train.parameterDefinition("REFIT_EPOCHS")  # empty = the network's recipe, 0 = off
    assert refit.defaultValue() is None and refit.flags() & refit.FlagOptional and refit.minimum() == 0
    assert not refit.checkValueIsAcceptable(-1)
    context = QgsProcessingContext()
    assert [optional_int(train, p, "REFIT_EPOCHS", context) for p in
            ({}, {"REFIT_EPOCHS": None}, {"REFIT_EPOCHS": NULL}, {"REFIT_EPOCHS": 0}, {"REFIT_EPOCHS": 30})
            ] == [None, None, None, 0, 30]
    assert learning_rate(train, {"LEARNING_RATE": NULL}, context) is None
    assert report.createByDefault()  # the training report is on in the dialog


# --- classify: areas, band check, old values -------------------------------------------------
class LogFeedback(QgsProcessingFeedback):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.fractions: list[float] = []
        self.progressChanged.connect(self.fractions.append)

    def pushInfo(self, info: str) -> None:  # noqa: N802
        self.lines.append(info)

    def pushCommandInfo(self, info: str) -> None:  # noqa: N802
        self.lines.append(info)


def test_classify_writes_the_area_table_to_the_log_and_a_csv(provider, tmp_path: Path, spacenet6: Path) -> None:
    from qgis import processing

    rgb = Path(shutil.copy(spacenet6 / "rgb_unmasked.tif", tmp_path))
    sar = Path(shutil.copy(spacenet6 / "sar_masked.tif", tmp_path))
    model = make_dense_model(tmp_path / "m.mmlc")
    feedback = LogFeedback()
    res = processing.run("mmlc:classify", {
        "MODEL": str(model), "INPUT_1": str(rgb), "INPUT_2": str(sar), "TILE_SIZE": 64, "OVERLAP": 16,
        "BATCH_SIZE": 1, "DEVICE": "cpu", "OUTPUT": str(tmp_path / "lc.tif"),
        "OUTPUT_AREAS": str(tmp_path / "areas.csv")}, feedback=feedback)
    assert Path(res["OUTPUT_AREAS"]) == tmp_path / "areas.csv"
    values = gdal.Open(res["OUTPUT"]).ReadAsArray()
    gt = gdal.Open(res["OUTPUT"]).GetGeoTransform()
    pixel_ha = abs(gt[1] * gt[5]) / 1e4
    rows = list(csv.DictReader((tmp_path / "areas.csv").open(encoding="utf-8")))
    assert [int(r["value"]) for r in rows] == [c.value for c in CLASSES3]
    valid = int((values > 0).sum())
    for r in rows:
        n = int((values == int(r["value"])).sum())
        assert int(r["pixels"]) == n
        assert float(r["hectares"]) == pytest.approx(n * pixel_ha, abs=1e-6)
        assert float(r["share_percent"]) == pytest.approx(100 * n / valid, abs=1e-3)
    log = "\n".join(feedback.lines)
    assert "Class areas:" in log and "hectares" in log and "total" in log
    assert f"{valid:,}" in log  # the classified pixel count, in the table's total row
    # progress moved per tile: 16 tiles of 64 px with overlap 16 on 200 x 200
    moving = sorted({f for f in feedback.fractions if 0 < f < 100})
    assert len(moving) >= 10 and feedback.fractions == sorted(feedback.fractions)


def test_classify_reports_a_wrong_band_count_before_running(provider, ben: dict[str, Path], tmp_path: Path) -> None:
    from qgis import processing

    alg = _alg("mmlc:classify")
    context = QgsProcessingContext()
    sar, s2 = str(ben["s1_vv_vh_db"]), str(ben["s2_10band_10m"])
    ok, message = alg.checkParameterValues({"MODEL": "asanet-demo", "INPUT_1": sar, "INPUT_2": sar,
                                            "OUTPUT": str(tmp_path / "o.tif")}, context)
    assert not ok and "Input 1 has 2 bands" in message and "needs 10 (B02, B03" in message
    ok, message = alg.checkParameterValues({"MODEL": "hfdnet-demo", "INPUT_1": sar, "INPUT_2": s2,
                                            "OUTPUT": str(tmp_path / "o.tif")}, context)
    assert not ok and "takes 1 input" in message
    ok, message = alg.checkParameterValues({"MODEL": "asanet-demo", "INPUT_1": s2, "INPUT_2": sar,
                                            "OUTPUT": str(tmp_path / "o.tif")}, context)
    assert ok, message
    with pytest.raises(QgsProcessingException, match="needs 10"):
        processing.run("mmlc:classify", {"MODEL": "asanet-demo", "INPUT_1": sar, "INPUT_2": sar,
                                         "OUTPUT": str(tmp_path / "o.tif")})
    assert not (tmp_path / "o.tif").exists()


def test_old_string_values_still_run(provider, tmp_path: Path, spacenet6: Path) -> None:
    """MODEL as a path string, DEVICE "cpu", no OVERLAP/LEARNING_RATE: what older scripts pass."""
    from qgis import processing

    model = make_dense_model(tmp_path / "m.mmlc")
    res = processing.run("mmlc:classify", {
        "MODEL": str(model), "INPUT_1": str(Path(shutil.copy(spacenet6 / "rgb_unmasked.tif", tmp_path))),
        "INPUT_2": str(Path(shutil.copy(spacenet6 / "sar_masked.tif", tmp_path))), "TILE_SIZE": 0,
        "BATCH_SIZE": 2, "DEVICE": "cpu", "OUTPUT": str(tmp_path / "lc.tif")})
    assert set(np.unique(gdal.Open(res["OUTPUT"]).ReadAsArray()).tolist()) <= {0, 1, 2, 5}
    assert "OUTPUT_AREAS" not in res


# --- the dialog -------------------------------------------------------------------------------
@pytest.fixture
def dialog_env(provider, qgis_iface, monkeypatch, ben: dict[str, Path]):
    from qgis.gui import QgsBrowserGuiModel

    browser = QgsBrowserGuiModel()
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser, raising=False)
    s2 = QgsRasterLayer(str(ben["s2_10band_10m"]), "S2")
    s1 = QgsRasterLayer(str(ben["s1_vv_vh_db"]), "S1")
    QgsProject.instance().addMapLayers([s2, s1])  # the SAR is the top layer
    yield qgis_iface, s2, s1
    QgsProject.instance().removeAllMapLayers()


def test_classify_dialog_chooser_panel_and_band_check(dialog_env) -> None:
    from mmlc.ui.widgets.model_chooser import ModelChooserWrapper
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.PyQt.QtWidgets import QLabel

    iface, s2, s1 = dialog_env
    dialog = AlgorithmDialog(_alg("mmlc:classify"), False, iface.mainWindow())
    try:
        wrappers = dialog.mainWidget().wrappers
        model = wrappers["MODEL"]
        assert isinstance(model, ModelChooserWrapper)
        combo = model.widget.combo
        assert [combo.itemData(i) for i in range(combo.count())] == ["asanet-demo", "das2f-demo", "hfdnet-demo",
                                                                     "prsanet-demo"]
        assert model.parameterValue() == "asanet-demo"
        assert wrappers["INPUT_1"].parameterValue() is None  # not the SAR on top of the project
        info = dialog.findChild(QLabel, "mmlcModelInfo").text()
        for needle in ("convnextv2_atto", "B02, B03, B04", "VV_dB, VH_dB", "UInt16", "10 m pixels", "water",
                       "#1f78b4", "NOT ground truth", "OA 0.81"):
            assert needle in info, needle
        status = dialog.findChild(QLabel, "mmlcBandCheck")
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        wrappers["INPUT_1"].setParameterValue(s1.id(), context)
        assert "Input 1 has 2 bands" in status.text() and model.bar_item is not None
        wrappers["INPUT_1"].setParameterValue(s2.id(), context)
        wrappers["INPUT_2"].setParameterValue(s1.id(), context)
        assert status.text() == "The inputs' band counts fit this model." and model.bar_item is None
        model.setValue("hfdnet-demo")  # one SAR input: now Input 1 is wrong and Input 2 superfluous
        assert "Input 1 has 10 bands but the model's sar input needs 2 (VV_dB, VH_dB)" in status.text()
        assert "takes 1 input" in status.text()
        model.setValue("/no/such/model.mmlc")
        assert "does not exist" in dialog.findChild(QLabel, "mmlcModelInfo").text()
        assert model.parameterValue() == "/no/such/model.mmlc"
    finally:
        dialog.close()


def test_train_dialog_variant_follows_the_architecture(provider, qgis_iface, monkeypatch) -> None:
    from mmlc.ui.widgets.choice import VariantChoiceWrapper
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.gui import QgsBrowserGuiModel

    browser = QgsBrowserGuiModel()
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser, raising=False)
    dialog = AlgorithmDialog(_alg("mmlc:train"), False, qgis_iface.mainWindow())
    try:
        wrappers = dialog.mainWidget().wrappers
        variant = wrappers["VARIANT"]
        assert isinstance(variant, VariantChoiceWrapper)
        combo = variant.widget

        def offered() -> list:
            return [combo.itemData(i) for i in range(combo.count())]

        assert offered()[0] is None and "convnextv2_atto" in offered() and "xian" not in offered()
        context = QgsProcessingContext()
        wrappers["ARCHITECTURE"].setParameterValue("das2f", context)
        assert offered() == [None, "nanjing", "xian"]
        variant.setValue("xian")
        assert variant.parameterValue() == "xian"
        wrappers["ARCHITECTURE"].setParameterValue("prsanet", context)
        assert offered() == [None] and variant.parameterValue() is None
        device = wrappers["DEVICE"]
        assert device.parameterValue() == "auto" and device.widget.itemText(1) == "cpu"
    finally:
        dialog.close()


def test_modeler_and_batch_get_qgis_own_widgets(provider) -> None:
    """Outside the standard dialog the wrappers step aside: the Modeler can still feed MODEL from
    a model input or Train's output, and the batch dialog keeps its per-row widgets."""
    from mmlc.ui.widgets.model_chooser import ModelChooserWrapper
    from qgis.core import QgsProcessingModelAlgorithm
    from qgis.gui import QgsProcessingModelerParameterWidget

    alg = _alg("mmlc:classify")
    param = alg.parameterDefinition("MODEL")
    from qgis.PyQt.QtWidgets import QDialog

    modeler = type("ModelerParametersDialog", (QDialog,), {})()  # what Processing checks is the class name
    modeler.model, modeler.childId, modeler.context = QgsProcessingModelAlgorithm(), "mmlc:classify_1", \
        QgsProcessingContext()
    got = ModelChooserWrapper(param, modeler)
    assert isinstance(got, QgsProcessingModelerParameterWidget)
    batch = type("BatchAlgorithmDialog", (QDialog,), {})()
    got = ModelChooserWrapper(param, batch)
    assert not isinstance(got, ModelChooserWrapper) and got.parameterDefinition().name() == "MODEL"
