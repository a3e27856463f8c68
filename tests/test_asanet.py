"""ASANet: registry contract, exact parameter counts and MACs from the spec, SFM/CFM maths,
the normed-feature hand-over between stages, shapes, the training step and the LR groups."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from mmlc.models import IGNORE_INDEX, build_model, get_spec, list_models
from mmlc.models.asanet import CFM, SFM, ASANet
from mmlc.models.macs import count_macs


def small(**kw) -> ASANet:
    """A fast ASANet for forward tests: atto backbone, narrow decoder."""
    args = dict(num_classes=5, backbone="convnextv2_atto", decoder_channels=32, aux_channels=16)
    args.update(kw)
    return build_model("asanet", **args)


@pytest.fixture(scope="module")
def model() -> ASANet:
    """One small ASANet shared by the read-only forward tests (building costs seconds on a busy CPU)."""
    torch.manual_seed(0)
    return small().eval()


def n_params(module: torch.nn.Module, skip: str | None = None) -> int:
    return sum(p.numel() for k, p in module.named_parameters() if not (skip and k.startswith(skip)))


def test_registry_spec() -> None:
    assert "asanet" in list_models()
    spec = get_spec("asanet")
    assert spec.head_kind == "dense"
    assert [(m.name, m.default_bands) for m in spec.modalities] == [("optical", 3), ("sar", 1)]
    assert spec.channel_kwargs([10, 2]) == {"optical_channels": 10, "sar_channels": 2}
    assert set(spec.variants) == {f"convnextv2_{v}" for v in ("atto", "femto", "pico", "nano", "tiny", "base")}
    r = spec.recipe
    assert (r.optimizer, r.lr, r.weight_decay, r.schedule, r.poly_power, r.tile_size) == (
        "adamw", 1e-4, 0.05, "poly", 1.0, 256)
    assert r.warmup_iters > 0
    # from random weights (no INIT_MODEL) the design choice's rate; fine-tuning keeps the paper's
    assert r.peak_lr(from_scratch=True) == 1e-3 and r.peak_lr(from_scratch=False) == 1e-4
    assert r.min_batches_per_epoch == 4


def test_parameter_counts_tiny() -> None:
    """Spec asanet.md section 8 (the reference feeds SAR replicated to 3 channels)."""
    with torch.device("meta"):
        m6 = build_model("asanet", num_classes=6, backbone="convnextv2_tiny", sar_channels=3)
        m7 = build_model("asanet", num_classes=7, sar_channels=3, aux_head=False)
        pwa = build_model("asanet", num_classes=6, sar_channels=3, use_sfm=False, fusion="add", aux_head=False)
        sar1 = build_model("asanet", num_classes=6, aux_head=False)
    assert n_params(m6, skip="auxiliary_head") == 82_461_366
    assert n_params(m6) == 82_904_764
    assert n_params(m7) == 82_461_623
    assert n_params(pwa) == 64_959_366
    assert n_params(m6.backbone_optical) == 27_867_840
    assert n_params(m6.sfms) == 118_320
    assert n_params(m6.fusions) == 17_383_680
    assert n_params(m6.decode_head) == 9_222_144 + 257 * 6
    assert n_params(sar1) == 82_461_366 - 2 * 96 * 16  # one SAR band: a thinner SAR stem only
    assert m6.backbone_optical is not m6.backbone_sar  # separate weights


def test_macs_tiny_256() -> None:
    with torch.device("meta"):
        model = build_model("asanet", num_classes=6, sar_channels=3).eval()
        macs = count_macs(model, torch.empty(1, 3, 256, 256), torch.empty(1, 3, 256, 256))
    assert round(macs.per_sample / 1e9, 2) == 25.85  # spec section 5
    assert round(macs.by_module["backbone_optical"] / 1e9, 2) == 5.82
    assert round(macs.by_module["fusions"] / 1e9, 2) == 0.92
    assert round(macs.by_module["decode_head"] / 1e9, 2) == 13.29


def test_sfm_is_a_shared_channel_reweighting() -> None:
    torch.manual_seed(0)
    sfm = SFM(96)
    assert [type(m).__name__ for m in sfm.modules()].count("Conv2d") == 2  # one MLP for both directions
    assert sfm.sconv[0].out_channels == 32 and SFM(768).sconv[0].out_channels == 48
    assert n_params(sfm) == 6_272
    x1, x2 = torch.randn(2, 96, 5, 7), torch.randn(2, 96, 5, 7)
    y1, y2 = sfm(x1, x2)
    a1 = torch.sigmoid(sfm.sconv(F.adaptive_max_pool2d(x1 - x2, 1)))
    a2 = torch.sigmoid(sfm.sconv(F.adaptive_max_pool2d(x2 - x1, 1)))
    torch.testing.assert_close(y1, x1 * (1 + a1))
    torch.testing.assert_close(y2, x2 * (1 + a2))
    assert not torch.allclose(a1, a2)  # GMP(x2 - x1) != -GMP(x1 - x2): the directions differ


def test_cfm_channel_softmax_and_output() -> None:
    torch.manual_seed(0)
    cfm = CFM(40).eval()
    assert n_params(cfm) == 22 * 40 * 40 + 104 * 40
    x1, x2 = torch.randn(3, 40, 6, 5), torch.randn(3, 40, 6, 5)
    with torch.no_grad():
        u1, u2, f1, f2 = cfm.channel_weights(x1, x2)
        out = cfm(x1, x2)
    for f in (f1, f2):
        torch.testing.assert_close(f.sum(dim=1), torch.ones(3, 6, 5))  # softmax over channels per pixel
    torch.testing.assert_close(out, u1 * f1 + u2 * f2)
    g1 = u1 / x1  # the gate is one value per (sample, channel), in (0, 1)
    assert torch.allclose(g1, g1[..., :1, :1].expand_as(g1), atol=1e-5) and bool(((g1 > 0) & (g1 < 1)).all())


def test_cfm_trains_with_a_single_sample() -> None:
    """Reference BN on (1, C, 1, 1) fails; our documented fallback uses running stats."""
    cfm = CFM(8).train()
    out = cfm(torch.randn(1, 8, 4, 4), torch.randn(1, 8, 4, 4))
    assert out.shape == (1, 8, 4, 4)
    strict = CFM(8, single_sample="error").train()
    with pytest.raises(ValueError):
        strict(torch.randn(1, 8, 4, 4), torch.randn(1, 8, 4, 4))


def test_next_stage_receives_normed_output(model: ASANet) -> None:
    seen: dict[str, torch.Tensor] = {}
    hooks = []
    for name, bb in (("r", model.backbone_optical), ("s", model.backbone_sar)):
        for i in range(3):
            hooks.append(bb.stage_norm(i).register_forward_hook(
                lambda m, inp, out, k=f"{name}norm{i}": seen.__setitem__(k, out)))
            hooks.append(bb.stages[i + 1].register_forward_pre_hook(
                lambda m, inp, k=f"{name}in{i + 1}": seen.__setitem__(k, inp[0])))
            # and it is normed a second time by the downsample's own LN before the 2x2 conv
            assert type(bb.stages[i + 1].downsample[0]).__name__ == "LayerNorm2d"
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32), torch.randn(1, 1, 32, 32))
    for h in hooks:
        h.remove()
    for name in "rs":
        for i in range(3):
            assert seen[f"{name}in{i + 1}"] is seen[f"{name}norm{i}"]


def test_shapes_odd_size_eval_and_train() -> None:
    torch.manual_seed(0)
    model = small(optical_channels=4, sar_channels=2).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 4, 250, 250), torch.randn(1, 2, 250, 250))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 5, 250, 250)
    model.train()
    logits, aux = model(torch.randn(2, 4, 37, 45), torch.randn(2, 2, 37, 45))
    assert logits.shape == aux.shape == (2, 5, 37, 45)


def test_padding_keeps_the_aligned_part(model: ASANet) -> None:
    """With pad_multiple=32 a tile padded by the caller and a tile padded by the model agree."""
    xo, xs = torch.randn(1, 3, 40, 33), torch.randn(1, 1, 40, 33)
    with torch.no_grad():
        a = model(xo, xs)
        b = model(F.pad(xo, (0, 31, 0, 24)), F.pad(xs, (0, 31, 0, 24)))
    assert a.shape == (1, 5, 40, 33)
    torch.testing.assert_close(a, b[..., :40, :33])


def test_sentinel2_bands_and_switches() -> None:
    torch.manual_seed(0)
    pwa = small(optical_channels=12, sar_channels=1, use_sfm=False, fusion="add", aux_head=False).eval()
    assert pwa.sfms is None and pwa.auxiliary_head is None
    feats: list[torch.Tensor] = []
    xr = torch.randn(1, 12, 32, 32)
    xs = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        f = pwa.encode(xr, xs)
        r, s = xr, xs
        for i in range(4):
            r = pwa.backbone_optical.stage_norm(i)(pwa.backbone_optical.run_stage(i, r))
            s = pwa.backbone_sar.stage_norm(i)(pwa.backbone_sar.run_stage(i, s))
            feats.append(r + s)
    for a, b in zip(f, feats):
        torch.testing.assert_close(a, b)
    assert small(decoder_channels=48).decode_head.conv_seg.in_channels == 48
    with pytest.raises(ValueError, match="fusion"):
        small(fusion="concat")


def test_bad_inputs_raise_clear_errors(model: ASANet) -> None:
    with pytest.raises(ValueError, match="rebuild the model"):
        model(torch.randn(1, 4, 32, 32), torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="resample SAR"):
        model(torch.randn(1, 3, 64, 32), torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="convnextv2_tiny"):
        small(backbone="resnet50")
    with pytest.raises(ValueError, match="2 classes"):
        small(num_classes=1)


def test_training_step_loss_and_gradients() -> None:
    torch.manual_seed(0)
    model = small().train()
    xo, xs = torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32)
    target = torch.randint(0, 5, (2, 32, 32))
    target[0, :10] = IGNORE_INDEX
    torch.manual_seed(1)
    loss, logs = model.training_step([xo, xs], target)
    torch.manual_seed(1)
    logits, aux = model(xo, xs)
    want = (F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
            + 0.4 * F.cross_entropy(aux, target, ignore_index=IGNORE_INDEX))
    torch.testing.assert_close(loss, want)
    assert math.isclose(logs["loss"], logs["loss_main"] + 0.4 * logs["loss_aux"], rel_tol=1e-5)
    loss.backward()
    assert model.auxiliary_head.conv_seg.weight.grad.abs().sum() > 0
    assert model.backbone_sar.stem[0].weight.grad.abs().sum() > 0
    # an unlabelled batch gives a finite zero loss, not NaN
    z, _ = model.training_step([xo, xs], torch.full((2, 32, 32), IGNORE_INDEX))
    assert z.item() == 0.0


def test_param_groups_stage_wise_decay(model: ASANet) -> None:
    groups = model.param_groups(lr=1e-4, weight_decay=0.05)
    scales = sorted({round(g["lr_scale"], 3) for g in groups})
    assert scales == [0.478, 0.531, 0.59, 0.656, 0.729, 1.0]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    by_param = {id(p): g for g in groups for p in g["params"]}
    bo = model.backbone_optical
    checks = [(bo.stem[0].weight, 0.9 ** 7, 0.05), (model.backbone_sar.stages[2].downsample[1].weight, 0.9 ** 7, 0.05),
              (bo.stages[0].blocks[0].mlp.fc1.weight, 0.9 ** 6, 0.05), (bo.stages[3].blocks[1].conv_dw.bias, 0.9 ** 3, 0),
              (bo.stages[2].blocks[0].mlp.grn.weight, 0.9 ** 4, 0), (bo.norm0.weight, 1.0, 0),
              (model.fusions[1].catconv1.weight, 1.0, 0.05), (model.decode_head.conv_seg.weight, 1.0, 0.05)]
    for p, scale, wd in checks:
        g = by_param[id(p)]
        assert math.isclose(g["lr"], 1e-4 * scale, rel_tol=1e-9) and g["weight_decay"] == wd
    torch.optim.AdamW(groups)  # the groups are valid optimiser input


def test_pretrained_kwarg_loads_both_branches(tmp_path) -> None:
    from mmlc.models.convnextv2 import convnextv2
    from safetensors.torch import save_file

    torch.manual_seed(0)
    src = convnextv2("atto")
    sd = {k: v for k, v in src.state_dict().items() if not k.startswith(("norm0", "norm1", "norm2", "norm3"))}
    sd["head.fc.weight"] = torch.zeros(10, 320)
    path = tmp_path / "atto.safetensors"
    save_file(sd, str(path))
    model = small(sar_channels=1, pretrained=str(path))
    torch.testing.assert_close(model.backbone_optical.stages[1].blocks[0].mlp.fc1.weight,
                               src.stages[1].blocks[0].mlp.fc1.weight)
    torch.testing.assert_close(model.backbone_sar.stem[0].weight, src.stem[0].weight.sum(1, keepdim=True))


def test_a_few_adamw_steps_fit_a_fixed_batch() -> None:
    """The contract end to end: param_groups -> AdamW -> training_step -> backward lowers the loss."""
    torch.manual_seed(0)
    model = small(num_classes=3, drop_path_rate=0.0, dropout=0.0).train()
    xo, xs = torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32)
    target = (xo[:, 0] > 0).long() + (xs[:, 0] > 1).long()  # a learnable pixel-wise rule
    opt = torch.optim.AdamW(model.param_groups(lr=1e-2, weight_decay=0.05))
    losses = []
    for _ in range(8):
        loss, _ = model.training_step([xo, xs], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(b < a for a, b in zip(losses[:5], losses[1:5])) and losses[-1] < 0.9 * losses[0], losses
