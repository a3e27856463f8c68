"""The built-in models: present, small, honest about their labels, loadable, and usable by name;
plus the compact storage they use (fp16 / per-channel int8) expands back faithfully."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mmlc.core.errors import ModelFileError
from mmlc.core.modelfiles.builtin import MODELS_DIR, list_builtin, resolve_model
from mmlc.core.modelfiles.modelfile import build_from_file, compress_state, expand_state, read_card
from osgeo import gdal

BUILTINS = ["asanet-demo", "das2f-demo", "hfdnet-demo", "prsanet-demo"]
HELD_OUT = "S1A_IW_GRDH_1SDV_20170617T064724_29UPU_36_85"


def test_all_four_are_shipped_small_and_honest() -> None:
    assert set(BUILTINS) <= set(list_builtin())
    for name in BUILTINS:
        path = MODELS_DIR / f"{name}.mmlc"
        assert path.stat().st_size < 20e6, f"{name} is {path.stat().st_size / 1e6:.1f} MB"
        card = read_card(path)
        assert card.architecture == name.split("-")[0]
        assert "NOT ground truth" in card.provenance.get("labels_note", ""), name
        assert card.provenance.get("best_metrics"), name
        assert (MODELS_DIR / "reports" / f"{name}.html").is_file()


@pytest.mark.parametrize("name", BUILTINS)
def test_each_builds_from_its_file(name: str) -> None:
    card, model = build_from_file(resolve_model(name))
    assert not model.training
    assert len(card.classes) == model_num_classes(card)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def model_num_classes(card) -> int:
    return int(card.build_kwargs["num_classes"])


def test_unknown_name_lists_the_builtins() -> None:
    with pytest.raises(ModelFileError) as err:
        resolve_model("asanet-dem")
    assert all(n in str(err.value) for n in BUILTINS)


def test_int8_storage_round_trip_is_close() -> None:
    torch.manual_seed(0)
    state = {"conv.weight": torch.randn(64, 32, 3, 3), "bn.bias": torch.randn(64), "steps": torch.tensor(3)}
    back = expand_state(compress_state(state, "int8"))
    assert set(back) == set(state) and back["steps"].item() == 3
    w, q = state["conv.weight"], back["conv.weight"]
    # per-output-channel max-abs scaling: error at most half a step of that channel
    step = w.reshape(64, -1).abs().amax(1) / 127
    assert ((w - q).reshape(64, -1).abs().amax(1) <= step * 0.5 + 1e-3).all()
    assert torch.allclose(back["bn.bias"], state["bn.bias"], atol=1e-2)


def test_hfdnet_demo_on_the_held_out_pair(tmp_path: Path, bigearthnet: Path) -> None:
    """The SAR-only built-in maps the held-out Sentinel-1 patch on its exact grid with its classes."""
    from mmlc.core.engine.classify import classify

    sar = bigearthnet / f"{HELD_OUT}__s1_vv_vh_db.tif"
    res = classify("hfdnet-demo", [str(sar)], str(tmp_path / "lc.tif"), device="cpu")
    out, src = gdal.Open(res.output), gdal.Open(str(sar))
    assert out.GetGeoTransform() == src.GetGeoTransform() and out.RasterXSize == src.RasterXSize
    values = set(np.unique(out.ReadAsArray()).tolist())
    assert values <= {1, 2, 3, 4}
