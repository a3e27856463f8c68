"""``python -m mmlc``: train and classify runs, the model listing, and exit codes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmlc.core.cli import main
from mmlc.core.modelfiles.modelfile import read_card
from mmlc.models.registry import IGNORE_INDEX, ModalitySpec, ModelSpec, Recipe, register

ROOT = Path(__file__).resolve().parent.parent
SCENE = "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48__"


class CliNet(nn.Module):
    def __init__(self, num_classes: int, optical_channels: int = 10, sar_channels: int = 2) -> None:
        super().__init__()
        self.a = nn.Conv2d(optical_channels, 8, 3, padding=1)
        self.b = nn.Conv2d(sar_channels, 8, 3, padding=1)
        self.out = nn.Conv2d(8, num_classes, 1)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.a(x) + self.b(s)))

    def training_step(self, inputs, target):
        return F.cross_entropy(self(*inputs), target, ignore_index=IGNORE_INDEX), {}


register(ModelSpec("t_cli", CliNet, "dense", (ModalitySpec("optical", 10), ModalitySpec("sar", 2)),
                   lambda b: {"optical_channels": b[0], "sar_channels": b[1]},
                   Recipe(lr=5e-3, epochs=1, batch_size=4, tile_size=32)))


@pytest.fixture(scope="module")
def files(bigearthnet: Path):
    return {k: str(bigearthnet / f"{SCENE}{v}.tif") for k, v in
            (("opt", "s2_10band_10m"), ("sar", "s1_vv_vh_db"), ("lab", "weak_label_s2rules"))}


@pytest.fixture(scope="module")
def trained(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "cli.mmlc"
    rc = main(["-q", "train", "--ARCHITECTURE", "t_cli", "--INPUT_1", files["opt"], "--input-2", files["sar"],
               "--LABELS", files["lab"], "--EPOCHS", "2", "--max_steps_per_epoch", "3", "--OUTPUT_MODEL", str(out),
               "--LABELS_NOTE", "weak labels"])
    assert rc == 0
    return out


def test_train_writes_a_model_file_with_the_options(trained):
    card = read_card(trained)
    assert card.architecture == "t_cli" and card.provenance["epochs"] == 2
    assert card.provenance["labels_note"] == "weak labels"


def test_classify_from_the_cli(trained, files, tmp_path):
    from osgeo import gdal

    out = tmp_path / "cls.tif"
    rc = main(["-q", "classify", "--MODEL", str(trained), "--INPUT_1", files["opt"], "--INPUT_2", files["sar"],
               "--OUTPUT", str(out), "--DEVICE", "cpu"])
    assert rc == 0
    src, res = gdal.Open(files["opt"]), gdal.Open(str(out))
    assert (res.RasterXSize, res.RasterYSize) == (src.RasterXSize, src.RasterYSize)
    assert res.GetGeoTransform() == src.GetGeoTransform()
    values = set(np.unique(res.ReadAsArray()).tolist())
    assert values - {0} and values - {0} <= {c.value for c in read_card(trained).classes}
    # --MASK with a raster: non-zero = inside (here the left half of input 1's own grid)
    mask = tmp_path / "left.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(mask), src.RasterXSize, src.RasterYSize, 1, gdal.GDT_Byte)
    ds.SetGeoTransform(src.GetGeoTransform())
    ds.SetProjection(src.GetProjection())
    half = src.RasterXSize // 2
    ds.GetRasterBand(1).WriteArray(np.pad(np.ones((src.RasterYSize, half), np.uint8),
                                          ((0, 0), (0, src.RasterXSize - half))))
    ds = None
    full = res.ReadAsArray()
    res = None
    assert main(["-q", "classify", "--MODEL", str(trained), "--INPUT_1", files["opt"], "--INPUT_2", files["sar"],
                 "--MASK", str(mask), "--OUTPUT", str(out), "--DEVICE", "cpu"]) == 0
    cut = gdal.Open(str(out)).ReadAsArray()
    # a raster mask's extent is the raster's: same grid, same tiles, same values inside, nodata outside
    assert cut.shape == full.shape and np.array_equal(cut[:, :half], full[:, :half]) and (cut[:, half:] == 0).all()


def test_exit_codes(files, trained, tmp_path, capsys):
    assert main(["train", "--ARCHITECTURE", "t_cli"]) == 2  # --OUTPUT_MODEL missing
    assert main(["frobnicate"]) == 2
    assert main(["train", "--ARCHITECTURE", "nope", "--INPUT_1", files["opt"], "--LABELS", files["lab"],
                 "--OUTPUT_MODEL", str(tmp_path / "m.mmlc")]) == 2  # InputError
    assert "unknown model" in capsys.readouterr().err
    assert main(["train", "--ARCHITECTURE", "t_cli", "--INPUT_1", files["opt"], "--INPUT_2", files["sar"],
                 "--LABELS", files["lab"], "--OUTPUT_MODEL", str(tmp_path / "no" / "m.mmlc")]) == 4  # OutputError
    broken = tmp_path / "broken.mmlc"
    raw = trained.read_bytes()
    broken.write_bytes(raw[: len(raw) // 2])
    assert main(["classify", "--MODEL", str(broken), "--INPUT_1", files["opt"], "--INPUT_2", files["sar"],
                 "--OUTPUT", str(tmp_path / "o.tif")]) == 3  # ModelFileError
    assert not (tmp_path / "o.tif").exists()
    assert main(["classify", "--MODEL", str(trained), "--INPUT_1", str(tmp_path / "none.tif"),
                 "--INPUT_2", files["sar"], "--OUTPUT", str(tmp_path / "o.tif")]) == 2  # InputError


def test_python_dash_m_lists_models():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "build" / "pkg"))
    r = subprocess.run([sys.executable, "-m", "mmlc", "models"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "hfdnet" in r.stdout and "dense" in r.stdout and "built-in models" in r.stdout


def test_a_network_refusing_its_inputs_is_reported_not_a_bug(files, tmp_path, capsys):
    """HFD-Net refuses 1-tile training batches (NetworkError): a clear message, exit 2, no model file."""
    out = tmp_path / "m.mmlc"
    rc = main(["train", "--ARCHITECTURE", "hfdnet", "--INPUT_1", files["sar"], "--LABELS", files["lab"],
               "--BATCH_SIZE", "1", "--EPOCHS", "1", "--max_steps_per_epoch", "1", "--OUTPUT_MODEL", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "the network refused its inputs" in err and "at least 2 tiles per batch" in err
    assert not out.exists()


def test_other_value_errors_are_not_disguised_as_input_errors(monkeypatch):
    """Only NetworkError is reported as the network refusing its inputs; a plain ValueError is a bug."""
    import mmlc.core.cli as cli

    def boom(*_a, **_k):
        raise ValueError("a bug")

    monkeypatch.setitem(cli._COMMANDS, "classify", boom)
    with pytest.raises(ValueError, match="a bug"):
        main(["classify", "--MODEL", "x", "--INPUT_1", "y", "--OUTPUT", "z"])


def test_labels_as_raster_or_vector_ids(tmp_path, capsys):
    """LABELS/REFERENCE take a class raster, LABELS_VECTOR/REFERENCE_VECTOR polygons or points (the
    Processing split); one of them is required, both at once is a usage error."""
    nc = ROOT / "resources" / "sample_data" / "share_alike" / "nc_landsat"
    raster, points = str(nc / "landsat96_labelled_pixels.tif"), str(nc / "landsat96_points.shp")
    assert main(["evaluate", "--PREDICTION", raster, "--REFERENCE_VECTOR", points, "--LABEL_FIELD", "id"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--PREDICTION", raster, "--REFERENCE", raster, "--REFERENCE_VECTOR", points,
                 "--LABEL_FIELD", "id"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["distill", "--TEACHER", "t.mmlc", "--INPUT_OPTICAL", raster, "--INPUT_SAR", raster,
                 "--OUTPUT_MODEL", str(tmp_path / "s.mmlc")]) == 2
    assert "--LABELS or --LABELS_VECTOR" in capsys.readouterr().err
