"""In-house ResNet: torchvision key layout and parameter counts, first-conv adaptation, loading."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmlc.models.resnet import (
    WeightsFileError,
    adapt_first_conv,
    build_resnet,
    load_resnet_weights,
    read_state_dict,
)

# torchvision's published parameter counts (1000-class fc) and state-dict sizes:
# params = convs + 2 per BN + fc weight/bias; buffers = 3 per BN (mean, var, num_batches_tracked).
# resnet18/34: 20/36 BN layers; resnet50: 53 BN layers.
EXPECTED = {
    "resnet18": (11_689_512, 20, 20),
    "resnet34": (21_797_672, 36, 36),
    "resnet50": (25_557_032, 53, 53),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_torchvision_layout_and_parameter_counts(name: str) -> None:
    params, n_conv, n_bn = EXPECTED[name]
    m = build_resnet(name, num_classes=1000)
    assert sum(p.numel() for p in m.parameters()) == params
    sd = m.state_dict()
    assert len(sd) == n_conv + 5 * n_bn + 2
    assert list(sd)[:5] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"]
    assert list(sd)[-2:] == ["fc.weight", "fc.bias"]
    assert sd["fc.weight"].shape == (1000, 512 if name != "resnet50" else 2048)
    for key in ("layer1.0.conv1.weight", "layer1.0.bn1.running_var", "layer2.0.downsample.0.weight",
                "layer2.0.downsample.1.num_batches_tracked", "layer4.1.conv2.weight"):
        assert key in sd, key
    if name == "resnet50":
        assert sd["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
        assert sd["layer1.0.conv3.weight"].shape == (256, 64, 1, 1)
        assert "layer3.5.bn3.weight" in sd
    else:
        assert "layer1.0.downsample.0.weight" not in sd
        assert sd["layer3.0.downsample.0.weight"].shape == (256, 128, 1, 1)


@pytest.mark.parametrize("name,channels", [("resnet18", (64, 128, 256, 512)),
                                           ("resnet50", (256, 512, 1024, 2048))])
def test_encoder_features_strides(name: str, channels: tuple[int, ...]) -> None:
    m = build_resnet(name, in_channels=5).eval()
    assert m.fc is None and m.out_channels == channels
    with torch.no_grad():
        feats = m(torch.randn(1, 5, 125, 125))
    # 125 -> conv 63 -> pool 32 -> 16 -> 8 -> 4
    assert [tuple(f.shape[1:]) for f in feats] == [(c, s, s) for c, s in zip(channels, (32, 16, 8, 4))]


def test_adapt_first_conv_keeps_constant_image_response() -> None:
    w = torch.randn(64, 3, 7, 7)
    for mode, counts in (("mean", (1, 2, 4, 10)), ("tile", (6, 9))):  # tile: exact for whole RGB repeats
        for c in counts:
            a = adapt_first_conv(w, c, mode)  # type: ignore[arg-type]
            assert a.shape == (64, c, 7, 7)
            torch.testing.assert_close(a.sum(1), w.sum(1), rtol=1e-5, atol=1e-5)
    tiled = adapt_first_conv(w, 4, "tile")
    torch.testing.assert_close(tiled[:, :3], w * 0.75)
    torch.testing.assert_close(tiled[:, 3], w[:, 0] * 0.75)
    mean = adapt_first_conv(w, 2, "mean")
    torch.testing.assert_close(mean[:, 0], mean[:, 1])
    torch.testing.assert_close(adapt_first_conv(w, 3), w)
    with pytest.raises(ValueError):
        adapt_first_conv(w, 2, "copy")  # type: ignore[arg-type]


def _imagenet_like(name: str = "resnet18") -> dict[str, torch.Tensor]:
    """A torchvision-layout 3-band 1000-class state dict with non-trivial BN statistics."""
    torch.manual_seed(1)
    m = build_resnet(name, num_classes=1000)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.normal_()
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.normal_()
    return m.state_dict()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_round_trip_of_torchvision_file(tmp_path: Path, suffix: str) -> None:
    sd = _imagenet_like()
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)  # wrapped + DataParallel
    else:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    enc = build_resnet("resnet18", in_channels=2)
    report = load_resnet_weights(enc, path, first_conv="mean")
    assert report.adapted_first_conv and report.missing == []
    assert sorted(report.unexpected) == ["fc.bias", "fc.weight"]
    got = enc.state_dict()
    for k, v in sd.items():
        if k.startswith("fc."):
            continue
        if k == "conv1.weight":
            torch.testing.assert_close(got[k], adapt_first_conv(v, 2, "mean"), rtol=0, atol=0)
        else:
            assert torch.equal(got[k], v), k
    # a 3-band classifier takes the file unchanged
    full = build_resnet("resnet18", num_classes=1000)
    rep = load_resnet_weights(full, path)
    assert not rep.adapted_first_conv and rep.missing == [] and rep.unexpected == []
    assert torch.equal(full.fc.weight, sd["fc.weight"])


def test_bad_weight_files_raise_and_leave_model_untouched(tmp_path: Path) -> None:
    enc = build_resnet("resnet18", in_channels=3)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    with pytest.raises(WeightsFileError, match="not found"):
        load_resnet_weights(enc, tmp_path / "nope.pth")
    other = tmp_path / "r50.pth"
    torch.save(build_resnet("resnet50").state_dict(), other)
    with pytest.raises(WeightsFileError, match="another ResNet depth"):
        load_resnet_weights(enc, other)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(WeightsFileError, match="cannot read"):
        load_resnet_weights(enc, junk)
    with pytest.raises(WeightsFileError, match="no key"):
        load_resnet_weights(enc, {"head.weight": torch.zeros(3)})
    after = enc.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_read_state_dict_rejects_non_tensor_payload(tmp_path: Path) -> None:
    p = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "arch": "resnet18"}, p)
    with pytest.raises(WeightsFileError, match="name -> tensor"):
        read_state_dict(p)


def test_base_width_scales_every_stage_and_keeps_the_keys() -> None:
    """base_width (mmlc option for small built-ins): same key layout, widths scaled."""
    from mmlc.models.resnet import build_resnet

    ref, thin = build_resnet("resnet18"), build_resnet("resnet18", base_width=32)
    assert list(ref.state_dict()) == list(thin.state_dict())
    assert thin.out_channels == (32, 64, 128, 256)
    assert thin.conv1.weight.shape == (32, 3, 7, 7)
