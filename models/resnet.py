"""ResNet-18/34/50 encoders (He et al., CVPR 2016) with torchvision-compatible state-dict keys.

Why in-house: torchvision is not a dependency of mmlc, yet analysts often hold an ImageNet
``resnet*.pth`` file. Keeping torchvision's module names (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0``/``.1``, ``fc``) means such a file loads key for key with
:func:`load_resnet_weights`. The bottleneck puts its stride on the 3x3 conv ("ResNet v1.5", as
torchvision does); parameter counts with the 1000-class ``fc`` are the well-known ones
(resnet18 11,689,512; resnet34 21,797,672; resnet50 25,557,032).

The first conv takes any band count (HFD-Net spec Sec. 5.1: "first conv adapted to the input
channel count ... initialise by averaging/tiling the RGB filters"): see :func:`adapt_first_conv`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping, Union

import torch
from torch import nn

from .checkpoints import read_tensor_file
from .errors import NetworkError

FirstConvInit = Literal["mean", "tile"]


class WeightsFileError(ValueError):
    """A pretrained-weights file is missing, unreadable or does not fit the encoder.

    ``models/`` may not import ``core``; the core maps this to ``ModelFileError``.
    """


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 projection) shortcut; ResNet-18/34."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand (x4) with a shortcut; ResNet-50."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + shortcut)


def _projection(in_ch: int, out_ch: int, stride: int) -> nn.Sequential | None:
    """1x1 conv + BN shortcut (keys ``downsample.0``/``downsample.1``) when the shape changes."""
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


_DEPTHS: dict[str, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


def resnet_names() -> tuple[str, ...]:
    """Encoder names :func:`build_resnet` accepts."""
    return tuple(_DEPTHS)


class ResNet(nn.Module):
    """A ResNet trunk; ``forward_features`` returns C2..C5 (strides 4, 8, 16, 32).

    ``num_classes=None`` builds an encoder without ``avgpool``/``fc`` (what segmentation uses);
    an integer adds the classifier so the module matches torchvision's one exactly.
    """

    def __init__(self, block: type[nn.Module], depths: tuple[int, int, int, int], in_channels: int = 3,
                 num_classes: int | None = None, zero_init_residual: bool = True, base_width: int = 64) -> None:
        super().__init__()
        if in_channels < 1:
            raise NetworkError(f"in_channels must be >= 1, got {in_channels}")
        if base_width < 8:
            raise NetworkError(f"base_width must be >= 8, got {base_width}")
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, base_width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        expansion: int = block.expansion  # type: ignore[attr-defined]
        # base_width 64 is torchvision's ResNet (its ImageNet files load); smaller widths give the
        # same key layout with thinner tensors, for small models trained from scratch (mmlc design).
        widths = (base_width, 2 * base_width, 4 * base_width, 8 * base_width)
        in_ch = base_width
        for i, (width, depth) in enumerate(zip(widths, depths)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(depth):
                blocks.append(block(in_ch, width, stride if j == 0 else 1))
                in_ch = width * expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.out_channels: tuple[int, int, int, int] = tuple(w * expansion for w in widths)  # type: ignore[assignment]
        self.fc: nn.Linear | None = None
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(self.out_channels[-1], num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        """Kaiming-normal convs, unit BN and (design choice, switchable) a zero last BN per block.

        Zeroing the residual's last BN makes each block start as the identity (Goyal et al.
        2017), which trains faster from scratch; a pretrained file overwrites all of it.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if not zero_init_residual:
            return
        for m in self.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)
            elif isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """C2..C5 feature maps (strides 4, 8, 16, 32; channels ``out_channels``)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Class logits when the module has an ``fc``, else the C2..C5 list."""
        feats = self.forward_features(x)
        if self.fc is None:
            return feats
        return self.fc(torch.flatten(self.avgpool(feats[-1]), 1))


def build_resnet(name: str, in_channels: int = 3, num_classes: int | None = None,
                 zero_init_residual: bool = True, base_width: int = 64) -> ResNet:
    """Build ``resnet18``/``resnet34``/``resnet50`` (randomly initialised).

    ``base_width`` (default 64, torchvision's) scales every stage's width; only 64 can load
    ImageNet weights.
    """
    key = name.lower()
    if key not in _DEPTHS:
        raise NetworkError(f"unknown encoder {name!r}; choose one of {', '.join(_DEPTHS)}")
    block, depths = _DEPTHS[key]
    return ResNet(block, depths, in_channels=in_channels, num_classes=num_classes,
                  zero_init_residual=zero_init_residual, base_width=base_width)


