"""What the analyst sees in the real QGIS desktop (one run, see conftest.py and qgis_driver.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

RUN_CASES = ["train-raster-labels", "train-vector-labels", "distill-raster-labels", "classify",
             "evaluate-raster-reference", "evaluate-vector-reference", "modeler-run"]


def _case(desktop, name: str) -> dict:
    case = desktop.results.get("cases", {}).get(name)
    assert case is not None, f"the driver never reached {name}: {desktop.results.get('errors')}\n{desktop.stderr}"
    return case


def test_qgis_survives_every_dialog(desktop) -> None:
    """The desktop exits normally (no SIGSEGV) after every dialog, the driver got to the end."""
    assert desktop.returncode == 0, f"QGIS exit status {desktop.returncode}\n{desktop.stderr}"
    assert desktop.results["finished"], desktop.results.get("errors")
    assert not desktop.results["errors"], desktop.results["errors"]
    assert desktop.results["provider"]
    assert set(desktop.results["algorithms"]) == {"mmlc:classify", "mmlc:train", "mmlc:distill", "mmlc:evaluate"}


def test_no_dialog_scrolls_sideways_at_its_default_size(desktop) -> None:
    """Every algorithm dialog fits its parameters in its default width (a long label, e.g. a new
    parameter's, pushes a sideways scroll bar in)."""
    scrolls = {n: c.get("default_size") for n, c in desktop.results["cases"].items() if c.get("horizontal_scroll")}
    assert not scrolls, f"dialogs scrolling sideways at their default size: {scrolls}"


@pytest.mark.parametrize("name", RUN_CASES)
def test_dialog_runs_from_its_run_button(desktop, name: str) -> None:
    case = _case(desktop, name)
    assert case["check"][0], case["check"]
    assert case.get("success"), case.get("log", "")[-3000:]
    assert (desktop.out / case.get("log_png", "modeler-run-log.png")).exists()


@pytest.mark.parametrize("name", ["train-raster-labels", "train-vector-labels", "distill-raster-labels"])
def test_training_dialogs_write_their_model(desktop, name: str) -> None:
    case = _case(desktop, name)
    model = Path(case["results"]["OUTPUT_MODEL"])
    assert model.exists() and model.stat().st_size > 10_000


def test_refit_is_an_advanced_parameter_left_to_the_network_by_default(desktop) -> None:
    """The train dialog's Advanced section offers the refit, empty by default; the dialog passes it
    on empty (the network's default), and hfdnet on the sample's few labels then refits (issue 21)."""
    case = _case(desktop, "train-vector-labels")
    assert any(label.startswith("Refit epochs (empty = default") for label in case["advanced_labels"]), case["advanced_labels"]
    assert "Not set" in case["advanced_spins"], case["advanced_spins"]
    assert case["parameters"]["REFIT_EPOCHS"] == "None"
    assert "refit: a fresh network on all" in case["log"]


def test_label_kinds_are_checked_in_the_dialog(desktop) -> None:
    both = _case(desktop, "train-both-labels")
    assert both["check"][0] is False and "not both" in both["check"][1]
    points = _case(desktop, "distill-vector-labels")  # points with their class field: accepted
    assert points["check"] == [True, ""] or points["check"][0] is True


def _loaded(desktop) -> dict[str, dict]:
    case = _case(desktop, "classify")
    new = set(case["new_layer_ids"])
    by_output = {}
    for layer in case["layer_tree"]:
        if layer["id"] not in new:
            continue
        source = layer["source"].split("|")[0]
        for key in ("OUTPUT", "OUTPUT_CONFIDENCE", "OUTPUT_VECTOR"):
            if Path(source) == Path(case["results"][key]):
                by_output[key] = layer
    return by_output


def test_classify_loads_class_map_above_confidence(desktop) -> None:
    case = _case(desktop, "classify")
    loaded = _loaded(desktop)
    assert set(loaded) == {"OUTPUT", "OUTPUT_CONFIDENCE", "OUTPUT_VECTOR"}, case["layer_tree"]
    order = [layer["id"] for layer in case["layer_tree"]]
    assert order.index(loaded["OUTPUT_VECTOR"]["id"]) < order.index(loaded["OUTPUT"]["id"]) \
        < order.index(loaded["OUTPUT_CONFIDENCE"]["id"])


def test_class_map_draws_its_classes(desktop) -> None:
    """The paletted class raster has the class table's names and colours and those colours are
    what the renderer paints."""
    raster = _loaded(desktop)["OUTPUT"]
    assert raster["renderer"] == "paletted"
    names = {label for _, label, _ in raster["classes"]}
    assert {"dense vegetation", "sparse vegetation / crop", "other (bare / built)"} <= names
    drawn = raster["drawn"]["by_class_colour"]
    assert sum(drawn.values()) > 0.5 * raster["drawn"]["size"], drawn


def test_polygons_draw_on_an_existing_field(desktop) -> None:
    polygons = _loaded(desktop)["OUTPUT_VECTOR"]
    assert polygons["renderer"] == "categorizedSymbol"
    assert polygons["field_exists"], (polygons["field"], polygons["fields"])
    assert polygons["feature_count"] > 0
    drawn = polygons["drawn"]["by_class_colour"]  # fills in class colours cover most of the map
    assert sum(drawn.values()) > 0.5 * polygons["drawn"]["size"], drawn


def test_evaluate_reports_metrics_for_both_reference_kinds(desktop) -> None:
    for name in ("evaluate-raster-reference", "evaluate-vector-reference"):
        results = _case(desktop, name)["results"]
        assert 0.0 <= float(results["OA"]) <= 1.0 and -1.0 <= float(results["KAPPA"]) <= 1.0
    raster = float(_case(desktop, "evaluate-raster-reference")["results"]["OA"])
    points = float(_case(desktop, "evaluate-vector-reference")["results"]["OA"])
    assert abs(raster - points) < 0.15  # the points sample the same labels


def test_modeler_model_validates_is_laid_out_and_runs(desktop) -> None:
    case = _case(desktop, "modeler")
    assert case["loaded"] and case["validate"][0], case["validate"]
    xs = [case["positions"][c][0] for c in ("train", "classify", "evaluate")]
    assert xs == sorted(xs) and len(set(xs)) == 3
    assert case["success"], _case(desktop, "modeler-run").get("log", "")[-3000:]
    assert "evaluate" in case["child_results"] and 0.0 <= float(case["child_results"]["evaluate"]["OA"]) <= 1.0
    land_cover = [layer for layer in case["loaded_layers"] if layer["renderer"] == "paletted"]
    assert land_cover, case["loaded_layers"]
    assert "dense vegetation" in {label for _, label, _ in land_cover[0]["classes"]}  # the class table wired through
    assert sum(land_cover[0]["drawn"]["by_class_colour"].values()) > 0


def test_screenshots_show_something(desktop) -> None:
    """Every screenshot the driver wrote is a real picture (not one flat colour)."""
    from osgeo import gdal

    pngs = sorted(desktop.out.glob("*.png"))
    assert len(pngs) >= 10, [p.name for p in pngs]
    for png in pngs:
        a = gdal.Open(str(png)).ReadAsArray()
        assert a is not None and np.unique(a.reshape(a.shape[0], -1) if a.ndim == 3 else a).size > 8, png.name


def test_first_dialog_loads_pytorch_before_its_run(desktop) -> None:
    """Opening the session's first mmlc dialog started importing torch in the background; its run
    waited for that import instead of importing torch itself after the Run click."""
    warm = desktop.results.get("warmup", {})
    assert warm.get("started") is True and "error" not in warm and warm.get("seconds", 0) > 0, warm
    first = desktop.results["cases"]["train-raster-labels"]
    assert first.get("success") is True, first.get("log", "")[-2000:]
    assert "first run in a QGIS session" not in first.get("log", "")
