"""ConvNeXt-V2 encoder: timm key layout, parameter counts, GRN/drop-path maths, checkpoint loading."""
from __future__ import annotations

import pytest
import torch
from mmlc.models.convnextv2 import GRN, VARIANTS, DropPath, convnextv2, variant_name
from mmlc.models.pretrained import (
    CheckpointError,
    adapt_stem_weight,
    load_convnextv2_weights,
    read_checkpoint,
    to_timm_layout,
)


def timm_layout(depths, dims, in_chans=3, conv_mlp=False, num_classes=1000) -> dict[str, tuple[int, ...]]:
    """The keys and shapes of timm's ``convnextv2_*`` state dict, written from timm's naming rules
    (timm/models/convnext.py: patch stem ``stem.0/1``; stage 0 has no downsample; ``downsample.0`` LN,
    ``downsample.1`` 2x2 conv; blocks ``conv_dw``, ``norm``, ``mlp.fc1``, ``mlp.grn.weight/bias`` of
    shape (4C,), ``mlp.fc2``; no layer-scale ``gamma`` for V2; ``head.norm`` + ``head.fc``)."""
    out: dict[str, tuple[int, ...]] = {
        "stem.0.weight": (dims[0], in_chans, 4, 4), "stem.0.bias": (dims[0],),
        "stem.1.weight": (dims[0],), "stem.1.bias": (dims[0],),
    }
    for i, (d, c) in enumerate(zip(depths, dims)):
        p = f"stages.{i}."
        if i > 0:
            out[p + "downsample.0.weight"] = (dims[i - 1],)
            out[p + "downsample.0.bias"] = (dims[i - 1],)
            out[p + "downsample.1.weight"] = (c, dims[i - 1], 2, 2)
            out[p + "downsample.1.bias"] = (c,)
        fc1 = (4 * c, c, 1, 1) if conv_mlp else (4 * c, c)
        fc2 = (c, 4 * c, 1, 1) if conv_mlp else (c, 4 * c)
        for j in range(d):
            b = f"{p}blocks.{j}."
            out.update({
                b + "conv_dw.weight": (c, 1, 7, 7), b + "conv_dw.bias": (c,),
                b + "norm.weight": (c,), b + "norm.bias": (c,),
                b + "mlp.fc1.weight": fc1, b + "mlp.fc1.bias": (4 * c,),
                b + "mlp.grn.weight": (4 * c,), b + "mlp.grn.bias": (4 * c,),
                b + "mlp.fc2.weight": fc2, b + "mlp.fc2.bias": (c,),
            })
    out.update({"head.norm.weight": (dims[-1],), "head.norm.bias": (dims[-1],),
                "head.fc.weight": (num_classes, dims[-1]), "head.fc.bias": (num_classes,)})
    return out


def shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("name", ["tiny", "atto"])
def test_state_dict_matches_timm_layout(name: str) -> None:
    cfg = VARIANTS[name]
    with torch.device("meta"):
        net = convnextv2(f"convnextv2_{name}")
    expected = timm_layout(cfg.depths, cfg.dims, conv_mlp=cfg.conv_mlp)
    ours = shapes(net)
    # our extra keys: the per-stage output norms (timm's head.norm becomes norm3)
    extra = {f"norm{i}.{w}": (c,) for i, c in enumerate(cfg.dims) for w in ("weight", "bias")}
    timm_backbone = {k: v for k, v in expected.items() if not k.startswith("head.")}
    assert ours == {**timm_backbone, **extra}


def test_parameter_counts() -> None:
    with torch.device("meta"):
        tiny = convnextv2("tiny")
    n = sum(p.numel() for p in tiny.parameters())
    assert n == 27_867_840  # spec asanet.md section 8 (stem to stage 3 + norm0-3)
    # timm's convnextv2_tiny: without norm0-2, plus the 1000-class fc
    assert n - 2 * (96 + 192 + 384) + 768 * 1000 + 1000 == 28_635_496
    for name, cfg in VARIANTS.items():
        with torch.device("meta"):
            net = convnextv2(name, in_channels=4)
        d = cfg.dims
        expect = 4 * 16 * d[0] + d[0] + 2 * d[0]                                   # stem conv + LN
        expect += sum(2 * d[i - 1] + 4 * d[i - 1] * d[i] + d[i] for i in range(1, 4))  # downsamples
        expect += sum(depth * (8 * c * c + 65 * c) for depth, c in zip(cfg.depths, d))  # blocks
        expect += sum(2 * c for c in d)                                             # norm0-3
        assert sum(p.numel() for p in net.parameters()) == expect, name


