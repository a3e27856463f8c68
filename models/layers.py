"""Small building blocks shared by several networks (torch only)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d + ReLU, the mmseg ``ConvModule`` default.

    Sub-module names ``conv``/``bn`` keep state-dict keys close to mmseg's ``conv``/``bn``.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | None = None, dilation: int = 1, groups: int = 1) -> None:
        if padding is None:
            padding = dilation * (kernel_size - 1) // 2
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, dilation, groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.activate = nn.ReLU(inplace=True)


class PPM(nn.ModuleList):
    """Pyramid pooling module (PSPNet, Zhao et al. 2017, Sec. 3.2).

    For each scale s: adaptive average pool to s x s, 1x1 ConvBNReLU to ``channels``, bilinear
    upsample back (align_corners=False). ``forward`` returns the list of upsampled branches (the
    caller concatenates them with its input, as UPerNet and the HFD-Net context head do).
    """

    def __init__(self, in_channels: int, channels: int, pool_scales: Sequence[int] = (1, 2, 3, 6),
                 align_corners: bool = False) -> None:
        super().__init__()
        self.pool_scales = tuple(pool_scales)
        self.align_corners = align_corners
        for s in self.pool_scales:
            self.append(nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvBNReLU(in_channels, channels, 1)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        size = x.shape[-2:]
        return [F.interpolate(branch(x), size=size, mode="bilinear", align_corners=self.align_corners)
                for branch in self]
