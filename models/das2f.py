"""DAS2F-Model: diff-attention aware state-space fusion of an MS and a PAN patch (per-pixel head).

Ma, Xue, Ma, Chen, Zhang, Zhu, "A Diff-Attention Aware State Space Fusion Model for Remote
Sensing Classification", arXiv:2504.16665. Written from the project spec ``das2f.md`` (which
describes the authors' code, repository AVKSKVL/DAS-F-Model, in its own words; no code copied).
Section numbers below refer to that spec; where it and the paper disagree, the code wins.

Pipeline (spec section 3): the MS patch is upsampled x4 (bilinear) and the PAN patch lifted to
the MS band count by a 1x1 conv; each goes through a 4x4/stride-4 stem to a channels-last
(B, P, P, 64) token grid. Each CMDA stage runs a space-preserving visual Mamba block (SPVM) per
modality and a cross-modal block that scans each modality with the *other* modality's SSM
parameters; "diff" = self - common. AALF blocks fuse the diffs into the common feature and a
rank-1024 linear classifier maps the 16 x 4P^2 fused feature to logits.

Generalisations beyond the reference (which hard-codes 4 MS bands, 1 PAN band, 16/64 patches):
``ms_channels``, ``pan_channels`` and ``patch_size`` are parameters; with the defaults the
network is the reference one (17,416,531 / 17,107,315 parameters for 11 classes, spec s. 9).
Design choice: the PAN 1x1 lift maps ``pan_channels -> ms_channels`` (the reference maps 1 -> 4,
the MS band count), so both stems keep the reference shape.
"""
from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import NetworkError
from .network import NetworkModule
from .registry import IGNORE_INDEX, ModalitySpec, ModelSpec, Recipe, register
from .selective_scan import Method, selective_scan_tokens

D_MODEL = 64     # token width (spec s. 2)
D_STATE = 24     # N
DT_RANK = 24     # R (hard-coded in the reference; ceil(64/16) = 4 would be mamba's 'auto')
N_DIRECTIONS = 4
FFN_HIDDEN = 256
FUSED_CHANNELS = 16  # channels after the x2 pixel shuffle PS2
LN_EPS = 1e-5    # must stay exactly 1e-5: AALF's scalar gates survive only through it (s. 8.7)

Variant = Literal["nanjing", "xian"]
VARIANT_STAGES: dict[str, int] = {"nanjing": 2, "xian": 1}


# ---------------------------------------------------------------------------------------------
# Scan order (spec s. 4.1 steps 5 and 8)
# ---------------------------------------------------------------------------------------------
def cross_scan(f: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, D, H*W) row-major tokens -> (B, 4, D, H*W) sequences in the four scan orders.

    k = 0 row-major, k = 1 column-major (the transposed grid), k = 2 and 3 their reversals.
    """
    b, d, L = f.shape
    col = f.view(b, d, height, width).transpose(-1, -2).reshape(b, d, L)
    fwd = torch.stack([f, col], dim=1)
    return torch.cat([fwd, fwd.flip(-1)], dim=1)


def cross_merge(y: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 4, D, H*W) outputs in scan order -> (B, D, H*W) row-major sum of all four directions.

    The adjoint of :func:`cross_scan`: undo the reversal of k = 2, 3 and the transpose of k = 1, 3.
    """
    b, _, d, L = y.shape
    fwd = y[:, :2] + y[:, 2:].flip(-1)
    col = fwd[:, 1].view(b, d, width, height).transpose(-1, -2).reshape(b, d, L)
    return fwd[:, 0] + col


def cross_scan_tokens(x: torch.Tensor) -> torch.Tensor:
    """Channels-last (B, H, W, D) -> token-major (B, H*W, 4, D) sequences in the four scan orders.

    The same sequences as :func:`cross_scan`, laid out for :func:`selective_scan_tokens` (each
    token's 4 x D channels contiguous), so the scan needs no transposing copy.
    """
    b, h, w, d = x.shape
    row = x.reshape(b, h * w, d)
    col = x.transpose(1, 2).reshape(b, h * w, d)
    return torch.stack([row, col, row.flip(1), col.flip(1)], dim=2)


