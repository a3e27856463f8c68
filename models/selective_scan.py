"""Selective scan (the S6 recurrence of Mamba) in plain PyTorch, with a CUDA kernel when present.

Semantics are those of ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn`` as used by
DAS2F (spec ``das2f.md`` section 5), all arithmetic in float32 and the result cast back to the
dtype of ``u`` (float64 inputs are computed in float64)::

    delta'[b,d,l] = softplus(delta[b,d,l] + delta_bias[d])          (if delta_softplus)
    dA[b,d,l,n]   = exp(delta'[b,d,l] * A[d,n])                      (zero-order hold for A)
    dBu[b,d,l,n]  = delta'[b,d,l] * B[b,g(d),n,l] * u[b,d,l]          (Euler step for B)
    h[l] = dA[l] * h[l-1] + dBu[l],  h[-1] = 0
    y[b,d,l]      = sum_n C[b,g(d),n,l] * h[b,d,l,n] + D[d] * u[b,d,l]

with ``g(d) = d // (dim / G)`` for ``G`` groups of ``B``/``C`` (DAS2F batches its 4 scan
directions, or 8 for both modalities, as groups).

Four pure-PyTorch forms are provided, all differentiable by autograd:

* :func:`selective_scan_sequential`: the reference, as mamba_ssm's ``selective_scan_ref``:
  ``dA``/``dBu`` for all tokens first ((batch, dim, L, N) tensors), then one step per token.
* :func:`selective_scan_chunked`: the parallel form. Chunks of ``T`` tokens are scanned all at
  once (T vectorised steps), the state is carried between chunks (L/T small steps) and added
  back through the chunk's cumulative decay ``exp(A * cumsum(delta'))``. 2T + L/T Python steps,
  no (batch, dim, L, N) tensor materialised, and nothing that can overflow.
* :func:`selective_scan_streaming`: one step per token on a cache-sized block of the batch
  (``STREAM_BLOCK_ELEMS`` state elements): every ``STREAM_CHUNK`` tokens are discretised by one
  ``exp`` and one outer product into preallocated buffers, the recurrence is one in-place
  ``addcmul`` per token, the outputs one batched matmul per chunk; the state is laid out
  (G, N, dim/G) so each op runs along contiguous channels. Its backward is hand-written
  (mamba's selective-scan gradients, states recomputed per block), so training stores no
  per-token state. :func:`selective_scan_tokens` runs it on token-major (batch, L, dim) tensors.
* :func:`selective_scan_associative`: the Hillis-Steele scan over ``(a, b)`` pairs of spec
  section 5 (``log2 L`` steps, O(L log L) work, materialised); kept for comparison.

On a CPU the scan is bound by memory traffic (a few elementwise passes over batch x dim x L x N
values), not by the number of Python steps, so the form that keeps its working set in cache and
makes the fewest passes wins (bench/bench_das2f.py compares the forms at L = 256, dim 512, N 24).
Design choice (switchable with ``method=``): ``auto`` uses mamba_ssm's CUDA kernel when it is
importable and the tensors are on CUDA, the chunked form on other accelerators (few, large
kernel launches) and the streaming form on CPU.

The cumulative-sum-of-exponentials form (``exp(cumsum dA) * cumsum(exp(-cumsum dA) dBu)``) is
deliberately absent: it overflows (spec section 5, item 3).

:func:`selective_scan` dispatches: ``mamba_ssm``'s CUDA kernel when it is importable and the
tensors are on CUDA (``method="auto"``), else as described above.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from .errors import NetworkError

Method = Literal["auto", "chunked", "streaming", "sequential", "associative", "cuda"]

#: Chunk length of :func:`selective_scan_chunked`; 16 balances the in-chunk and the carry loops
#: at L = 256 (measured in bench/bench_das2f.py).
DEFAULT_CHUNK = 16


def _acc(u: torch.Tensor) -> torch.dtype:
    """Accumulation dtype: float32, or float64 when the inputs are float64 (for exact tests)."""
    return torch.promote_types(u.dtype, torch.float32)


def _prepare_delta(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   delta_bias: torch.Tensor | None, delta_softplus: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Check all shapes; return fp32 delta' (batch, dim, L) (bias added, softplus applied) and fp32 A."""
    if u.dim() != 3 or delta.shape != u.shape:
        raise NetworkError(f"u and delta must both be (batch, dim, L); got {tuple(u.shape)} and {tuple(delta.shape)}")
    b, d, L = u.shape
    if A.dim() != 2 or A.shape[0] != d:
        raise NetworkError(f"A must be (dim={d}, N); got {tuple(A.shape)}")
    n = A.shape[1]
    B4 = B if B.dim() == 4 else B.unsqueeze(1)
    C4 = C if C.dim() == 4 else C.unsqueeze(1)
    if B4.dim() != 4 or B4.shape[0] != b or B4.shape[2] != n or B4.shape[3] != L or C4.shape != B4.shape:
        raise NetworkError(f"B and C must be (batch, G, N={n}, L={L}) or (batch, N, L); "
                         f"got {tuple(B.shape)} and {tuple(C.shape)}")
    if d % B4.shape[1]:
        raise NetworkError(f"dim={d} is not divisible by the {B4.shape[1]} groups of B/C")
    dt = delta.to(_acc(u))
    if delta_bias is not None:
        dt = dt + delta_bias.to(_acc(u)).view(1, d, 1)
    if delta_softplus:
        dt = F.softplus(dt)  # threshold 20, as the CUDA kernel's x <= 20 ? log1p(exp(x)) : x
    return dt, A.to(_acc(u))


