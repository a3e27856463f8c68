"""ConvNeXt-V2 encoders written in-house, with state-dict keys identical to timm's ``convnextv2_*``.

Woo et al., "ConvNeXt V2: Co-designing and Scaling ConvNets with Masked Autoencoders" (CVPR 2023,
arXiv 2301.00808), Sec. 3.3 (Global Response Normalization) and the block of Fig. 5; the layout
of the layers follows spec ``asanet.md`` section 1 ("ConvNeXt-V2 block", "Layout of the mm ConvNeXt").

Why the timm key layout: a user who downloaded a ``convnextv2_*`` checkpoint from timm or the
official repository (see :mod:`.pretrained`, which also maps the mmpretrain layout) can load it
with only the classifier (``head.fc.*``) left over. The layout is:

- ``stem.0`` (4x4/4 conv with bias), ``stem.1`` (LayerNorm over channels);
- ``stages.{i}.downsample.0`` (LayerNorm) and ``stages.{i}.downsample.1`` (2x2/2 conv) for i >= 1
  (stage 0 has no downsample: the stem already reduced by 4);
- ``stages.{i}.blocks.{j}.conv_dw`` (7x7 depthwise, bias), ``.norm``, ``.mlp.fc1``,
  ``.mlp.grn.weight``/``.mlp.grn.bias`` (shape ``(4C,)``), ``.mlp.fc2``.
- ``norm0``..``norm3``: per-stage output LayerNorms (the dense-prediction outputs of
  mmpretrain/ASANet). ``norm3`` takes timm's ``head.norm`` weights; ``norm0-2`` have no
  pretrained source.

As in timm, the small variants (atto, femto, pico, nano) use 1x1 convolutions for the MLP and a
channels-first LayerNorm (``conv_mlp=True``: fc weights ``(4C, C, 1, 1)``), tiny and base use
``nn.Linear`` in channels-last (fc weights ``(4C, C)``). Both compute the same function.
No layer-scale (ConvNeXt-V2 drops it, GRN replaces it). LayerNorm eps is 1e-6 everywhere.

The ConvNeXt-V2 *weights* published by Meta are licensed CC-BY-NC-4.0 (non-commercial); this
code contains none of them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import NetworkError

LN_EPS: float = 1e-6
#: Dtypes whose GRN norm is computed in float32 (their sum of squares overflows or loses digits).
_HALF_TYPES = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class ConvNeXtV2Config:
    """Depths and widths of one ConvNeXt-V2 variant (values of timm's ``convnextv2_<name>``)."""

    depths: tuple[int, int, int, int]
    dims: tuple[int, int, int, int]
    conv_mlp: bool


#: The variants offered (paper Table 1 for tiny/base; atto-nano are timm's small models).
VARIANTS: dict[str, ConvNeXtV2Config] = {
    "atto": ConvNeXtV2Config((2, 2, 6, 2), (40, 80, 160, 320), True),
    "femto": ConvNeXtV2Config((2, 2, 6, 2), (48, 96, 192, 384), True),
    "pico": ConvNeXtV2Config((2, 2, 6, 2), (64, 128, 256, 512), True),
    "nano": ConvNeXtV2Config((2, 2, 8, 2), (80, 160, 320, 640), True),
    "tiny": ConvNeXtV2Config((3, 3, 9, 3), (96, 192, 384, 768), False),
    "base": ConvNeXtV2Config((3, 3, 27, 3), (128, 256, 512, 1024), False),
}


def variant_name(name: str) -> str:
    """Normalise ``"convnextv2_tiny"`` / ``"tiny"`` to ``"tiny"``; ValueError for unknown names."""
    key = name.lower().removeprefix("convnextv2_").removeprefix("convnextv2-")
    if key not in VARIANTS:
        known = ", ".join(f"convnextv2_{k}" for k in VARIANTS)
        raise NetworkError(f"unknown ConvNeXt-V2 variant {name!r}; choose one of: {known}")
    return key


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel axis of an NCHW tensor (keys ``weight``/``bias`` like nn.LayerNorm).

    Permuting to NHWC and back is free for channels_last tensors and lets the fused
    ``layer_norm`` kernel run.
    """

    def __init__(self, num_channels: int, eps: float = LN_EPS) -> None:
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class GRN(nn.Module):
    """Global Response Normalization (ConvNeXt-V2 paper, Sec. 3.3, Eq. 1-3).

    g = ||x||_2 over the spatial axes; n = g / (mean over channels of g + eps);
    out = weight * (x * n) + bias + x. ``weight``/``bias`` have shape ``(C,)`` and start at 0,
    so a fresh GRN is the identity. ``channels_last`` selects NHWC (Linear MLP) or NCHW input.
    """

    def __init__(self, dim: int, channels_last: bool, eps: float = 1e-6) -> None:
        super().__init__()
        self.channels_last = channels_last
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # sqrt(sum(x^2)): ~3x faster than linalg.vector_norm on CPU. Half types (autocast) are summed
        # in float32, since their sum of squares overflows; float32 and float64 stay in their own
        # precision (an fp64 network then agrees with a float64 reference to rounding).
        spatial, channel = ((1, 2), -1) if self.channels_last else ((2, 3), 1)
        acc = x.float() if x.dtype in _HALF_TYPES else x
        g = acc.square().sum(dim=spatial, keepdim=True).sqrt()
        n = (g / (g.mean(dim=channel, keepdim=True) + self.eps)).to(x.dtype)
        shape = (1, 1, 1, -1) if self.channels_last else (1, -1, 1, 1)
        # x * (1 + weight * n) + bias  ==  weight * (x * n) + bias + x
        return torch.addcmul(self.bias.view(shape), x, self.weight.view(shape) * n + 1.0)


class GRNMlp(nn.Module):
    """fc1 -> GELU (exact, erf) -> GRN -> fc2, as Linear (channels-last) or 1x1 conv (NCHW)."""

    def __init__(self, dim: int, hidden: int, conv: bool) -> None:
        super().__init__()
        if conv:
            self.fc1: nn.Module = nn.Conv2d(dim, hidden, 1)
            self.fc2: nn.Module = nn.Conv2d(hidden, dim, 1)
        else:
            self.fc1 = nn.Linear(dim, hidden)
            self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()
        self.grn = GRN(hidden, channels_last=not conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.grn(self.act(self.fc1(x))))


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): zero the residual branch of whole samples in training.

    Kept samples are scaled by 1/(1-p) so the expectation is unchanged; identity in eval.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Block(nn.Module):
    """ConvNeXt-V2 block: x + DropPath(MLP_GRN(LN(dwconv7x7(x)))) (paper Fig. 5, right)."""

    def __init__(self, dim: int, drop_path: float, conv_mlp: bool, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.conv_mlp = conv_mlp
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim) if conv_mlp else nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = GRNMlp(dim, mlp_ratio * dim, conv=conv_mlp)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_dw(x)
        if self.conv_mlp:
            y = self.mlp(self.norm(y))
        else:
            y = self.mlp(self.norm(y.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        return x + self.drop_path(y)


class Stage(nn.Module):
    """Optional downsample (LN then 2x2/2 conv) followed by ``depth`` blocks."""

    def __init__(self, in_dim: int, out_dim: int, depth: int, drop_paths: list[float], conv_mlp: bool) -> None:
        super().__init__()
        if in_dim != out_dim:
            self.downsample: nn.Module = nn.Sequential(LayerNorm2d(in_dim), nn.Conv2d(in_dim, out_dim, 2, stride=2))
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(*[Block(out_dim, drop_paths[j], conv_mlp) for j in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class ConvNeXtV2(nn.Module):
    """A ConvNeXt-V2 feature encoder: four stages with strides 4/8/16/32 and per-stage output norms.

    ``forward`` returns the four stage outputs, each passed through its ``norm{i}`` (the usual
    dense-prediction use, mmpretrain ``out_indices=(0,1,2,3)``). Networks that need to act between
    stages (ASANet's SFM, spec section 1) call :meth:`run_stage` and the ``norm{i}`` modules
    themselves.

    drop_path_rate: stochastic-depth rate reached by the last block, linear from 0 over all
        blocks by global index (spec section 1: ``linspace(0, rate, sum(depths))``).
    """

    def __init__(self, in_channels: int = 3, depths: tuple[int, ...] = (3, 3, 9, 3),
                 dims: tuple[int, ...] = (96, 192, 384, 768), conv_mlp: bool = False,
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        if in_channels < 1:
            raise NetworkError(f"ConvNeXt-V2 needs at least one input band, got in_channels={in_channels}")
        if len(depths) != 4 or len(dims) != 4:
            raise NetworkError("ConvNeXt-V2 has exactly four stages: give four depths and four dims")
        self.in_channels = in_channels
        self.depths = tuple(depths)
        self.dims = tuple(dims)
        self.conv_mlp = conv_mlp
        self.stem = nn.Sequential(nn.Conv2d(in_channels, dims[0], 4, stride=4), LayerNorm2d(dims[0]))
        n = sum(depths)  # linspace(0, rate, n) in plain Python so the model also builds on the meta device
        rates = [drop_path_rate * j / (n - 1) if n > 1 else 0.0 for j in range(n)]
        stages, start, prev = [], 0, dims[0]
        for i, (depth, dim) in enumerate(zip(depths, dims)):
            stages.append(Stage(prev, dim, depth, rates[start:start + depth], conv_mlp))
            start += depth
            prev = dim
        self.stages = nn.Sequential(*stages)
        for i, dim in enumerate(dims):
            self.add_module(f"norm{i}", LayerNorm2d(dim))
        self.apply(_init_weights)

    def stage_norm(self, i: int) -> nn.Module:
        """The LayerNorm applied to the output of stage ``i`` (``norm{i}``)."""
        return getattr(self, f"norm{i}")

    def run_stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Stage ``i`` alone (stage 0 includes the stem): input of stage i -> raw stage output."""
        if i == 0:
            x = self.stem(x)
        return self.stages[i](x)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i in range(4):
            x = self.run_stage(i, x)
            outs.append(self.stage_norm(i)(x))
        return outs


def _init_weights(m: nn.Module) -> None:
    """timm/official init: truncated normal (std 0.02) for conv and linear weights, zero biases."""
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def convnextv2(variant: str = "tiny", in_channels: int = 3, drop_path_rate: float = 0.0) -> ConvNeXtV2:
    """Build ConvNeXt-V2 ``variant`` (``atto``..``base`` or ``convnextv2_<name>``) for ``in_channels`` bands."""
    cfg = VARIANTS[variant_name(variant)]
    return ConvNeXtV2(in_channels, cfg.depths, cfg.dims, cfg.conv_mlp, drop_path_rate)
