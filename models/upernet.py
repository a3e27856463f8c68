"""UPerNet decode head and FCN auxiliary head (the mmseg ``UPerHead`` / ``FCNHead`` as ASANet uses them).

Xiao et al., "Unified Perceptual Parsing for Scene Understanding" (ECCV 2018), Sec. 3 (a PPM on
the deepest map + an FPN); the exact layer list is spec ``asanet.md`` section 1 ("Decoder",
"Aux head"). Every ConvModule is conv (no bias) + BN + ReLU (:class:`ConvBNReLU`). Sub-module
names follow mmseg (``psp_modules``, ``bottleneck``, ``lateral_convs``, ``fpn_convs``,
``fpn_bottleneck``, ``conv_seg``, ``convs``) so weights can be mapped one to one.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import PPM, ConvBNReLU


def _init_head(module: nn.Module) -> None:
    """mmseg init: kaiming-normal (fan_out, relu) for the ConvModule convs, BN 1/0,
    classifier N(0, 0.01) with zero bias (spec section 1, "conv_seg ... initialised N(0, 0.01)")."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    seg = getattr(module, "conv_seg")
    nn.init.normal_(seg.weight, 0.0, 0.01)
    nn.init.zeros_(seg.bias)


class UPerHead(nn.Module):
    """PPM on the deepest map + FPN over all maps, fused at stride 4, then a 1x1 classifier.

    in_channels: channels of the input maps, finest first (ASANet tiny: 96, 192, 384, 768).
    channels: decoder width (256 in the paper; switchable to trade accuracy for speed).
    Returns logits at the resolution of the finest map (stride 4 for ConvNeXt).
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, channels: int = 256,
                 pool_scales: Sequence[int] = (1, 2, 3, 6), dropout: float = 0.1,
                 align_corners: bool = False) -> None:
        super().__init__()
        in_channels = list(in_channels)
        self.align_corners = align_corners
        self.psp_modules = PPM(in_channels[-1], channels, pool_scales, align_corners)
        self.bottleneck = ConvBNReLU(in_channels[-1] + len(pool_scales) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList(ConvBNReLU(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvBNReLU(channels, channels, 3) for _ in in_channels[:-1])
        self.fpn_bottleneck = ConvBNReLU(len(in_channels) * channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        _init_head(self)

    def _resize(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=self.align_corners)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        top = feats[-1]
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats[:-1])]
        laterals.append(self.bottleneck(torch.cat([top, *self.psp_modules(top)], dim=1)))
        for i in range(len(laterals) - 1, 0, -1):  # top-down pathway
            laterals[i - 1] = laterals[i - 1] + self._resize(laterals[i], laterals[i - 1].shape[-2:])
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals[:-1])] + [laterals[-1]]
        size = outs[0].shape[-2:]
        fused = self.fpn_bottleneck(torch.cat([self._resize(o, size) for o in outs], dim=1))
        return self.conv_seg(self.dropout(fused))


class FCNHead(nn.Module):
    """Auxiliary FCN head: ``num_convs`` 3x3 ConvBNReLU, Dropout2d, 1x1 classifier (no input concat)."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 128, num_convs: int = 1,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.convs = nn.Sequential(*[ConvBNReLU(in_channels if i == 0 else channels, channels, 3)
                                     for i in range(num_convs)])
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        _init_head(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_seg(self.dropout(self.convs(x)))
