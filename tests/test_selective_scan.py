"""Selective scan: the chunked and associative forms equal the sequential reference, which itself
follows mamba_ssm's selective_scan_fn formulas (spec das2f.md section 5)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from mmlc.models import selective_scan as ss_module
from mmlc.models.selective_scan import (
    selective_scan,
    selective_scan_associative,
    selective_scan_chunked,
    selective_scan_sequential,
    selective_scan_streaming,
    selective_scan_tokens,
)


def _inputs(b=1, d=64, L=256, n=24, g=2, seed=0, delta_scale=1.0, a_scale=1.0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)  # noqa: E731
    u, delta = r(b, d, L), r(b, d, L) * delta_scale
    A = -torch.exp(torch.rand(d, n, generator=gen, dtype=dtype) * 3.2) * a_scale  # -1 .. -24 like S4D-real
    return u, delta, A, r(b, g, n, L), r(b, g, n, L), r(d), r(d) * 0.5 - 2.0


def _numpy_scan(u, delta, A, B, C, D, bias):
    """Explicit float64 loops over every index: the formulas of spec section 5, nothing vectorised."""
    u, delta, A, B, C, D, bias = (x.double().numpy() for x in (u, delta, A, B, C, D, bias))
    b_, d_, L = u.shape
    n_, g_ = A.shape[1], B.shape[1]
    y = np.zeros_like(u)
    for b in range(b_):
        for d in range(d_):
            g = d // (d_ // g_)
            h = np.zeros(n_)
            for t in range(L):
                x = delta[b, d, t] + bias[d]
                dt = np.log1p(np.exp(x)) if x <= 20 else x
                h = np.exp(dt * A[d]) * h + dt * B[b, g, :, t] * u[b, d, t]
                y[b, d, t] = (C[b, g, :, t] * h).sum() + D[d] * u[b, d, t]
    return y


def test_sequential_matches_explicit_formulas():
    args = _inputs(b=2, d=4, L=7, n=3, g=2)
    y = selective_scan_sequential(*args, delta_softplus=True)
    np.testing.assert_allclose(y.numpy(), _numpy_scan(*args), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fast", [selective_scan_chunked, selective_scan_streaming, selective_scan_associative])
def test_parallel_equals_sequential_random_L256(fast):
    args = _inputs(b=2, d=64, L=256, g=2)
    ref = selective_scan_sequential(*args, delta_softplus=True)
    out = fast(*args, delta_softplus=True)
    assert out.shape == (2, 64, 256) and out.dtype == torch.float32
    assert (out - ref).abs().max().item() <= 1e-4
    assert ref.abs().max().item() > 1.0  # a non-trivial output, not all zeros


@pytest.mark.parametrize("chunk", [1, 5, 16, 32, 300])
def test_chunked_any_chunk_and_ragged_length(chunk):
    args = _inputs(b=1, d=8, L=37, n=5, g=1)
    ref = selective_scan_sequential(*args, delta_softplus=True)
    assert (selective_scan_chunked(*args, delta_softplus=True, chunk=chunk) - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("case", ["L1", "very_negative_A", "large_delta"])
def test_edge_cases(case):
    if case == "L1":
        args = _inputs(b=2, d=8, L=1, n=4, g=1)
    elif case == "very_negative_A":
        args = _inputs(b=1, d=16, L=256, n=8, g=1, a_scale=1e4)      # decays underflow to exactly 0
    else:
        args = _inputs(b=1, d=16, L=256, n=8, g=1, delta_scale=80.0)  # softplus past its threshold 20
    ref = selective_scan_sequential(*args, delta_softplus=True)
    assert torch.isfinite(ref).all()
    for fast in (selective_scan_chunked, selective_scan_streaming, selective_scan_associative):
        out = fast(*args, delta_softplus=True)
        assert torch.isfinite(out).all()
        assert (out - ref).abs().max().item() <= 1e-4 * max(1.0, ref.abs().max().item())
    if case == "very_negative_A":  # no memory: h_t = dt_t B_t u_t, so y_t is local
        u, delta, A, B, C, D, bias = args
        dt = torch.nn.functional.softplus(delta + bias.view(1, -1, 1))
        local = (C[:, 0] * B[:, 0]).sum(1, keepdim=True) * dt * u + D.view(1, -1, 1) * u
        assert torch.allclose(ref, local, atol=1e-4, rtol=1e-4)


def test_L1_is_one_euler_step():
    u, delta, A, B, C, D, bias = _inputs(b=1, d=4, L=1, n=3, g=1)
    dt = torch.nn.functional.softplus(delta + bias.view(1, -1, 1))
    expected = (B[:, 0] * C[:, 0]).sum(1, keepdim=True) * dt * u + D.view(1, -1, 1) * u
    assert torch.allclose(selective_scan_chunked(u, delta, A, B, C, D, bias, True), expected, atol=1e-6)


def test_gradients_match_sequential():
    base = _inputs(b=1, d=8, L=40, n=4, g=2, seed=3)
    grads = []
    for fn in (selective_scan_sequential, selective_scan_chunked):
        args = [x.clone().double().requires_grad_(True) for x in base]
        fn(*args, delta_softplus=True).pow(2).sum().backward()
        grads.append([a.grad for a in args])
    for gs, gc in zip(*grads):
        assert torch.allclose(gs, gc, rtol=1e-9, atol=1e-9)


def test_no_bias_no_D_no_softplus_and_3d_B():
    u, delta, A, B, C, _, _ = _inputs(b=1, d=4, L=9, n=3, g=1)
    delta = delta.abs()
    ref = selective_scan_sequential(u, delta, A, B[:, 0], C[:, 0])
    assert torch.allclose(selective_scan_chunked(u, delta, A, B[:, 0], C[:, 0], chunk=4), ref, atol=1e-6)
    # without D and bias the output is linear in u
    assert torch.allclose(selective_scan_chunked(u * 2, delta, A, B, C), ref * 2, atol=1e-5)


def test_low_precision_inputs_accumulate_in_fp32_and_keep_dtype():
    args32 = _inputs(b=1, d=8, L=64, n=4, g=1)
    args16 = [x.to(torch.bfloat16) for x in args32]
    out = selective_scan(*args16, delta_softplus=True)
    assert out.dtype == torch.bfloat16
    ref = selective_scan_sequential(*[x.float() for x in args16], delta_softplus=True)
    assert (out.float() - ref).abs().max().item() <= 0.02 * ref.abs().max().item()


def test_dispatch_and_errors():
    args = _inputs(b=1, d=4, L=8, n=2, g=1)
    assert torch.equal(selective_scan(*args, True, method="auto"), selective_scan_streaming(*args, True))
    with pytest.raises(RuntimeError, match="mamba_ssm"):
        selective_scan(*args, True, method="cuda")  # CPU tensors: no kernel
    with pytest.raises(ValueError, match="unknown"):
        selective_scan(*args, True, method="magic")  # type: ignore[arg-type]
    u, delta, A, B, C, D, bias = args
    with pytest.raises(ValueError, match="A must be"):
        selective_scan(u, delta, A[:3], B, C, D, bias)
    with pytest.raises(ValueError, match="B and C"):
        selective_scan(u, delta, A, B[..., :5], C, D, bias)
    with pytest.raises(ValueError, match="divisible"):
        selective_scan(u, delta, A, B.expand(1, 3, 2, 8), C.expand(1, 3, 2, 8), D, bias)


@pytest.mark.parametrize("blocks", [False, True])
def test_streaming_gradients_match_sequential(monkeypatch, blocks):
    """The hand-written backward of the streaming form equals autograd through the reference,
    also with several batch blocks, ragged chunks and several backward blocks."""
    if blocks:
        monkeypatch.setattr(ss_module, "STREAM_BLOCK_ELEMS", 2 * 8 * 4)     # 2 samples per block
        monkeypatch.setattr(ss_module, "STREAM_CHUNK", 3)                  # 40 = 13 x 3 + 1
        monkeypatch.setattr(ss_module, "STREAM_BACKWARD_ELEMS", 2 * 40 * 8 * 4)
    base = _inputs(b=5, d=8, L=40, n=4, g=2, seed=3)
    grads = []
    for fn in (selective_scan_sequential, selective_scan_streaming):
        args = [x.clone().double().requires_grad_(True) for x in base]
        out = fn(*args, delta_softplus=True)
        (out.pow(2).sum() + out[:, :, 7].sum()).backward()
        grads.append([a.grad for a in args])
    for gs, gc in zip(*grads):
        assert gs.abs().max() > 0
        assert torch.allclose(gs, gc, rtol=1e-9, atol=1e-9)


def test_streaming_blocks_and_chunks_do_not_change_the_result(monkeypatch):
    args = _inputs(b=5, d=16, L=37, n=6, g=4)
    ref = selective_scan_streaming(*args, delta_softplus=True)
    monkeypatch.setattr(ss_module, "STREAM_BLOCK_ELEMS", 2 * 16 * 6)
    monkeypatch.setattr(ss_module, "STREAM_CHUNK", 5)
    out = selective_scan_streaming(*args, delta_softplus=True)
    assert (out - ref).abs().max().item() <= 1e-5
    assert (out - selective_scan_sequential(*args, delta_softplus=True)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("method", ["auto", "sequential", "chunked"])
def test_token_major_entry_equals_channel_major(method):
    u, delta, A, B, C, D, bias = _inputs(b=2, d=16, L=50, n=4, g=2)
    ref = selective_scan_sequential(u, delta, A, B, C, D, bias, True)
    out = selective_scan_tokens(u.transpose(1, 2), delta.transpose(1, 2), A, B.permute(0, 3, 1, 2),
                                C.permute(0, 3, 1, 2), D, bias, True, method=method)
    assert out.shape == (2, 50, 16)
    assert (out.transpose(1, 2) - ref).abs().max().item() <= 1e-4
    with pytest.raises(ValueError, match="B and C"):
        selective_scan_tokens(u.transpose(1, 2), delta.transpose(1, 2), A, B, C, D, bias, True, method=method)
    with pytest.raises(ValueError, match="A must be"):
        selective_scan_tokens(u.transpose(1, 2), delta.transpose(1, 2), A[:3], B.permute(0, 3, 1, 2),
                              C.permute(0, 3, 1, 2), D, bias, True, method=method)
