"""Model files in use: round trip of card and weights, refusal of corrupted and truncated files."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from mmlc.core.classes import ClassInfo
from mmlc.core.errors import ModelFileError
from mmlc.core.modelfiles.modelfile import (
    ModalityCard,
    ModelCard,
    build_from_file,
    load_model_file,
    read_card,
    save_model_file,
)
from mmlc.models.registry import ModalitySpec, ModelSpec, register


class MfNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.out = nn.Conv2d(4, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.bn(self.conv(x))))


register(ModelSpec("t_mfnet", MfNet, "dense", (ModalitySpec("sar", 2),), lambda b: {"in_channels": b[0]}))


def _card() -> ModelCard:
    return ModelCard(
        architecture="t_mfnet", build_kwargs={"num_classes": 3, "in_channels": 2}, head_kind="dense",
        modalities=[ModalityCard("sar", 2, mean=[-11.0, -17.5], std=[3.9, 3.5], to_db=False, band_names=["VV", "VH"])],
        classes=[ClassInfo(1, "water", "#1f78b4"), ClassInfo(2, "forest", "#33a02c"), ClassInfo(5, "other", "#e31a1c")],
        variant="", tile_size=64, provenance={"epochs": 2, "labels_note": "test", "best_metrics": {"miou": 0.5}},
    )


@pytest.fixture()
def saved(tmp_path: Path):
    torch.manual_seed(0)
    net = MfNet(3)
    net.bn.running_mean.add_(0.25)  # buffers travel too
    path = save_model_file(tmp_path / "m.mmlc", _card(), net.state_dict())
    return path, net


def test_round_trip_card_and_weights_equal(saved):
    path, net = saved
    card, tensors = load_model_file(path)
    assert card.to_json() == _card().to_json()
    assert card.classes[2] == ClassInfo(5, "other", "#e31a1c") and card.num_classes == 3
    assert read_card(path).modalities[0].mean == [-11.0, -17.5]
    sd = net.state_dict()
    assert set(tensors) == set(sd)
    for k in sd:
        assert torch.equal(tensors[k], sd[k]), k
    card2, model = build_from_file(path)
    assert not model.training
    x = torch.randn(1, 2, 8, 8)
    net.eval()
    torch.testing.assert_close(model(x), net(x), rtol=0, atol=0)


def _data_start(path: Path) -> int:
    n = struct.unpack("<Q", path.read_bytes()[:8])[0]
    return 8 + n


def test_flipped_weight_bytes_are_refused(saved):
    path, _ = saved
    raw = bytearray(path.read_bytes())
    pos = _data_start(path) + 17  # inside the first tensor's bytes
    raw[pos] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="checksum"):
        load_model_file(path)
    read_card(path)  # the card alone is still readable (header intact)


def test_truncated_file_is_refused(saved):
    path, _ = saved
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 40])
    with pytest.raises(ModelFileError, match="corrupted or truncated"):
        load_model_file(path)
    path.write_bytes(raw[:5])
    with pytest.raises(ModelFileError):
        read_card(path)


def test_damaged_header_and_foreign_files_are_refused(saved, tmp_path):
    path, _ = saved
    raw = bytearray(path.read_bytes())
    raw[10] = ord("}")  # break the JSON header
    bad = tmp_path / "bad.mmlc"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError):
        load_model_file(bad)
    from safetensors.torch import save_file

    foreign = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ModelFileError, match="not an mmlc model file"):
        load_model_file(foreign)
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model_file(tmp_path / "missing.mmlc")


def test_weights_of_another_shape_are_refused_when_building(tmp_path):
    card = _card()
    card.build_kwargs = {"num_classes": 4, "in_channels": 2}  # card says 4 classes, weights have 3
    path = save_model_file(tmp_path / "m.mmlc", card, MfNet(3).state_dict())
    with pytest.raises(ModelFileError, match="do not fit"):
        build_from_file(path)


def test_card_json_is_plain_and_stable(saved):
    path, _ = saved
    card = read_card(path)
    d = json.loads(card.to_json())
    assert d["architecture"] == "t_mfnet" and d["modalities"][0]["band_names"] == ["VV", "VH"]
    assert ModelCard.from_json(card.to_json()).to_json() == card.to_json()


def test_failed_save_leaves_previous_file_and_no_temp(saved):
    path, net = saved
    before = path.read_bytes()
    with pytest.raises(Exception):
        save_model_file(path, _card(), {"w": "not a tensor"})  # type: ignore[dict-item]
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


@pytest.mark.parametrize("dynamo_loaded", [True, False], ids=["meta device", "fresh process: cpu"])
def test_built_on_meta_then_assigned_equals_a_plainly_built_network(dynamo_loaded: bool, monkeypatch) -> None:
    """build_from_file, on the meta device (torch._dynamo loaded) or on the CPU (fresh process): same network."""
    import importlib
    import sys

    from mmlc.core.modelfiles.builtin import resolve_model
    from mmlc.models import build_model

    if dynamo_loaded:
        importlib.import_module("torch._dynamo")
    else:
        monkeypatch.delitem(sys.modules, "torch._dynamo", raising=False)
    path = resolve_model("hfdnet-demo")
    card, net = build_from_file(path, torch.device("cpu"))
    _, tensors = load_model_file(path)
    plain = build_model(card.architecture, **card.build_kwargs)
    plain.load_state_dict(tensors, strict=True)
    plain.eval()
    assert not net.training and all(t.device.type == "cpu" for t in [*net.parameters(), *net.buffers()])
    x = torch.randn(1, 2, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(net(x), plain(x))


def test_loading_a_model_in_a_fresh_process_does_not_import_dynamo(repo_root: Path) -> None:
    """Building on the meta device imported torch._dynamo and sympy (3-6 s here, more under QGIS's
    import hook) for every classify from qgis_process or the CLI: a fresh process builds on the CPU."""
    import subprocess
    import sys

    code = ("import sys; from mmlc.core.modelfiles.builtin import resolve_model; "
            "from mmlc.core.modelfiles.modelfile import build_from_file; "
            "card, net = build_from_file(resolve_model('das2f-demo')); "
            "print(sorted(m for m in ('torch._dynamo', 'sympy') if m in sys.modules), "
            "sum(p.numel() for p in net.parameters()) > 0, {p.device.type for p in net.parameters()})")
    env = dict(__import__("os").environ, PYTHONPATH=str(repo_root / "build" / "pkg"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)  # nosec B603
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[] True {'cpu'}"
