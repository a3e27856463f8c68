"""DAS2F-Model: parameter counts of spec das2f.md s. 9, index maps of s. 3/4, the cross-modal swap,
AALF closed form, the registry contract. Forward passes use patch_size 4 (L = 16) to stay fast."""
from __future__ import annotations

import pytest
import torch
from mmlc.models import IGNORE_INDEX, build_model, get_spec
from mmlc.models.das2f import (
    AALF,
    AALFBlock,
    CMDAStage,
    CrossBlock,
    CrossCore,
    SPVMBlock,
    SPVMCore,
    cross_merge,
    cross_merge_tokens,
    cross_scan,
    cross_scan_tokens,
    pixel_shuffle_tokens,
)
from torch import nn


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def small() -> nn.Module:
    torch.manual_seed(0)
    return build_model("das2f", num_classes=5, variant="nanjing", patch_size=4).eval()


def _batch(b=2, p=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 4, p, p, generator=g), torch.randn(b, 1, 4 * p, 4 * p, generator=g)


def test_parameter_counts_match_reference():
    assert n_params(build_model("das2f", num_classes=11, variant="nanjing")) == 17_416_531
    assert n_params(build_model("das2f", num_classes=11, variant="xian")) == 17_107_315
    assert n_params(build_model("das2f", num_classes=3, variant="xian")) == 17_096_040 + 1_025 * 3


def test_module_parameter_counts():
    assert n_params(SPVMCore()) == 43_880
    assert n_params(SPVMBlock()) == 77_096
    assert n_params(CrossCore()) == 87_632
    assert n_params(CrossBlock()) == 153_936
    assert n_params(CMDAStage()) == 308_128
    assert n_params(AALF()) == 528
    assert n_params(AALFBlock()) == 1_088


def test_all_layernorms_eps_1e5_and_ssm_init():
    m = build_model("das2f", num_classes=2, variant="xian", patch_size=4)
    lns = [x for x in m.modules() if isinstance(x, nn.LayerNorm)]
    assert lns and all(x.eps == 1e-5 for x in lns)
    core = m.stages[0].spvm_ms.core.branch
    assert torch.allclose(core.A_logs[5], torch.log(torch.arange(1, 25.0)))
    assert torch.all(core.Ds == 1)
    dt = torch.nn.functional.softplus(core.dt_projs_bias)
    assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6


def test_scan_orders_follow_spec_and_merge_is_adjoint():
    H = W = 16
    f = torch.arange(256.0).view(1, 1, 256)
    u = cross_scan(f, H, W)[0, :, 0].long()
    p = torch.arange(256)
    order1 = 16 * (p % 16) + p // 16
    assert torch.equal(u[0], p) and torch.equal(u[1], order1)
    assert torch.equal(u[2], p.flip(0)) and torch.equal(u[3], order1.flip(0))
    # merge(scan(x)) == 4x, and merge is the adjoint of scan, also on a non-square grid
    for h, w in ((16, 16), (3, 5)):
        x = torch.randn(2, 3, h * w)
        assert torch.allclose(cross_merge(cross_scan(x, h, w), h, w), 4 * x)
        y = torch.randn(2, 4, 3, h * w)
        assert torch.allclose((cross_scan(x, h, w) * y).sum(), (x * cross_merge(y, h, w)).sum(), atol=1e-4)


def test_token_major_scan_and_merge_equal_the_channel_major_ones():
    """The layouts the model runs on (channels-last grid, token-major sequences) give the same numbers."""
    for h, w in ((16, 16), (3, 5)):
        x = torch.randn(2, h, w, 6)
        ref = cross_scan(x.permute(0, 3, 1, 2).reshape(2, 6, h * w), h, w)       # (B, 4, D, L)
        assert torch.equal(cross_scan_tokens(x), ref.permute(0, 3, 1, 2))       # (B, L, 4, D)
        y = torch.randn(2, h * w, 4, 6)
        merged = cross_merge(y.permute(0, 2, 3, 1), h, w)                        # (B, D, L)
        assert torch.equal(cross_merge_tokens(y, h, w), merged.view(2, 6, h, w).permute(0, 2, 3, 1))


def test_pixel_shuffle_tokens_index_map():
    x = torch.randn(2, 16, 16, 64)
    out = pixel_shuffle_tokens(x)
    assert out.shape == (2, 1024, 16)
    for h, w, i, j, c in ((0, 0, 0, 0, 0), (3, 11, 1, 0, 7), (15, 15, 1, 1, 15), (9, 2, 0, 1, 4)):
        assert out[1, 32 * (2 * h + i) + (2 * w + j), c] == x[1, h, w, 4 * c + 2 * i + j]