def cross_merge_tokens(y: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Token-major (B, H*W, 4, D) outputs -> channels-last (B, H, W, D); :func:`cross_merge` on this layout
    (same additions in the same order)."""
    b, _, _, d = y.shape
    fwd = y[:, :, :2] + y[:, :, 2:].flip(1)
    return fwd[:, :, 0].reshape(b, height, width, d) + fwd[:, :, 1].reshape(b, width, height, d).transpose(1, 2)


def pixel_shuffle_tokens(x: torch.Tensor) -> torch.Tensor:
    """PS2 (spec s. 3): channels-last (B, P, P, 64) -> (B, 4P^2, 16) by a x2 pixel shuffle."""
    b = x.shape[0]
    return F.pixel_shuffle(x.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1).reshape(b, -1, FUSED_CHANNELS)


class FFN(nn.Sequential):
    """Linear(64, 256) - exact GELU - Linear(256, 64) (spec s. 4.1)."""

    def __init__(self, dim: int = D_MODEL, hidden: int = FFN_HIDDEN) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


# ---------------------------------------------------------------------------------------------
# SSM branch: everything of an SPVM core except its output LayerNorm (spec s. 4.1)
# ---------------------------------------------------------------------------------------------
class SSMBranch(nn.Module):
    """One modality's SSM parameters and input path (spec s. 4.1 steps 1-7, 10).

    ``prepare`` does the gate (``z = SiLU(in_proj t)``), the space-preserving path (un-patchify
    64 channels to a 4-channel image at 4x, depthwise 3x3 + SiLU, 4x4/s4 conv + BN), the four-way
    cross-scan and the per-direction projections to delta (before bias), B and C. Note the SSM
    branch reads ``t`` itself, not ``in_proj t`` (s. 8.3). ``A``, ``D`` and the delta bias are
    stored per (direction, channel) row ``k*64 + d``.
    """

    def __init__(self, d_model: int = D_MODEL, d_state: int = D_STATE, dt_rank: int = DT_RANK,
                 dt_min: float = 1e-3, dt_max: float = 1e-1, dt_floor: float = 1e-4) -> None:
        super().__init__()
        if d_model % 16:
            raise NetworkError(f"d_model must be a multiple of 16 (4x4 un-patchify), got {d_model}")
        self.d_model, self.d_state, self.dt_rank = d_model, d_state, dt_rank
        img_ch = d_model // 16
        K = N_DIRECTIONS
        self.in_proj = nn.Linear(d_model, d_model, bias=False)
        self.conv2d = nn.Conv2d(img_ch, img_ch, 3, padding=1, groups=img_ch)
        self.patch = nn.Sequential(nn.Conv2d(img_ch, d_model, 4, stride=4), nn.BatchNorm2d(d_model))
        self.x_proj_weight = nn.Parameter(torch.empty(K, dt_rank + 2 * d_state, d_model))
        self.dt_projs_weight = nn.Parameter(torch.empty(K, d_model, dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(K, d_model))
        self.A_logs = nn.Parameter(torch.empty(K * d_model, d_state))
        self.Ds = nn.Parameter(torch.empty(K * d_model))
        self.A_logs._no_weight_decay = True  # type: ignore[attr-defined]
        self.Ds._no_weight_decay = True  # type: ignore[attr-defined]
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        self._init_ssm(dt_min, dt_max, dt_floor)

    @torch.no_grad()
    def _init_ssm(self, dt_min: float, dt_max: float, dt_floor: float) -> None:
        """Initialisation of spec s. 4.5: W_x ~ U(+-1/sqrt(64)) (default Linear), W_dt ~ U(+-R^-1/2),
        delta bias = softplus^-1(dt) with log-uniform dt in [dt_min, dt_max], S4D-real A, D = 1."""
        nn.init.uniform_(self.x_proj_weight, -self.d_model ** -0.5, self.d_model ** -0.5)
        nn.init.uniform_(self.dt_projs_weight, -self.dt_rank ** -0.5, self.dt_rank ** -0.5)
        dt = torch.exp(torch.rand_like(self.dt_projs_bias) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=dt_floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.A_logs.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).expand_as(self.A_logs))
        self.Ds.fill_(1.0)

    def prepare(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """t (B, H, W, 64) -> z (B, H, W, 64), u and delta (B, L, 4*64), B and C (B, L, 4, N).

        Token-major (see :func:`selective_scan_tokens`): channel ``k*64 + d`` of u/delta is
        direction k, channel d, as the rows of ``A``, ``D`` and the delta bias.
        """
        b, h, w, d = t.shape
        z = F.silu(self.in_proj(t))
        img = F.pixel_shuffle(t.permute(0, 3, 1, 2), 4)                 # (B, 4, 4H, 4W)
        img = F.silu(self.conv2d(img))
        f = self.patch(img).permute(0, 2, 3, 1)                          # (B, H, W, 64)
        u = cross_scan_tokens(f)                                         # (B, L, 4, 64)
        proj = torch.einsum("blkd,kcd->blkc", u, self.x_proj_weight)     # (B, L, 4, R + 2N)
        dts, Bs, Cs = torch.split(proj, [self.dt_rank, self.d_state, self.d_state], dim=3)
        delta = torch.einsum("blkr,kdr->blkd", dts, self.dt_projs_weight)
        L = h * w
        return z, u.reshape(b, L, -1), delta.reshape(b, L, -1), Bs, Cs

    def ssm_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A = -exp(A_logs) (4*64, N), D (4*64,), delta bias (4*64,)."""
        return -torch.exp(self.A_logs), self.Ds, self.dt_projs_bias.reshape(-1)


def _finish_branch(y: torch.Tensor, z: torch.Tensor, out_norm: nn.LayerNorm, out_proj: nn.Linear) -> torch.Tensor:
    """Merge the 4 directions, LayerNorm, gate with z and project (spec s. 4.1 steps 8-10)."""
    b, h, w, d = z.shape
    y = cross_merge_tokens(y.view(b, h * w, N_DIRECTIONS, d), h, w)    # (B, H, W, 64)
    return out_proj(out_norm(y) * z)


class SPVMCore(nn.Module):
    """Space-preserving visual Mamba core (spec s. 4.1; reference class ``MAMBA``)."""

    def __init__(self, scan_method: Method = "auto") -> None:
        super().__init__()
        self.branch = SSMBranch()
        self.out_norm = nn.LayerNorm(D_MODEL, eps=LN_EPS)
        self.scan_method: Method = scan_method

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        z, u, delta, Bs, Cs = self.branch.prepare(t)
        A, D, bias = self.branch.ssm_params()
        y = selective_scan_tokens(u, delta, A, Bs, Cs, D, bias, delta_softplus=True, method=self.scan_method)
        return _finish_branch(y, z, self.out_norm, self.branch.out_proj)


class SPVMBlock(nn.Module):
    """``r = x + core(LN x); out = r + FFN(LN r)`` with ONE LayerNorm used twice (spec s. 4.1, 8.4)."""

    def __init__(self, scan_method: Method = "auto") -> None:
        super().__init__()
        self.norm = nn.LayerNorm(D_MODEL, eps=LN_EPS)
        self.core = SPVMCore(scan_method)
        self.ffn = FFN()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = x + self.core(self.norm(x))
        return r + self.ffn(self.norm(r))


class CrossCore(nn.Module):
    """Cross-modal diff-attention SSM (spec s. 4.2; reference ``CROMAMBA``).

    MS content is scanned with delta/B/C (computed from PAN content), A, D and delta bias of the
    *PAN* branch, and vice versa; each output is gated by its own modality's z and projected by
    its own ``out_proj``; one ``out_norm`` is shared. ``branch_ms`` holds the reference's
    unsuffixed parameters, ``branch_pan`` the ``_pan`` ones (so ``branch_ms``'s SSM parameters
    produce the PAN output, as in the reference). The two scans are separate calls: the streaming
    scan works on cache-sized blocks anyway, and concatenating them would copy every input once.
    """

    def __init__(self, scan_method: Method = "auto") -> None:
        super().__init__()
        self.branch_ms = SSMBranch()
        self.branch_pan = SSMBranch()
        self.out_norm = nn.LayerNorm(D_MODEL, eps=LN_EPS)
        self.scan_method: Method = scan_method

    def forward(self, m: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zm, um, dm, Bm, Cm = self.branch_ms.prepare(m)
        zp, up, dp, Bp, Cp = self.branch_pan.prepare(p)
        Am, Dm, bm = self.branch_ms.ssm_params()
        Ap, Dp, bp = self.branch_pan.ssm_params()
        y_ms = selective_scan_tokens(um, dp, Ap, Bp, Cp, Dp, bp, delta_softplus=True, method=self.scan_method)
        y_pan = selective_scan_tokens(up, dm, Am, Bm, Cm, Dm, bm, delta_softplus=True, method=self.scan_method)
        return (_finish_branch(y_ms, zm, self.out_norm, self.branch_ms.out_proj),
                _finish_branch(y_pan, zp, self.out_norm, self.branch_pan.out_proj))


class CrossBlock(nn.Module):
    """``a, c = core(LN m, LN p) + (m, p)``, then a per-modality FFN residual; ONE LayerNorm for all
    four normalisations (spec s. 4.2, 8.4)."""

    def __init__(self, scan_method: Method = "auto") -> None:
        super().__init__()
        self.norm = nn.LayerNorm(D_MODEL, eps=LN_EPS)
        self.core = CrossCore(scan_method)
        self.ffn_ms = FFN()
        self.ffn_pan = FFN()

    def forward(self, m: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, c = self.core(self.norm(m), self.norm(p))
        a = a + m
        c = c + p
        return a + self.ffn_ms(self.norm(a)), c + self.ffn_pan(self.norm(c))


class CMDAStage(nn.Module):
    """One CMDA stage: self features by SPVM, common by the cross block, diff = self - common."""

    def __init__(self, scan_method: Method = "auto") -> None:
        super().__init__()
        self.spvm_ms = SPVMBlock(scan_method)
        self.spvm_pan = SPVMBlock(scan_method)
        self.cross = CrossBlock(scan_method)

    def forward(self, m: torch.Tensor, p: torch.Tensor
                ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        cm, cp = self.cross(m, p)
        return (cm, cp), (self.spvm_ms(m) - cm, self.spvm_pan(p) - cp)


class AALF(nn.Module):
    """Attention-aware linear fusion, closed form (spec s. 4.3).

    ``G = sigmoid(Linear([A | Bf]))``; the reference's mean over i of the outer product
    (A*G)_i Bf_j equals ``Bf * mean_i (A*G)_i``: one scalar gate per token, no (B, T, 16, 16)
    intermediate.
    """

    def __init__(self, channels: int = FUSED_CHANNELS) -> None:
        super().__init__()
        self.gate = nn.Linear(2 * channels, channels)

    def forward(self, a: torch.Tensor, bf: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.gate(torch.cat([a, bf], dim=-1)))
        return bf * (a * g).mean(dim=-1, keepdim=True)


class AALFBlock(nn.Module):
    """``x = AALF_1(LN mss, LN pans); out = AALF_2(LN x, LN fu)`` with ONE LayerNorm(16), eps 1e-5."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(FUSED_CHANNELS, eps=LN_EPS)
        self.fuse_diff = AALF()
        self.fuse_common = AALF()

    def forward(self, mss: torch.Tensor, pans: torch.Tensor, fu: torch.Tensor) -> torch.Tensor:
        x = self.fuse_diff(self.norm(mss), self.norm(pans))
        return self.fuse_common(self.norm(x), self.norm(fu))


class Stem(nn.Module):
    """Conv2d(k=4, s=4) to 64 channels, to channels-last, LayerNorm(64) (spec s. 3)."""

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, D_MODEL, 4, stride=4)
        self.norm = nn.LayerNorm(D_MODEL, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x).permute(0, 2, 3, 1))


class DAS2F(NetworkModule):
    """DAS2F-Model. ``forward(ms (B, C_ms, P, P), pan (B, C_pan, 4P, 4P)) -> logits (B, num_classes)``.

    variant ``"nanjing"``: two CMDA stages (stage 2 takes stage 1's *common* features) and two
    chained AALF blocks (stage-2 diffs first, then stage-1 diffs); ``"xian"``: one of each
    (spec s. 3, 7). ``scan_method`` selects the selective-scan implementation
    (:func:`mmlc.models.selective_scan.selective_scan`; ``auto`` = CUDA kernel when available).
    """

    def __init__(self, num_classes: int = 11, variant: Variant = "nanjing", ms_channels: int = 4,
                 pan_channels: int = 1, patch_size: int = 16, scan_method: Method = "auto",
                 classifier_hidden: int = 1024) -> None:
        super().__init__()
        if variant not in VARIANT_STAGES:
            raise NetworkError(f"unknown DAS2F variant {variant!r}; use one of {', '.join(VARIANT_STAGES)}")
        if num_classes < 1 or ms_channels < 1 or pan_channels < 1 or patch_size < 1:
            raise NetworkError("num_classes, ms_channels, pan_channels and patch_size must be positive")
        self.variant, self.num_classes, self.patch_size = variant, num_classes, patch_size
        self.ms_channels, self.pan_channels = ms_channels, pan_channels
        self.pan_lift = nn.Conv2d(pan_channels, ms_channels, 1)          # reference R1
        self.stem_ms = Stem(ms_channels)
        self.stem_pan = Stem(ms_channels)
        n = VARIANT_STAGES[variant]
        self.stages = nn.ModuleList(CMDAStage(scan_method) for _ in range(n))
        self.fusions = nn.ModuleList(AALFBlock() for _ in range(n))
        # Width 1024 as the reference; a smaller ``classifier_hidden`` (mmlc design choice) shrinks
        # the 16384 x 1024 layer that holds 96 % of the weights, for small built-in models.
        self.classifier = nn.Sequential(nn.Linear(FUSED_CHANNELS * 4 * patch_size ** 2, classifier_hidden),
                                        nn.Linear(classifier_hidden, num_classes))  # no activation, as the reference

    def set_scan_method(self, method: Method) -> None:
        """Switch the selective-scan implementation of every SSM core (e.g. for benchmarks)."""
        for mod in self.modules():
            if isinstance(mod, (SPVMCore, CrossCore)):
                mod.scan_method = method

    def forward(self, ms: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        P = self.patch_size
        if ms.shape[1:] != (self.ms_channels, P, P) or pan.shape[1:] != (self.pan_channels, 4 * P, 4 * P):
            raise NetworkError(f"DAS2F expects ms (B, {self.ms_channels}, {P}, {P}) and pan "
                             f"(B, {self.pan_channels}, {4 * P}, {4 * P}); got {tuple(ms.shape)} and {tuple(pan.shape)}")
        m = self.stem_ms(F.interpolate(ms, scale_factor=4, mode="bilinear", align_corners=False))
        p = self.stem_pan(self.pan_lift(pan))
        diffs = []
        for stage in self.stages:
            (m, p), d = stage(m, p)
            diffs.append(d)
        fused = pixel_shuffle_tokens((m + p) / 2)
        for fusion, (dm, dp) in zip(self.fusions, reversed(diffs)):
            fused = fusion(pixel_shuffle_tokens(dm), pixel_shuffle_tokens(dp), fused)
        return self.classifier(fused.reshape(fused.shape[0], -1))

    def training_step(self, inputs: Sequence[torch.Tensor], target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy over labelled pixels (target (B,), IGNORE_INDEX skipped) and accuracy.

        The loss is an assumption (the reference ships no training code; spec s. 6). A batch
        with no labelled pixel gives a zero loss that still back-propagates.
        """
        logits = self(*inputs)
        valid = target != IGNORE_INDEX
        if not bool(valid.any()):
            return logits.sum() * 0.0, {"loss": 0.0}
        loss = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
        acc = (logits.argmax(1)[valid] == target[valid]).float().mean()
        return loss, {"loss": float(loss.detach()), "acc": float(acc)}

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """Two groups: parameters flagged ``_no_weight_decay`` (A_logs, Ds) get no decay."""
        no_wd = [p for p in self.parameters() if getattr(p, "_no_weight_decay", False)]
        ids = {id(p) for p in no_wd}
        rest = [p for p in self.parameters() if id(p) not in ids]
        return [{"params": rest, "lr": lr, "weight_decay": weight_decay},
                {"params": no_wd, "lr": lr, "weight_decay": 0.0}]


def build_das2f(num_classes: int = 11, variant: Variant = "nanjing", ms_channels: int = 4,
                pan_channels: int = 1, patch_size: int = 16, scan_method: Method = "auto",
                classifier_hidden: int = 1024) -> DAS2F:
    """Registry builder (see :class:`DAS2F`)."""
    return DAS2F(num_classes, variant, ms_channels, pan_channels, patch_size, scan_method, classifier_hidden)


def _channel_kwargs(band_counts: Sequence[int]) -> dict[str, int]:
    """Band counts of (MS, PAN) -> builder keyword arguments."""
    if len(band_counts) != 2:
        raise NetworkError(f"DAS2F takes exactly two inputs (MS, PAN); got {len(band_counts)}")
    return {"ms_channels": int(band_counts[0]), "pan_channels": int(band_counts[1])}


#: MS patch 16 with the target pixel at index 7 (even-size "centre"); PAN 64 at 4x with its 4x4
#: block at 28..31 (spec s. 1: reflect-101 padding 7/8 and 28/32).
MS_PATCH, MS_ANCHOR, PAN_RATIO = 16, 7, 4

SPEC = register(ModelSpec(
    name="das2f",
    builder=build_das2f,
    head_kind="patch",
    modalities=(ModalitySpec("ms", 4, 1, MS_PATCH, MS_ANCHOR),
                ModalitySpec("pan", 1, PAN_RATIO, PAN_RATIO * MS_PATCH, PAN_RATIO * MS_ANCHOR)),
    channel_kwargs=_channel_kwargs,
    # Spec s. 6: the repository has no training code. Batch 64 is the only in-repo hint; Adam,
    # lr 1e-3, ~30 epochs are the line of work's typical settings (an assumption).
    recipe=Recipe(optimizer="adam", lr=1e-3, weight_decay=0.0, schedule="constant", epochs=30,
                  batch_size=64, tile_size=MS_PATCH),
    variants=("nanjing", "xian"),
    description="MS + PAN per-pixel classification with space-preserving visual Mamba blocks, "
                "cross-modal diff-attention and attention-aware linear fusion.",
    paper="A Diff-Attention Aware State Space Fusion Model for Remote Sensing Classification, "
          "arXiv:2504.16665 (2025)",
))
