"""Issue 17 through Processing: the core's output guard reaches the algorithms as one-line
QgsProcessingExceptions, before any work, with the inputs byte-identical."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from osgeo import gdal
from qgis.core import QgsProcessingException


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_train_report_over_an_input_is_refused_in_processing(provider, tmp_path: Path, spacenet6: Path) -> None:
    from qgis import processing

    sar = Path(shutil.copy(spacenet6 / "sar_masked.tif", tmp_path / "sar.tif"))
    labels = tmp_path / "labels.tif"
    gdal.Translate(str(labels), str(spacenet6 / "rgb_unmasked.tif"), bandList=[1])
    before = {p: _sha(p) for p in (sar, labels)}
    for report, param in ((sar, "INPUT_1"), (labels, "LABELS")):
        with pytest.raises(QgsProcessingException) as err:
            processing.run("mmlc:train", {"ARCHITECTURE": "hfdnet", "INPUT_1": str(sar), "LABELS": str(labels),
                                          "EPOCHS": 1, "DEVICE": "cpu", "OUTPUT_MODEL": str(tmp_path / "m.mmlc"),
                                          "OUTPUT_REPORT": str(report)})
        msg = str(err.value)
        assert "\n" not in msg and f"is an input of this run ({param}" in msg and "OUTPUT_REPORT" in msg
    assert {p: _sha(p) for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".aux.xml")) == ["labels.tif", "sar.tif"]


def test_evaluate_prediction_checks_in_processing(provider, tmp_path: Path, spacenet6: Path) -> None:
    from qgis import processing

    rgb = Path(shutil.copy(spacenet6 / "rgb_unmasked.tif", tmp_path / "rgb.tif"))
    with pytest.raises(QgsProcessingException, match="PREDICTION .* has 3 bands"):
        processing.run("mmlc:evaluate", {"PREDICTION": str(rgb), "REFERENCE": str(rgb),
                                         "OUTPUT_TABLE": str(tmp_path / "t.csv")})
    assert not (tmp_path / "t.csv").exists()