def test_variant_names_and_errors() -> None:
    assert variant_name("convnextv2_base") == "base" and variant_name("Nano") == "nano"
    with pytest.raises(ValueError, match="convnextv2_tiny"):
        variant_name("convnextv2_huge")
    with pytest.raises(ValueError, match="at least one input band"):
        convnextv2("atto", in_channels=0)


def test_grn_formula_and_identity_at_init() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 5, 6, 8)  # NCHW
    grn = GRN(5, channels_last=False)
    assert torch.equal(grn(x), x)  # gamma = beta = 0 at init
    with torch.no_grad():
        grn.weight.uniform_(-1, 1)
        grn.bias.uniform_(-1, 1)
    g = x.pow(2).sum(dim=(2, 3), keepdim=True).sqrt()
    n = g / (g.mean(dim=1, keepdim=True) + 1e-6)
    want = grn.weight.view(1, -1, 1, 1) * (x * n) + grn.bias.view(1, -1, 1, 1) + x
    torch.testing.assert_close(grn(x), want)
    cl = GRN(5, channels_last=True)
    cl.load_state_dict(grn.state_dict())
    torch.testing.assert_close(cl(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), want)


def reference_grn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, channels_last: bool,
                  eps: float = 1e-6) -> torch.Tensor:
    """GRN (paper Eq. 1-3) written independently of models/convnextv2.py, in the input's precision."""
    spatial, channel = ((1, 2), -1) if channels_last else ((2, 3), 1)
    shape = (1, 1, 1, -1) if channels_last else (1, -1, 1, 1)
    g = torch.linalg.vector_norm(x, dim=spatial, keepdim=True)
    n = g / (g.mean(dim=channel, keepdim=True) + eps)
    return weight.view(shape) * (x * n) + bias.view(shape) + x


@pytest.mark.parametrize("channels_last", [False, True])
def test_grn_float64_agrees_with_a_float64_reference(channels_last: bool) -> None:
    """The norm is computed in float64 for float64 input (it was rounded through float32: ~1e-7 off)."""
    torch.manual_seed(0)
    grn = GRN(7, channels_last=channels_last).double()
    with torch.no_grad():
        grn.weight.uniform_(-2, 2)
        grn.bias.uniform_(-1, 1)
    x = torch.randn(2, 9, 11, 7, dtype=torch.float64) * 50 + 3  # NHWC or NCHW by reading
    x = x if channels_last else x.permute(0, 3, 1, 2)
    out = grn(x)
    assert out.dtype == torch.float64
    want = reference_grn(x, grn.weight, grn.bias, channels_last)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)