def _prepare(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
             delta_bias: torch.Tensor | None, delta_softplus: bool
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """fp32 ``dA``, ``dBu`` as (batch, G, dim/G, L, N) and ``C`` as (batch, G, 1, L, N)."""
    dt, Af = _prepare_delta(u, delta, A, B, C, delta_bias, delta_softplus)
    b, d, L = u.shape
    n = Af.shape[1]
    B4 = (B if B.dim() == 4 else B.unsqueeze(1)).to(_acc(u))
    C4 = (C if C.dim() == 4 else C.unsqueeze(1)).to(_acc(u))
    g = B4.shape[1]
    dg = d // g
    dt5 = dt.view(b, g, dg, L, 1)
    dA = torch.exp(dt5 * Af.view(1, g, dg, 1, n))
    dBu = (dt5 * u.to(_acc(u)).view(b, g, dg, L, 1)) * B4.transpose(-1, -2).unsqueeze(2)
    return dA, dBu, C4.transpose(-1, -2).unsqueeze(2)


def _finish(h_y: torch.Tensor, u: torch.Tensor, D: torch.Tensor | None) -> torch.Tensor:
    """Add the skip ``D * u`` to y (batch, dim, L) in fp32 and cast back to u's dtype."""
    y = h_y
    if D is not None:
        y = y + D.to(_acc(u)).view(1, -1, 1) * u.to(_acc(u))
    return y.to(u.dtype)


def selective_scan_sequential(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                              C: torch.Tensor, D: torch.Tensor | None = None,
                              delta_bias: torch.Tensor | None = None,
                              delta_softplus: bool = False) -> torch.Tensor:
    """Reference selective scan: one recurrence step per token, as mamba_ssm's ``selective_scan_ref``.

    Shapes: u, delta (batch, dim, L); A (dim, N); B, C (batch, G, N, L) or (batch, N, L);
    D, delta_bias (dim,). Returns y (batch, dim, L) in u's dtype.
    """
    dA, dBu, Ct = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    b, g, dg, L, n = dA.shape
    h = dA.new_zeros(b, g, dg, n)
    ys = []
    for t in range(L):
        h = dA[:, :, :, t] * h + dBu[:, :, :, t]
        ys.append((h * Ct[:, :, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1).reshape(b, g * dg, L)
    return _finish(y, u, D)


def _time_major(x: torch.Tensor, b: int, g: int, nc: int, T: int) -> torch.Tensor:
    """(b, g*k, nc*T) -> (T, b, g, nc, k, 1): the chunk-position axis first, each step one contiguous slab."""
    return x.reshape(b, g, -1, nc, T).permute(4, 0, 1, 3, 2).unsqueeze(-1).contiguous()


#: Elements of one batch block's state in :func:`selective_scan_streaming` (48 Ki floats = 192 KiB):
#: per-step operands stay in L2 while each eager op still does enough work to hide its dispatch cost.
STREAM_BLOCK_ELEMS = 48 * 1024
#: Tokens discretised together (one ``exp`` and one ``delta' u B`` op per chunk) by the streaming form.
STREAM_CHUNK = 4
#: Elements (batch x L x dim x N) of each of the 4 state-sized tensors of one streaming-backward block.
STREAM_BACKWARD_ELEMS = 4 * 1024 * 1024


def _stream_nograd(dt: torch.Tensor, dtu: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   chunk: int | None = None, block_elems: int | None = None) -> torch.Tensor:
    """Token-major recurrence without autograd: dt, dtu (b, L, d); A (d, N); B, C (b, L, G, N) -> y (b, L, d).

    ``y`` is ``sum_n C h`` only (no skip). The batch is cut into blocks of ``block_elems`` state
    elements; per block, ``chunk`` tokens are discretised with two ops (``exp(delta' A)`` and
    ``delta' u B`` into preallocated buffers), the recurrence is one in-place ``addcmul`` per token
    and the outputs of the chunk one batched matmul. The state is laid out (G, N, dim/G) so every
    op runs along a contiguous channel axis.
    """
    b, L, d = dt.shape
    g, n = B.shape[2], B.shape[3]
    dg = d // g
    k0 = max(1, min(b, (block_elems or STREAM_BLOCK_ELEMS) // (d * n)))
    T = max(1, min(int(chunk or STREAM_CHUNK), L))
    At = A.view(g, dg, n).transpose(1, 2).contiguous()            # (G, N, dim/G)
    y = dt.new_empty(b, L, d)
    bufs = [dt.new_empty(k0, T, g, n, dg) for _ in range(2)]      # double buffer: no state copy
    dA = dt.new_empty(k0, T, g, n, dg)
    zero = dt.new_zeros(k0, g, n, dg)
    for s in range(0, b, k0):
        e = min(b, s + k0)
        k = e - s
        prev = zero[:k]
        for c, t0 in enumerate(range(0, L, T)):
            t1 = min(L, t0 + T)
            m = t1 - t0
            H, dAc = bufs[c % 2][:k, :m], dA[:k, :m]
            torch.mul(dt[s:e, t0:t1].view(k, m, g, 1, dg), At, out=dAc)
            dAc.exp_()
            torch.mul(dtu[s:e, t0:t1].view(k, m, g, 1, dg), B[s:e, t0:t1].view(k, m, g, n, 1), out=H)
            for i in range(m):
                h = H[:, i]
                h.addcmul_(prev, dAc[:, i])                        # h_t = dBu_t + dA_t * h_(t-1)
                prev = h
            y[s:e, t0:t1] = torch.matmul(C[s:e, t0:t1].reshape(k, m, g, 1, n), H).view(k, m, d)
    return y


def _stream_backward_block(dt: torch.Tensor, dtu: torch.Tensor, At: torch.Tensor, B: torch.Tensor,
                           C: torch.Tensor, gy: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of the token-major scan for one batch block (the backward of mamba's selective scan).

    dt, dtu, gy (k, L, d); At (G, N, d/G); B, C (k, L, G, N). The states are recomputed
    (``H``), then the state gradient runs backwards, ``Gh_t = gy_t C_t + dA_(t+1) Gh_(t+1)``, and
    ``gC = sum_d gy H``, ``g(dtu) = sum_n Gh B``, ``gB = sum_d Gh dtu``; through the decay,
    ``X = Gh_t H_(t-1) dA_t`` gives ``g(dt) = sum_n X A`` and ``gA = sum_(batch, t) X dt``.
    Returns g(dt), g(dtu), gA (G, N, d/G), gB, gC.
    """
    k, L, d = dt.shape
    g, n, dg = At.shape
    dt5 = dt.view(k, L, g, 1, dg)
    dA = torch.exp(dt5 * At)                                            # (k, L, G, N, d/G)
    H = dtu.view(k, L, g, 1, dg) * B.view(k, L, g, n, 1)
    for t in range(1, L):
        H[:, t].addcmul_(H[:, t - 1], dA[:, t])
    gC = torch.matmul(H, gy.view(k, L, g, dg, 1)).view(k, L, g, n)
    Gh = gy.view(k, L, g, 1, dg) * C.view(k, L, g, n, 1)
    for t in range(L - 2, -1, -1):
        Gh[:, t].addcmul_(Gh[:, t + 1], dA[:, t + 1])
    gdtu = torch.matmul(B.view(k, L, g, 1, n), Gh).view(k, L, d)
    gB = torch.matmul(Gh, dtu.view(k, L, g, dg, 1)).view(k, L, g, n)
    X = Gh                                                              # reused in place: Gh is done
    X[:, 1:].mul_(H[:, :-1])
    X[:, 0].zero_()                                                     # h_(-1) = 0
    X.mul_(dA)
    gA = torch.mul(X, dt5).sum((0, 1))
    gdt = X.mul_(At).sum(3).view(k, L, d)
    return gdt, gdtu, gA, gB, gC


class _StreamingScan(torch.autograd.Function):
    """Fast no-grad forward (:func:`_stream_nograd`) and a hand-written backward
    (:func:`_stream_backward_block`, block by block).

    Keeps only the inputs for backward (no per-token states), so training memory stays that of
    the inputs; the states are recomputed per block (activation checkpointing).
    """

    @staticmethod
    def forward(ctx, dt, dtu, A, B, C):  # type: ignore[override]
        ctx.save_for_backward(dt, dtu, A, B, C)
        return _stream_nograd(dt, dtu, A, B, C)

    @staticmethod
    def backward(ctx, gy):  # type: ignore[override]
        dt, dtu, A, B, C = ctx.saved_tensors
        b, L, d = dt.shape
        g, n = B.shape[2], B.shape[3]
        At = A.view(g, d // g, n).transpose(1, 2).contiguous()
        gy = gy.contiguous()
        kb = max(1, min(b, STREAM_BACKWARD_ELEMS // max(1, L * d * n)))
        gdt, gdtu, gB, gC = (torch.empty_like(x) for x in (dt, dtu, B, C))
        gAt = torch.zeros_like(At)
        for s in range(0, b, kb):
            e = min(b, s + kb)
            gdt[s:e], gdtu[s:e], gA_block, gB[s:e], gC[s:e] = _stream_backward_block(
                dt[s:e], dtu[s:e], At, B[s:e], C[s:e], gy[s:e])
            gAt += gA_block
        return gdt, gdtu, gAt.transpose(1, 2).reshape(d, n), gB, gC


def _stream(dt: torch.Tensor, dtu: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """Token-major streaming scan, through :class:`_StreamingScan` when a gradient is needed."""
    dt, dtu, A, B, C = (x.contiguous() for x in (dt, dtu, A, B, C))
    if torch.is_grad_enabled() and any(x.requires_grad for x in (dt, dtu, A, B, C)):
        return _StreamingScan.apply(dt, dtu, A, B, C)
    return _stream_nograd(dt, dtu, A, B, C)


def selective_scan_streaming(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                             C: torch.Tensor, D: torch.Tensor | None = None,
                             delta_bias: torch.Tensor | None = None,
                             delta_softplus: bool = False) -> torch.Tensor:
    """Sequential scan that discretises a few tokens at a time on a cache-sized batch block.

    Same arguments and result as :func:`selective_scan_sequential`, but it never materialises the
    (batch, dim, L, N) ``dA``/``dBu``/``h`` tensors: see :func:`_stream_nograd`. Token-major
    callers (DAS2F) should use :func:`selective_scan_tokens` and skip the transposes.
    """
    dt, Af = _prepare_delta(u, delta, A, B, C, delta_bias, delta_softplus)
    acc = _acc(u)
    Bf = (B if B.dim() == 4 else B.unsqueeze(1)).to(acc).permute(0, 3, 1, 2).contiguous()
    Cf = (C if C.dim() == 4 else C.unsqueeze(1)).to(acc).permute(0, 3, 1, 2).contiguous()
    y = _stream(dt.transpose(1, 2).contiguous(), (dt * u.to(acc)).transpose(1, 2).contiguous(), Af, Bf, Cf)
    return _finish(y.transpose(1, 2), u, D)


def selective_scan_tokens(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                          C: torch.Tensor, D: torch.Tensor | None = None,
                          delta_bias: torch.Tensor | None = None, delta_softplus: bool = False,
                          method: Method = "auto", chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """:func:`selective_scan` on token-major tensors: u, delta (batch, L, dim); B, C (batch, L, G, N).

    Returns y (batch, L, dim). The streaming form (``auto`` on CPU) runs on this layout directly;
    every other method goes through the channel-major layout of :func:`selective_scan`.
    """
    if u.dim() != 3 or delta.shape != u.shape:
        raise NetworkError(f"u and delta must both be (batch, L, dim); got {tuple(u.shape)} and {tuple(delta.shape)}")
    if B.dim() != 4 or C.shape != B.shape or B.shape[:2] != u.shape[:2]:
        raise NetworkError(f"B and C must be (batch, L={u.shape[1]}, G, N); got {tuple(B.shape)} and {tuple(C.shape)}")
    resolved = method
    if method == "auto":
        resolved = "streaming" if u.device.type == "cpu" else "kernel-or-chunked"
    if resolved != "streaming":
        y = selective_scan(u.transpose(1, 2), delta.transpose(1, 2), A, B.permute(0, 2, 3, 1),
                           C.permute(0, 2, 3, 1), D, delta_bias, delta_softplus, method, chunk)
        return y.transpose(1, 2)
    d = u.shape[2]
    if A.dim() != 2 or A.shape[0] != d or A.shape[1] != B.shape[3] or d % B.shape[2]:
        raise NetworkError(f"A must be (dim={d}, N={B.shape[3]}) and dim divisible by the {B.shape[2]} groups; "
                         f"got A {tuple(A.shape)}")
    acc = _acc(u)
    dt = delta.to(acc)
    if delta_bias is not None:
        dt = dt + delta_bias.to(acc)
    if delta_softplus:
        dt = F.softplus(dt)
    y = _stream(dt, dt * u.to(acc), A.to(acc), B.to(acc), C.to(acc))
    if D is not None:
        y = torch.addcmul(y, u.to(acc), D.to(acc))
    return y.to(u.dtype)


def selective_scan_chunked(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                           C: torch.Tensor, D: torch.Tensor | None = None,
                           delta_bias: torch.Tensor | None = None, delta_softplus: bool = False,
                           chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Chunked (two-level) selective scan: same arguments and result as :func:`selective_scan_sequential`.

    Tokens are split into ``nc`` chunks of ``T``; every chunk is processed *at the same time*:

    1. ``h_in``: the recurrence restarted from a zero state in every chunk, T steps; each step
       discretises on the fly (``exp(delta' A)``, ``delta' u B``) and emits its intra-chunk output
       ``C_t . h_in_t`` at once, so no (batch, dim, L, N) tensor is ever materialised;
    2. the state carried between chunks, ``H_c = P_c * H_(c-1) + h_in_last,c`` (nc steps), with
       ``P_c = exp(A * sum_chunk delta')`` the decay across chunk c;
    3. the carried-in contribution ``C_t . (exp(A * cumsum_chunk(delta')_t) * H_(c-1))``, T steps.

    Decays are only ever formed as ``exp(A * partial sum of delta')``, never divided by and never
    differenced (the cumulative-sum-of-exponentials form is avoided), so with A <= 0 every
    factor lies in [0, 1] and nothing overflows. Python steps: 2T + nc instead of L. A ragged tail
    is padded with identity steps (delta' = 0) and dropped.
    """
    dt, Af = _prepare_delta(u, delta, A, B, C, delta_bias, delta_softplus)
    b, d, L = u.shape
    n = Af.shape[1]
    acc = _acc(u)
    Bf = (B if B.dim() == 4 else B.unsqueeze(1)).to(acc)
    Cf = (C if C.dim() == 4 else C.unsqueeze(1)).to(acc)
    g = Bf.shape[1]
    dg = d // g
    T = max(1, min(int(chunk), L))
    nc = -(-L // T)
    pad = nc * T - L
    dtu = dt * u.to(acc)
    if pad:
        dt, dtu, Bf, Cf = (F.pad(x, (0, pad)) for x in (dt, dtu, Bf, Cf))
    A4 = Af.view(g, 1, dg, n)
    dtT = _time_major(dt, b, g, nc, T)                    # (T, b, g, nc, dg, 1)
    dtuT = _time_major(dtu, b, g, nc, T)
    BT = _time_major(Bf, b, g, nc, T).transpose(-1, -2)   # (T, b, g, nc, 1, n)
    CT = _time_major(Cf, b, g, nc, T)                     # (T, b, g, nc, n, 1)
    h = torch.zeros(b, g, nc, dg, n, dtype=acc, device=u.device)
    ys = []
    for t in range(T):
        h = torch.exp(dtT[t] * A4) * h + dtuT[t] * BT[t]
        ys.append(torch.matmul(h, CT[t]))                  # (b, g, nc, dg, 1)
    y = torch.stack(ys, 0)
    if nc > 1:
        S = dtT.cumsum(0)                                  # delta' summed from the chunk start
        P_last = torch.exp(S[T - 1] * A4)                  # (b, g, nc, dg, n)
        carry = torch.zeros_like(h[:, :, 0])
        carried = [carry]
        for c in range(nc - 1):
            carry = P_last[:, :, c] * carry + h[:, :, c]
            carried.append(carry)
        H = torch.stack(carried, 2)                        # state entering each chunk
        y = y + torch.stack([torch.matmul(torch.exp(S[t] * A4) * H, CT[t]) for t in range(T)], 0)
    y = y.squeeze(-1).permute(1, 2, 4, 3, 0).reshape(b, d, nc * T)[:, :, :L]
    return _finish(y, u, D)


def selective_scan_associative(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                               C: torch.Tensor, D: torch.Tensor | None = None,
                               delta_bias: torch.Tensor | None = None,
                               delta_softplus: bool = False) -> torch.Tensor:
    """Hillis-Steele scan over (decay, input) pairs (spec section 5, form 2); same result as the others.

    For offsets 1, 2, 4, ... < L: ``v[k] <- a[k] v[k-off] + v[k]`` and ``a[k] <- a[k] a[k-off]``
    (both from the old values); then h = v. ``log2 L`` steps but O(L log L) work.
    """
    a, v, Ct = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    b, g, dg, L, n = a.shape
    off = 1
    while off < L:
        v = torch.cat([v[:, :, :, :off], a[:, :, :, off:] * v[:, :, :, :-off] + v[:, :, :, off:]], dim=3)
        a = torch.cat([a[:, :, :, :off], a[:, :, :, off:] * a[:, :, :, :-off]], dim=3)
        off *= 2
    y = (v * Ct).sum(-1).reshape(b, g * dg, L)
    return _finish(y, u, D)


def _mamba_kernel():
    """``mamba_ssm``'s ``selective_scan_fn`` or None when the package is not installed."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # type: ignore
    except Exception:  # ImportError, or a broken CUDA build
        return None
    return selective_scan_fn


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, delta_bias: torch.Tensor | None = None,
                   delta_softplus: bool = False, method: Method = "auto",
                   chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Selective scan with mamba_ssm ``selective_scan_fn`` semantics (``z=None``, no last state).

    ``method="auto"``: the CUDA kernel when ``mamba_ssm`` is importable and ``u`` is on CUDA,
    else :func:`selective_scan_streaming` on CPU and :func:`selective_scan_chunked` on other
    devices. ``"cuda"`` insists on the kernel (RuntimeError when unavailable); ``"sequential"``,
    ``"chunked"``, ``"streaming"`` and ``"associative"`` pick a PyTorch form.
    """
    if method in ("auto", "cuda"):
        kernel = _mamba_kernel() if u.is_cuda else None
        if kernel is not None:
            Bk = B if B.dim() == 4 else B.unsqueeze(1)
            Ck = C if C.dim() == 4 else C.unsqueeze(1)
            return kernel(u.contiguous(), delta.contiguous(), A.float().contiguous(), Bk.contiguous(),
                          Ck.contiguous(), None if D is None else D.float(), z=None,
                          delta_bias=None if delta_bias is None else delta_bias.float(),
                          delta_softplus=delta_softplus, return_last_state=False)
        if method == "cuda":
            raise RuntimeError("method='cuda' needs mamba_ssm installed and CUDA tensors; "
                               "use method='auto' to fall back to the PyTorch scan")
        method = "streaming" if u.device.type == "cpu" else "chunked"
    if method == "streaming":
        return selective_scan_streaming(u, delta, A, B, C, D, delta_bias, delta_softplus)
    if method == "chunked":
        return selective_scan_chunked(u, delta, A, B, C, D, delta_bias, delta_softplus, chunk=chunk)
    if method == "sequential":
        return selective_scan_sequential(u, delta, A, B, C, D, delta_bias, delta_softplus)
    if method == "associative":
        return selective_scan_associative(u, delta, A, B, C, D, delta_bias, delta_softplus)
    raise NetworkError(f"unknown selective-scan method {method!r}; use auto, chunked, streaming, sequential, associative or cuda")