def adapt_first_conv(weight: torch.Tensor, in_channels: int, mode: FirstConvInit = "mean") -> torch.Tensor:
    """Map pretrained first-conv filters (O, C0, k, k) onto ``in_channels`` input bands.

    ``mean``: every new band gets the mean of the C0 pretrained filters (no band is privileged,
    suits SAR or multispectral bands that do not correspond to R, G, B).
    ``tile``: bands take the pretrained filters cyclically (R, G, B, R, ...), which keeps the
    colour filters for RGB-first band orders.
    Both are scaled by C0 / in_channels so the response to a constant image (the sum of the
    filter over its input channels) keeps the pretrained magnitude (HFD-Net spec Sec. 5.1).
    """
    if weight.dim() != 4:
        raise NetworkError(f"expected a 4-D conv weight, got shape {tuple(weight.shape)}")
    c0 = weight.shape[1]
    if in_channels == c0:
        return weight.clone()
    if mode == "mean":
        base = weight.mean(dim=1, keepdim=True).expand(-1, in_channels, -1, -1)
        out = base * (c0 / in_channels)
    elif mode == "tile":
        reps = math.ceil(in_channels / c0)
        out = weight.repeat(1, reps, 1, 1)[:, :in_channels] * (c0 / in_channels)
    else:
        raise NetworkError(f"first_conv must be 'mean' or 'tile', got {mode!r}")
    return out.contiguous()


@dataclass
class LoadReport:
    """What :func:`load_resnet_weights` did: keys not filled, keys ignored, the first conv."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    adapted_first_conv: bool = False


StateSource = Union[str, Path, Mapping[str, torch.Tensor]]


def read_state_dict(source: StateSource) -> dict[str, torch.Tensor]:
    """Read tensors from a ``.safetensors`` file or a pickle-free torch file (``weights_only``).

    Unwraps the common ``{"state_dict": ...}``/``{"model": ...}`` checkpoints and strips a
    ``module.`` (DataParallel) or ``encoder.``/``backbone.`` prefix when every key carries it.
    """
    if isinstance(source, Mapping):
        sd: object = dict(source)
    else:
        sd = read_tensor_file(
            source, WeightsFileError,
            missing="pretrained weights file not found (give the path of a torchvision-style resnet .pth or "
                    ".safetensors file)",
            unreadable="Use a plain state dict saved with torch.save(model.state_dict()) or safetensors")
    for wrapper in ("state_dict", "model"):
        if isinstance(sd, Mapping) and wrapper in sd and isinstance(sd[wrapper], Mapping):
            sd = sd[wrapper]
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsFileError("the weights file does not hold a flat name -> tensor state dict")
    out = {str(k): v for k, v in sd.items()}
    for prefix in ("module.", "encoder.", "backbone."):
        if out and all(k.startswith(prefix) for k in out):
            out = {k[len(prefix):]: v for k, v in out.items()}
    return out


def load_resnet_weights(model: ResNet, source: StateSource, first_conv: FirstConvInit = "mean") -> LoadReport:
    """Load torchvision-layout weights into ``model``, adapting ``conv1`` to its band count.

    ``fc`` weights are ignored when the model has no classifier (an encoder) or another class
    count. Any other shape mismatch, or a file sharing no key with the model, raises
    :class:`WeightsFileError` before the model is touched (nothing is half-loaded).
    """
    sd = read_state_dict(source)
    own = model.state_dict()
    report = LoadReport()
    if "conv1.weight" in sd and sd["conv1.weight"].dim() == 4 and sd["conv1.weight"].shape[1] != model.in_channels:
        sd["conv1.weight"] = adapt_first_conv(sd["conv1.weight"], model.in_channels, first_conv)
        report.adapted_first_conv = True
    take: dict[str, torch.Tensor] = {}
    bad: list[str] = []
    for k, v in sd.items():
        if k not in own:
            report.unexpected.append(k)
        elif own[k].shape != v.shape:
            if k.startswith("fc."):
                report.unexpected.append(k)
            else:
                bad.append(f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}")
        else:
            take[k] = v
    if bad:
        raise WeightsFileError("pretrained weights do not fit this encoder (is it another ResNet depth?): "
                               + "; ".join(bad[:5]))
    if not take:
        raise WeightsFileError("no key of the weights file matches a torchvision ResNet "
                               f"(first keys: {', '.join(list(sd)[:5])})")
    report.missing = [k for k in own if k not in take]
    model.load_state_dict(take, strict=False)
    return report