def test_float64_asanet_agrees_with_the_reference_grn(monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole fp64 ASANet (atto) equals the same network with the reference GRN to fp64 rounding
    (before the norm stayed in the input's precision: 1.5e-10 apart on logits of ~6e-3)."""
    from mmlc.models import build_model

    torch.manual_seed(0)
    net = build_model("asanet", num_classes=5, backbone="convnextv2_atto", decoder_channels=32,
                      aux_channels=16).double().eval()
    grns = [m for m in net.modules() if isinstance(m, GRN)]
    assert len(grns) == 2 * 12  # both branches, every block
    with torch.no_grad():
        for m in grns:  # GRN starts as the identity: give it weights so that its norm matters
            m.weight.uniform_(-1, 1)
            m.bias.uniform_(-0.5, 0.5)
    optical = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    sar = torch.randn(2, 1, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        out = net(optical, sar)
        monkeypatch.setattr(GRN, "forward", lambda self, x: reference_grn(x, self.weight, self.bias,
                                                                         self.channels_last, self.eps))
        want = net(optical, sar)
    assert out.dtype == torch.float64 and out.shape == (2, 5, 64, 64)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_grn_half_types_sum_in_float32_without_overflow(dtype: torch.dtype) -> None:
    """Half types are summed in float32: a float16 sum of squares of these values (~4e6) overflows."""
    torch.manual_seed(0)
    grn = GRN(4, channels_last=False).to(dtype)
    with torch.no_grad():
        grn.weight.fill_(0.5)
    x = (torch.rand(1, 4, 8, 8) * 100 + 200).to(dtype)
    if dtype == torch.float16:
        assert torch.isinf(x.square().sum())  # what summing in float32 avoids
    out = grn(x)
    assert out.dtype == dtype and bool(torch.isfinite(out).all())
    want = reference_grn(x.double(), grn.weight.double(), grn.bias.double(), channels_last=False)
    torch.testing.assert_close(out.double(), want, rtol=2e-2, atol=0.0)


def test_conv_and_linear_blocks_compute_the_same_function() -> None:
    """atto (1x1-conv MLP, channels-first LN) equals the same weights in the Linear layout."""
    torch.manual_seed(0)
    conv_net = convnextv2("atto").eval()
    from mmlc.models.convnextv2 import ConvNeXtV2
    cfg = VARIANTS["atto"]
    lin_net = ConvNeXtV2(3, cfg.depths, cfg.dims, conv_mlp=False).eval()
    with torch.no_grad():
        for p in conv_net.parameters():
            p.normal_(0, 0.05)
    load_convnextv2_weights(lin_net, conv_net.state_dict())  # reshapes (O, I, 1, 1) -> (O, I)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(conv_net(x), lin_net(x)):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_drop_path_schedule_and_ln_eps() -> None:
    with torch.device("meta"):
        net = convnextv2("tiny", drop_path_rate=0.4)
    rates = [b.drop_path.p for s in net.stages for b in s.blocks]
    torch.testing.assert_close(torch.tensor(rates), torch.linspace(0, 0.4, 18))
    eps = {m.eps for m in net.modules() if isinstance(m, torch.nn.LayerNorm)}
    assert eps == {1e-6}
    # stochastic depth is the identity in eval and keeps the expectation in training
    dp = DropPath(net.stages[3].blocks[2].drop_path.p)
    x = torch.ones(4000, 1, 1, 1)
    dp.eval()
    assert torch.equal(dp(x), x)
    dp.train()
    y = dp(x)
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / 0.6))
    assert abs(y.mean().item() - 1.0) < 0.06 and 0.3 < (y == 0).float().mean().item() < 0.5


def _fake_timm_checkpoint(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A timm-keyed checkpoint made from a randomly initialised branch, with head.norm + head.fc."""
    sd = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith(("norm0", "norm1", "norm2"))}
    sd["head.norm.weight"] = sd.pop("norm3.weight")
    sd["head.norm.bias"] = sd.pop("norm3.bias")
    sd["head.fc.weight"] = torch.randn(1000, net.dims[-1])
    sd["head.fc.bias"] = torch.randn(1000)
    return sd


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_timm_checkpoint_round_trip(tmp_path, suffix: str) -> None:
    torch.manual_seed(1)
    src = convnextv2("atto")
    with torch.no_grad():
        for p in src.parameters():
            p.normal_()
    sd = _fake_timm_checkpoint(src)
    path = tmp_path / f"convnextv2_atto{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file(sd, str(path))
    else:
        torch.save({"state_dict": sd}, path)
    dst = convnextv2("atto")
    report = load_convnextv2_weights(dst, path)
    assert report.layout == "timm"
    assert sorted(report.unexpected) == ["head.fc.bias", "head.fc.weight"]
    assert sorted(report.missing) == [f"norm{i}.{w}" for i in range(3) for w in ("bias", "weight")]
    got = dst.state_dict()
    for k, v in src.state_dict().items():
        if not k.startswith(("norm0", "norm1", "norm2")):
            assert torch.equal(got[k], v), k  # head.norm -> norm3 included


def _to_mmpretrain(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Re-key a timm-layout dict the way an mmpretrain ConvNeXt-V2 checkpoint stores it (Linear MLP)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("head."):
            continue
        k2 = k.replace("stem.", "downsample_layers.0.")
        for i in (1, 2, 3):
            k2 = k2.replace(f"stages.{i}.downsample.", f"downsample_layers.{i}.")
        for i in range(4):
            k2 = k2.replace(f"stages.{i}.blocks.", f"stages.{i}.")
        k2 = (k2.replace("conv_dw", "depthwise_conv").replace("mlp.fc1", "pointwise_conv1")
              .replace("mlp.fc2", "pointwise_conv2").replace("mlp.grn.weight", "grn.gamma")
              .replace("mlp.grn.bias", "grn.beta"))
        if "pointwise_conv" in k2 and v.ndim == 4:
            v = v.flatten(1)
        out["backbone." + k2] = v
    out["backbone.norm3.weight"] = sd["head.norm.weight"]
    out["backbone.norm3.bias"] = sd["head.norm.bias"]
    out["head.fc.weight"] = sd["head.fc.weight"]
    out["head.fc.bias"] = sd["head.fc.bias"]
    return out


def test_mmpretrain_and_official_layouts_load(tmp_path) -> None:
    torch.manual_seed(2)
    src = convnextv2("atto")
    with torch.no_grad():
        for p in src.parameters():
            p.normal_()
    timm_sd = _fake_timm_checkpoint(src)
    mm = _to_mmpretrain(timm_sd)
    assert "backbone.stages.2.5.grn.gamma" in mm and mm["backbone.stages.0.0.pointwise_conv1.weight"].ndim == 2
    path = tmp_path / "convnext-v2-atto_mm.pth"
    torch.save({"meta": {"x": 1}, "state_dict": mm}, path)
    dst = convnextv2("atto")
    report = load_convnextv2_weights(dst, path)
    assert report.layout == "mmpretrain"
    assert sorted(report.unexpected) == ["head.fc.bias", "head.fc.weight"]
    for k, v in src.state_dict().items():
        if not k.startswith(("norm0", "norm1", "norm2")):
            assert torch.equal(dst.state_dict()[k], v), k

    # official facebookresearch layout: dwconv/pwconv, grn (1,1,1,D), final "norm", "head"
    official = {}
    for k, v in mm.items():
        k = k.removeprefix("backbone.").replace("depthwise_conv", "dwconv").replace("pointwise_conv", "pwconv")
        if ".grn." in k:
            v = v.reshape(1, 1, 1, -1)
        k = {"norm3.weight": "norm.weight", "norm3.bias": "norm.bias",
             "head.fc.weight": "head.weight", "head.fc.bias": "head.bias"}.get(k, k)
        official[k] = v
    state, layout = to_timm_layout(official)
    assert layout == "official" and "stages.1.blocks.0.mlp.grn.weight" in state and "head.fc.weight" in state
    dst2 = convnextv2("atto")
    report2 = load_convnextv2_weights(dst2, official)
    assert sorted(report2.unexpected) == ["head.fc.bias", "head.fc.weight"]
    torch.testing.assert_close(dst2.stages[2].blocks[1].mlp.grn.weight, src.stages[2].blocks[1].mlp.grn.weight)


def test_stem_adaptation_filter_means() -> None:
    torch.manual_seed(3)
    w = torch.randn(40, 3, 4, 4)
    two = adapt_stem_weight(w, 2)             # auto -> mean for fewer bands
    torch.testing.assert_close(two[:, 0], w.mean(1) * 1.5)
    torch.testing.assert_close(two[:, 1], w.mean(1) * 1.5)
    torch.testing.assert_close(two.sum(1), w.sum(1))  # a uniform image gives the same response
    one = adapt_stem_weight(w, 1)
    torch.testing.assert_close(one[:, 0], w.sum(1))   # = replicating SAR into 3 channels
    ten = adapt_stem_weight(w, 10)            # auto -> tile for more bands
    for j in range(10):
        torch.testing.assert_close(ten[:, j], w[:, j % 3] * 0.3)
    torch.testing.assert_close(ten.mean(1), (4 * w[:, 0] + 3 * w[:, 1] + 3 * w[:, 2]) * 0.3 / 10)
    ten_mean = adapt_stem_weight(w, 10, "mean")
    torch.testing.assert_close(ten_mean.mean(1), w.mean(1) * 0.3)
    with pytest.raises(ValueError, match="mean"):
        adapt_stem_weight(w, 4, "nearest")


def test_loading_into_other_band_count_adapts_stem(tmp_path) -> None:
    src = convnextv2("atto")
    dst = convnextv2("atto", in_channels=10)
    report = load_convnextv2_weights(dst, _fake_timm_checkpoint(src))
    assert report.adapted and "3 -> 10" in report.adapted[0]
    torch.testing.assert_close(dst.stem[0].weight[:, 4], src.stem[0].weight[:, 1] * 0.3)
    out = dst(torch.randn(1, 10, 64, 64))
    assert [o.shape[1] for o in out] == [40, 80, 160, 320]


def test_bad_checkpoints_raise_and_leave_model_untouched(tmp_path) -> None:
    dst = convnextv2("atto")
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    wrong = _fake_timm_checkpoint(convnextv2("femto"))  # another variant
    with pytest.raises(CheckpointError, match="wrong variant"):
        load_convnextv2_weights(dst, wrong)
    with pytest.raises(CheckpointError, match="no ConvNeXt-V2 weights"):
        load_convnextv2_weights(dst, {"foo.weight": torch.zeros(3)})
    partial = _fake_timm_checkpoint(convnextv2("atto"))
    del partial["stages.2.blocks.3.mlp.fc1.weight"]
    with pytest.raises(CheckpointError, match="lacks 1 backbone weights"):
        load_convnextv2_weights(dst, partial)
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_checkpoint(bad)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "missing.safetensors")
    for k, v in dst.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_forward_shapes_and_features_normed() -> None:
    net = convnextv2("atto").eval()
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        feats = net(x)
    assert [tuple(f.shape) for f in feats] == [(2, 40, 24, 16), (2, 80, 12, 8), (2, 160, 6, 4), (2, 320, 3, 2)]
    # norm{i} at init (weight 1, bias 0): every pixel's channel vector is standardised
    f = feats[1]
    torch.testing.assert_close(f.mean(1), torch.zeros_like(f.mean(1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(f.var(1, unbiased=False), torch.ones_like(f.mean(1)), atol=1e-3, rtol=0)