def test_aalf_closed_form_equals_outer_product_mean():
    torch.manual_seed(0)
    f = AALF()
    a, b = torch.randn(2, 30, 16), torch.randn(2, 30, 16)
    g = torch.sigmoid(f.gate(torch.cat([a, b], -1)))
    outer = torch.einsum("bti,btj->btij", a * g, b).mean(2)
    assert torch.allclose(f(a, b), outer, atol=1e-6)


def test_cross_core_swaps_ssm_parameters():
    """MS output is scanned with the PAN branch's A (and vice versa), gated by its own z."""
    torch.manual_seed(0)
    core = CrossCore().eval()
    m, p = torch.randn(1, 4, 4, 64), torch.randn(1, 4, 4, 64)
    with torch.no_grad():
        om, op = core(m, p)
        core.branch_pan.A_logs.add_(1.0)
        om2, op2 = core(m, p)
        core.branch_pan.A_logs.sub_(1.0)
        core.branch_ms.in_proj.weight.mul_(2.0)  # the MS gate only touches the MS output
        om3, op3 = core(m, p)
    assert not torch.allclose(om, om2) and torch.equal(op, op2)
    assert not torch.allclose(om, om3) and torch.equal(op, op3)


def test_forward_shapes_determinism_and_scan_methods(small):
    ms, pan = _batch()
    with torch.no_grad():
        y1, y2 = small(ms, pan), small(ms, pan)
        small.set_scan_method("sequential")
        y_seq = small(ms, pan)
        small.set_scan_method("auto")
    assert y1.shape == (2, 5) and y1.dtype == torch.float32
    assert torch.equal(y1, y2)
    assert (y1 - y_seq).abs().max().item() <= 1e-5
    # per-sample independence in eval mode (BatchNorm uses running stats)
    with torch.no_grad():
        y_one = small(ms[1:], pan[1:])
    assert torch.allclose(y_one, y1[1:], atol=1e-5)


def test_xian_full_size_forward():
    torch.manual_seed(0)
    m = build_model("das2f", num_classes=11, variant="xian").eval()
    ms, pan = _batch(b=1, p=16)
    with torch.no_grad():
        y = m(ms, pan)
    assert y.shape == (1, 11) and torch.isfinite(y).all()


def test_bad_shapes_raise(small):
    with pytest.raises(ValueError, match="expects ms"):
        small(torch.randn(1, 4, 4, 4), torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match="variant"):
        build_model("das2f", num_classes=3, variant="paris")


def test_training_step_ignores_unlabelled():
    torch.manual_seed(0)
    m = build_model("das2f", num_classes=3, variant="xian", patch_size=4).train()
    ms, pan = _batch(b=4, p=4)
    target = torch.tensor([0, 2, IGNORE_INDEX, 1])
    loss, logs = m.training_step([ms, pan], target)
    loss.backward()
    assert torch.isfinite(loss) and logs["loss"] == pytest.approx(float(loss.detach()))
    assert 0.0 <= logs["acc"] <= 1.0
    assert m.stages[0].cross.core.branch_pan.A_logs.grad is not None
    assert m.classifier[0].weight.grad.abs().sum() > 0
    m.zero_grad()
    loss0, logs0 = m.training_step([ms, pan], torch.full((4,), IGNORE_INDEX))
    loss0.backward()
    assert float(loss0) == 0.0 and logs0["loss"] == 0.0
    groups = m.param_groups(1e-3, 0.05)
    assert groups[1]["weight_decay"] == 0.0 and len(groups[1]["params"]) == 2 * 4  # A_logs, Ds x 4 branches (2 SPVM + cross)


def test_registry_spec():
    spec = get_spec("das2f")
    assert spec.head_kind == "patch" and spec.variants == ("nanjing", "xian")
    ms, pan = spec.modalities
    assert (ms.name, ms.default_bands, ms.grid_ratio, ms.patch_size, ms.patch_anchor) == ("ms", 4, 1, 16, 7)
    assert (pan.name, pan.default_bands, pan.grid_ratio, pan.patch_size, pan.patch_anchor) == ("pan", 1, 4, 64, 28)
    assert spec.channel_kwargs([4, 1]) == {"ms_channels": 4, "pan_channels": 1}
    kw = spec.channel_kwargs([3, 2])
    m = build_model("das2f", num_classes=2, variant="xian", patch_size=4, **kw).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 4, 4), torch.randn(1, 2, 16, 16)).shape == (1, 2)
    assert spec.recipe.batch_size == 64


def test_classifier_width_option_shrinks_only_the_head() -> None:
    """classifier_hidden (mmlc option for small built-ins) changes only the two head layers."""
    from mmlc.models import build_model

    full = build_model("das2f", num_classes=3, variant="xian")
    small = build_model("das2f", num_classes=3, variant="xian", classifier_hidden=128)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    head = lambda h: 16384 * h + h + h * 3 + 3  # noqa: E731
    assert count(full) - count(small) == head(1024) - head(128)
