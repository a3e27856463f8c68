"""HFD-Net network (shapes, alignment warp, loss, registry) and HFDM distillation on real pairs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmlc.models import IGNORE_INDEX, build_model, get_spec
from mmlc.models.hfd_distill import (
    HFDDistiller,
    channel_wise_distillation,
    normalised_mse,
    pixel_kd,
)
from mmlc.models.hfdnet import FlowAlign, HFDNet, flow_warp
from mmlc.models.resnet import build_resnet


def _small(in_channels: int, num_classes: int = 4, **kw: object) -> HFDNet:
    return build_model("hfdnet", num_classes=num_classes, in_channels=in_channels, encoder="resnet18",
                       channels=32, **kw)


# ---------------------------------------------------------------- registry and shapes
def test_registry_spec() -> None:
    spec = get_spec("hfdnet")
    assert spec.head_kind == "dense"
    assert [m.name for m in spec.modalities] == ["sar"] and spec.modalities[0].default_bands == 2
    assert spec.channel_kwargs([10]) == {"in_channels": 10}
    assert set(spec.variants) == {"resnet18", "resnet34", "resnet50"}
    assert spec.recipe.optimizer == "sgd" and spec.recipe.lr == 0.01 and spec.recipe.poly_power == 0.9
    with pytest.raises(ValueError, match="unknown HFD-Net encoder"):
        build_model("hfdnet", num_classes=3, encoder="resnet101")


@pytest.mark.parametrize("size,grid", [(120, (30, 15, 8, 4)), (125, (32, 16, 8, 4))])
def test_logits_and_feature_levels(size: int, grid: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    m = build_model("hfdnet", num_classes=5, in_channels=2, encoder="resnet18").eval()  # spec width 256
    x = torch.randn(1, 2, size, size)
    with torch.no_grad():
        out = m(x)
        logits, feats = m.forward_features(x)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 5, size, size)
    torch.testing.assert_close(out, logits)
    expected = dict(zip(("p2", "p3", "p4", "p5"), grid), fused=grid[0])
    assert {k: tuple(v.shape) for k, v in feats.items()} == {k: (1, 256, s, s) for k, s in expected.items()}
    assert m.feature_channels == {k: 256 for k in expected}


def test_resnet50_encoder_size_and_teacher_bands() -> None:
    m = build_model("hfdnet", num_classes=2, in_channels=10, encoder="resnet50")
    enc = sum(p.numel() for p in m.encoder.parameters())
    # torchvision resnet50 25,557,032 minus its fc (2048*1000 + 1000), conv1 for 10 bands instead of 3
    assert enc == 25_557_032 - 2_049_000 + 64 * 7 * 7 * (10 - 3)
    assert m.decoder.laterals[0].conv.in_channels == 256 and m.decoder.context.ppm[0][1].conv.in_channels == 2048


def test_wrong_band_count_or_single_tile_batch_is_a_clear_error() -> None:
    m = _small(2)
    with pytest.raises(ValueError, match="built for 2 bands"):
        m(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="at least 2 tiles"):
        m.train()(torch.randn(1, 2, 64, 64))
    assert m.eval()(torch.randn(1, 2, 64, 64)).shape == (1, 4, 64, 64)


def test_aspp_context_and_unaligned_ablation() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 2, 70, 90)
    aspp = _small(2, context="aspp").eval()
    plain = _small(2, align=False).eval()
    with torch.no_grad():
        logits, feats = aspp.forward_features(x)
        assert logits.shape == (1, 4, 70, 90) and feats["p5"].shape == (1, 32, 3, 3)
        assert plain(x).shape == (1, 4, 70, 90)
    assert not any(fa.enabled for fa in plain.decoder.top_down) and all(fa.enabled for fa in aspp.decoder.top_down)
    with pytest.raises(ValueError, match="context"):
        _small(2, context="fpn")
    # zero-initialised flows: an untrained aligned network computes exactly the unaligned one
    aligned = _small(2).eval()
    plain.load_state_dict(aligned.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(aligned(x), plain(x), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- alignment (HFAM)
@pytest.mark.parametrize("h,w", [(30, 30), (15, 17), (125, 125)])
def test_zero_flow_warp_is_identity_and_bilinear_resize(h: int, w: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    assert (flow_warp(x, torch.zeros(2, 2, h, w, dtype=torch.float64)) - x).abs().max() < 1e-6
    up = flow_warp(x, torch.zeros(2, 2, 2 * h + 1, 3 * w, dtype=torch.float64))
    ref = F.interpolate(x, size=(2 * h + 1, 3 * w), mode="bilinear", align_corners=False)
    assert (up - ref).abs().max() < 1e-6
    x32 = x.float()
    assert (flow_warp(x32, torch.zeros(2, 2, h, w)) - x32).abs().max() < 1e-4


def test_flow_is_in_output_pixels() -> None:
    ramp = torch.arange(6.0, dtype=torch.float64).view(1, 1, 1, 6).repeat(1, 1, 4, 1)
    flow = torch.zeros(1, 2, 4, 6, dtype=torch.float64)
    flow[:, 0] = 1.0  # sample one pixel to the right
    out = flow_warp(ramp, flow)[0, 0]
    torch.testing.assert_close(out[:, :5], ramp[0, 0, :, 1:], atol=1e-9, rtol=0)
    torch.testing.assert_close(out[:, 5], ramp[0, 0, :, 5], atol=1e-9, rtol=0)  # border clamp
    flow[:, 0] = 0.0
    flow[:, 1] = -0.5  # half a pixel up on a vertical ramp
    vert = ramp.transpose(2, 3).contiguous()[..., :4, :4]
    torch.testing.assert_close(flow_warp(vert, flow[..., :4])[0, 0, 1:], vert[0, 0, 1:] - 0.5)


def test_flow_align_starts_as_upsampling_and_learns() -> None:
    torch.manual_seed(0)
    fa = FlowAlign(8)
    coarse, fine = torch.randn(2, 8, 5, 5, requires_grad=True), torch.randn(2, 8, 10, 10)
    out = fa(coarse, fine)
    torch.testing.assert_close(out, F.interpolate(coarse, size=(10, 10), mode="bilinear", align_corners=False),
                               atol=1e-5, rtol=0)
    (out * fine).sum().backward()
    assert fa.flow.weight.grad is not None and fa.flow.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- loss and groups
def test_training_step_ce_ignores_unlabelled() -> None:
    torch.manual_seed(0)
    m = _small(2, num_classes=3, dropout=0.0).eval()
    x = torch.randn(2, 2, 32, 32)
    target = torch.randint(0, 3, (2, 32, 32))
    target[:, :10] = IGNORE_INDEX
    loss, logs = m.training_step([x], target)
    logits = m(x)
    valid = target != IGNORE_INDEX
    manual = F.cross_entropy(logits.permute(0, 2, 3, 1)[valid], target[valid])
    torch.testing.assert_close(loss, manual)
    assert logs["ce"] == pytest.approx(float(manual.detach()))
    empty, _ = m.training_step([x], torch.full((2, 32, 32), IGNORE_INDEX))
    assert float(empty.detach()) == 0.0 and empty.requires_grad
    dice_m = _small(2, num_classes=3, dropout=0.0, dice_weight=1.0).eval()
    dice_m.load_state_dict(m.state_dict())
    loss_d, logs_d = dice_m.training_step([x], target)
    assert 0.0 < logs_d["dice"] < 1.0
    torch.testing.assert_close(loss_d, manual + logs_d["dice"])


def test_param_groups_cover_every_parameter_once() -> None:
    m = _small(2, encoder_lr_mult=0.1)
    groups = m.param_groups(0.01, 1e-4)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(m.parameters()))
    assert groups[0]["lr"] == pytest.approx(0.001) and groups[1]["lr"] == 0.01


def test_encoder_loads_imagenet_layout(tmp_path: Path) -> None:
    sd = build_resnet("resnet18", num_classes=1000).state_dict()
    torch.save(sd, tmp_path / "resnet18.pth")
    m = _small(2)
    rep = m.load_encoder_weights(tmp_path / "resnet18.pth")
    assert rep.adapted_first_conv and rep.missing == []
    assert torch.equal(m.encoder.layer3[1].conv2.weight, sd["layer3.1.conv2.weight"])
    torch.testing.assert_close(m.encoder.conv1.weight.sum(1), sd["conv1.weight"].sum(1))


# ---------------------------------------------------------------- distillation losses
def test_distillation_loss_identities() -> None:
    torch.manual_seed(0)
    t = torch.randn(2, 6, 9, 11)
    # standardised MSE ignores a per-channel positive scale and shift of the student
    scale, shift = torch.rand(1, 6, 1, 1) + 0.5, torch.randn(1, 6, 1, 1)
    assert float(normalised_mse(t * scale + shift, t)) < 1e-8
    assert float(normalised_mse(-t, t)) == pytest.approx(4.0, rel=1e-4)  # (2 z)^2 with unit-variance z
    assert float(channel_wise_distillation(t, t)) == pytest.approx(0.0, abs=1e-6)
    assert float(channel_wise_distillation(t * 2, t)) > 0
    z = torch.randn(2, 4, 5, 5)
    assert float(pixel_kd(z, z, 2.0)) == pytest.approx(0.0, abs=1e-6)
    # tau^2 x KL, by hand on one pixel
    zs, zt = torch.tensor([0.0, 1.0]).view(1, 2, 1, 1), torch.tensor([2.0, 0.0]).view(1, 2, 1, 1)
    ps, pt = (zs / 2).softmax(1), (zt / 2).softmax(1)
    assert float(pixel_kd(zs, zt, 2.0)) == pytest.approx(float(4 * (pt * (pt / ps).log()).sum()), rel=1e-5)
    mask = torch.zeros(1, 1, 1, dtype=torch.bool)
    assert float(pixel_kd(zs, zt, 2.0, mask)) == 0.0


def _pair(num_classes: int = 4) -> tuple[HFDNet, HFDNet]:
    torch.manual_seed(0)
    return _small(10, num_classes), _small(2, num_classes)


def test_distiller_freezes_teacher_and_saves_student_only() -> None:
    teacher, student = _pair()
    t_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    d = HFDDistiller(teacher, student)
    d.train()
    assert not teacher.training and student.training and d.adapters.training
    assert all(not p.requires_grad for p in teacher.parameters())
    opt = torch.optim.SGD([g for g in d.param_groups(0.05, 0.0)], lr=0.05, momentum=0.9)
    group_ids = {id(p) for g in d.param_groups(0.05, 0.0) for p in g["params"]}
    assert not group_ids & {id(p) for p in teacher.parameters()}
    assert {id(p) for p in d.adapters.parameters()} <= group_ids
    x_opt, x_sar = torch.randn(2, 10, 32, 32), torch.randn(2, 2, 32, 32)
    target = torch.randint(0, 4, (2, 32, 32))
    for _ in range(2):
        loss, logs = d.training_step([x_opt, x_sar], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(p.grad is None for p in teacher.parameters())
    # BN running statistics included: the teacher did not move
    assert all(torch.equal(t_before[k], v) for k, v in teacher.state_dict().items())
    assert {"seg", "feat", "kd", "ce", "loss", "feat_fused", "feat_p3"} <= set(logs)
    assert logs["loss"] == pytest.approx(logs["seg"] + logs["feat"] + logs["kd"], rel=1e-5)
    sd = d.student_state_dict()
    assert set(sd) == set(student.state_dict())
    assert not any(k.startswith(("adapters", "teacher")) for k in sd)
    fresh = _small(2)
    fresh.load_state_dict(sd, strict=True)
    d.eval()
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(d(x_opt, x_sar), fresh(x_sar))


def test_distiller_options_and_errors() -> None:
    teacher, student = _pair()
    x_opt, x_sar = torch.randn(2, 10, 32, 32), torch.randn(2, 2, 32, 32)
    target = torch.full((2, 32, 32), IGNORE_INDEX)
    d = HFDDistiller(teacher, student, levels=("p5", "fused"), feature_loss="cwd", kd_mask="labelled")
    loss, logs = d.training_step([x_opt, x_sar], target)
    assert logs["kd"] == 0.0 and logs["seg"] == 0.0 and logs["feat"] > 0  # nothing labelled: only features
    assert set(d.adapters) == {"p5", "fused"}
    with pytest.raises(ValueError, match="not exposed"):
        HFDDistiller(teacher, student, levels=("c9",))
    with pytest.raises(ValueError, match="classes"):
        HFDDistiller(teacher, _small(2, num_classes=3))
    with pytest.raises(ValueError, match=r"\[optical, sar\]"):
        d.training_step([x_sar], target)


# ---------------------------------------------------------------- real pairs: teacher, then distillation
def _read(path: Path) -> np.ndarray:
    from osgeo import gdal
    ds = gdal.Open(str(path))
    assert ds is not None, path
    return ds.ReadAsArray().astype(np.float32)


def _standardise(arrays: list[np.ndarray]) -> list[torch.Tensor]:
    stack = np.stack(arrays)
    mean = stack.mean(axis=(0, 2, 3), keepdims=True)[0]
    std = stack.std(axis=(0, 2, 3), keepdims=True)[0] + 1e-6
    return [torch.from_numpy((a - mean) / std) for a in arrays]


def test_distillation_on_bigearthnet_pairs(bigearthnet: Path) -> None:
    stems = sorted(p.name[: -len("__s1_vv_vh_db.tif")] for p in bigearthnet.glob("*__s1_vv_vh_db.tif"))
    assert len(stems) == 4
    s2 = _standardise([_read(bigearthnet / f"{s}__s2_10band_10m.tif") for s in stems])
    s1 = _standardise([_read(bigearthnet / f"{s}__s1_vv_vh_db.tif") for s in stems])
    raw = [_read(bigearthnet / f"{s}__weak_label_s2rules.tif").astype(np.int64) for s in stems]
    labels = [torch.from_numpy(np.where(lab == 0, IGNORE_INDEX, lab - 1)) for lab in raw]  # 1..4 -> 0..3
    crops = [(28, 28)]  # the central 64x64 crop of each pair -> batch of 4
    opt_b = torch.stack([a[:, r:r + 64, c:c + 64] for a in s2 for r, c in crops])
    sar_b = torch.stack([a[:, r:r + 64, c:c + 64] for a in s1 for r, c in crops])
    y_b = torch.stack([a[r:r + 64, c:c + 64] for a in labels for r, c in crops])
    assert opt_b.shape == (4, 10, 64, 64) and sar_b.shape == (4, 2, 64, 64) and int(y_b.max()) == 3

    torch.manual_seed(0)
    teacher, student = _small(10, 4), _small(2, 4)
    teacher.train()
    t_opt = torch.optim.AdamW(teacher.parameters(), lr=2e-3)
    t_losses = []
    for _ in range(6):
        loss, _ = teacher.training_step([opt_b], y_b)
        t_opt.zero_grad()
        loss.backward()
        t_opt.step()
        t_losses.append(float(loss.detach()))
    assert np.mean(t_losses[-3:]) < np.mean(t_losses[:3])

    d = HFDDistiller(teacher, student)
    d.train()
    opt = torch.optim.AdamW(d.param_groups(2e-3, 1e-4))
    totals, parts = [], []
    for _ in range(8):
        loss, logs = d.training_step([opt_b, sar_b], y_b)
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.append(logs["loss"])
        parts.append((logs["seg"], logs["feat"], logs["kd"]))
    assert all(np.isfinite(totals))
    assert np.mean(totals[-3:]) < 0.9 * np.mean(totals[:3]), totals
    assert all(p > 0 for p in parts[0])
    assert not teacher.training
