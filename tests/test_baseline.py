"""Random-forest baseline (core.assessment.baseline) and its report section, on the NC Landsat labels."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from mmlc.core.assessment.baseline import BaselineResult, forest_baseline, pixel_features
from mmlc.core.assessment.reports import write_training_report
from mmlc.core.data.datasets import Scene, load_scene
from mmlc.core.data.prepare import prepare_data, resolve_classes


@pytest.fixture(scope="module")
def nc_prepared(nc_landsat: Path, tmp_path_factory):
    from osgeo import gdal

    stack = str(tmp_path_factory.mktemp("nc") / "stack.vrt")
    gdal.BuildVRT(stack, [str(nc_landsat / f"lsat7_2000_{b}.tif") for b in (10, 20, 30, 40, 50, 70)],
                  separate=True).FlushCache()
    data = load_scene(Scene([stack], str(nc_landsat / "landsat96_labelled_pixels.tif")), [1])
    classes = resolve_classes([data], None)
    return prepare_data([data], ["optical"], [1], classes=classes, validation_fraction=0.3, seed=0, tile=11,
                        guard=6)


def test_pixel_features_average_finer_inputs_onto_the_grid() -> None:
    coarse = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3)
    fine = np.arange(4 * 6, dtype=np.float32).reshape(1, 4, 6)  # ratio 2: 2 x 3 blocks of 2 x 2
    f = pixel_features([coarse, fine], [1, 2])
    assert f.shape == (2, 3, 3)
    np.testing.assert_array_equal(f[..., 0], coarse[0])
    assert f[0, 0, 2] == pytest.approx(np.mean([0, 1, 6, 7]))
    assert f[1, 2, 2] == pytest.approx(np.mean([16, 17, 22, 23]))


def test_forest_on_nc_labels_is_scored_on_the_validation_pixels(nc_prepared) -> None:
    pytest.importorskip("sklearn")
    res = forest_baseline(nc_prepared.scenes, nc_prepared.classes, seed=0, trees=50)
    assert res.metrics is not None, res.note
    assert res.train_pixels == nc_prepared.n_train
    assert res.metrics.n_pixels == nc_prepared.n_val  # every validation pixel, nothing else
    s = res.metrics.summary()
    # 7 real land-cover classes from 6 Landsat bands: far above chance (1/7), not perfect
    assert 0.5 < s["overall_accuracy"] < 1.0 and 0.3 < s["kappa"] < 1.0
    assert 0.0 < s["miou"] <= s["overall_accuracy"]
    line = res.summary_line()
    assert "OA 0." in line and "kappa" in line


def test_report_shows_forest_beside_the_network(nc_prepared, tmp_path) -> None:
    pytest.importorskip("sklearn")
    from mmlc.core.assessment.metrics import Metrics
    from mmlc.core.modelfiles.modelfile import ModelCard

    res = forest_baseline(nc_prepared.scenes, nc_prepared.classes, seed=0, trees=20)
    k = len(nc_prepared.classes)
    net = Metrics.from_confusion(np.diag(np.full(k, 10)), nc_prepared.classes)  # a perfect "network"
    card = ModelCard(architecture="t_patch", build_kwargs={}, head_kind="patch", modalities=[],
                     classes=nc_prepared.classes)
    html = write_training_report(tmp_path / "r.html", card, [{"loss": 1.0}], net, baseline=res).read_text()
    assert "Baseline: random forest on the same pixels" in html
    oa = res.metrics.summary()["overall_accuracy"]
    assert f"{oa * 100:.1f}" in html  # the forest's OA, as a percentage
    assert "points above the forest" in html


def test_report_says_when_sklearn_is_missing(nc_prepared, tmp_path, monkeypatch) -> None:
    from mmlc.core.modelfiles.modelfile import ModelCard

    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn -> ImportError
    res = forest_baseline(nc_prepared.scenes, nc_prepared.classes)
    assert isinstance(res, BaselineResult) and res.metrics is None
    assert "scikit-learn is not installed" in res.note
    card = ModelCard(architecture="t_patch", build_kwargs={}, head_kind="patch", modalities=[],
                     classes=nc_prepared.classes)
    html = write_training_report(tmp_path / "r.html", card, [], None, baseline=res).read_text()
    assert "scikit-learn is not installed" in html
