"""Loading ConvNeXt-V2 ImageNet checkpoints into :class:`.convnextv2.ConvNeXtV2` (no download, no timm).

The user brings the file: a timm ``convnextv2_*`` checkpoint (``pytorch_model.bin`` /
``model.safetensors``), an official facebookresearch/ConvNeXt-V2 ``.pt``/``.pth``, or an
mmpretrain ``convnext-v2-*.pth`` (the one the ASANet reference loads, spec ``asanet.md`` section 1).
``.pth``/``.pt``/``.bin`` files are read with ``torch.load(weights_only=True)`` (no pickled
code runs), ``.safetensors`` with safetensors.

Licence: the ConvNeXt-V2 weights published by Meta (and their timm/mmpretrain conversions) are
**CC-BY-NC-4.0, non-commercial use only**. A model fine-tuned from them inherits that condition;
train from scratch (no ``pretrained``) for commercial work.

Key layouts are mapped onto timm's (spec section 7, "Mapping from timm to mm ConvNeXt"):

============================================ ========================== ==============================
timm (our layout)                             official FB                mmpretrain (``backbone.`` cut)
============================================ ========================== ==============================
``stem.0/1``                                  ``downsample_layers.0.0/1`` ``downsample_layers.0.0/1``
``stages.i.downsample.0/1`` (i >= 1)          ``downsample_layers.i.0/1`` ``downsample_layers.i.0/1``
``stages.i.blocks.j.conv_dw``                 ``stages.i.j.dwconv``       ``stages.i.j.depthwise_conv``
``stages.i.blocks.j.mlp.fc1/fc2``             ``...pwconv1/2``            ``...pointwise_conv1/2``
``stages.i.blocks.j.mlp.grn.weight/bias``     ``...grn.gamma/beta``       ``...grn.gamma/beta``
``norm3`` (timm ``head.norm``)                ``norm``                    ``norm3``
``head.fc`` (classifier, not loaded)          ``head``                    ``head.fc``
============================================ ========================== ==============================

Shapes are fitted where the layouts only differ in view: GRN ``(1,1,1,D)`` -> ``(D,)`` and
Linear ``(O, I)`` <-> 1x1 conv ``(O, I, 1, 1)``. A stem trained on a different band count is
adapted with :func:`adapt_stem_weight`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Union

import torch

from .checkpoints import read_tensor_file
from .convnextv2 import ConvNeXtV2
from .errors import NetworkError

StateDict = dict[str, torch.Tensor]
STEM_KEY = "stem.0.weight"


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or does not fit the ConvNeXt-V2 backbone (nothing was loaded)."""


@dataclass
class LoadReport:
    """What a load did: the source layout, keys the model kept at init, keys of the file not used."""

    layout: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)


@dataclass
class PreparedState:
    """A checkpoint mapped and shape-checked against one backbone, ready to load atomically."""

    state: StateDict
    report: LoadReport


def read_checkpoint(path: Union[str, Path]) -> StateDict:
    """Read a ``.safetensors`` or torch (``.pth``/``.pt``/``.bin``/``.ckpt``) file into a flat tensor dict.

    Containers (``state_dict``, ``model``, ``module``, ``state_dict_ema``) are unwrapped.
    """
    path = Path(path)
    obj = read_tensor_file(
        path, CheckpointError,
        missing="checkpoint file not found (give the path of a downloaded ConvNeXt-V2 .pth or .safetensors file)",
        unreadable="Re-download the file; only plain tensor checkpoints (.pth saved with torch.save, "
                   ".safetensors) are accepted")
    for _ in range(3):
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in ("state_dict", "model", "module", "state_dict_ema")
                          if k in obj and isinstance(obj[k], Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds no state dict (found {type(obj).__name__})")
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{path} holds no tensors")
    return state


def detect_layout(state: Mapping[str, torch.Tensor]) -> str:
    """``"timm"``, ``"official"`` (facebookresearch) or ``"mmpretrain"``, from the key names."""
    keys = list(state)
    if any(".depthwise_conv." in k or ".pointwise_conv1." in k for k in keys):
        return "mmpretrain"
    if any(".dwconv." in k or ".pwconv1." in k for k in keys):
        return "official"
    return "timm"


_BLOCK = re.compile(r"^stages\.(\d+)\.(\d+)\.")
_DOWN = re.compile(r"^downsample_layers\.(\d+)\.")


def to_timm_layout(state: Mapping[str, torch.Tensor]) -> tuple[StateDict, str]:
    """Rename the keys of any supported layout to ours (timm + ``norm{i}``); returns (state, layout)."""
    # common wrappers: DDP "module.", mmpretrain "backbone."
    stripped: StateDict = {}
    for k, v in state.items():
        for prefix in ("module.", "backbone."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        stripped[k] = v
    layout = detect_layout(stripped)
    out: StateDict = {}
    for k, v in stripped.items():
        if layout == "timm":
            k = re.sub(r"^head\.norm\.", "norm3.", k)
        else:
            m = _DOWN.match(k)
            if m:
                i = int(m.group(1))
                k = _DOWN.sub("stem." if i == 0 else f"stages.{i}.downsample.", k)
            k = _BLOCK.sub(lambda mm: f"stages.{mm.group(1)}.blocks.{mm.group(2)}.", k)
            for a, b in ((".dwconv.", ".conv_dw."), (".depthwise_conv.", ".conv_dw."),
                         (".pwconv1.", ".mlp.fc1."), (".pwconv2.", ".mlp.fc2."),
                         (".pointwise_conv1.", ".mlp.fc1."), (".pointwise_conv2.", ".mlp.fc2."),
                         (".grn.gamma", ".mlp.grn.weight"), (".grn.beta", ".mlp.grn.bias")):
                k = k.replace(a, b)
            if layout == "official":
                k = re.sub(r"^norm\.", "norm3.", k)
                k = re.sub(r"^head\.(weight|bias)$", r"head.fc.\1", k)
        out[k] = v
    return out, layout


def adapt_stem_weight(weight: torch.Tensor, in_channels: int, mode: str = "auto") -> torch.Tensor:
    """Adapt a stem conv weight ``(O, c, k, k)`` trained on ``c`` bands to ``in_channels`` bands.

    mode ``"mean"``: every new band gets the mean filter over the source bands; ``"tile"``: band j
    gets source filter ``j % c`` (RGB filters repeated over the new bands). Both then scale by
    ``c / in_channels`` so an image whose bands all hold the same value keeps (mean: exactly)
    the response the pretrained stem gives it. For one SAR band, "mean" equals the reference's
    trick of replicating SAR into three channels. ``"auto"`` (design choice): "mean" when there
    are fewer bands than the source (SAR 1-2 bands), "tile" when there are more (RGBN, Sentinel-2).
    """
    if weight.ndim != 4:
        raise CheckpointError(f"stem weight must be 4-D (O, C, k, k), got shape {tuple(weight.shape)}")
    c = weight.shape[1]
    if in_channels == c:
        return weight.clone()
    if mode == "auto":
        mode = "mean" if in_channels < c else "tile"
    if mode == "mean":
        new = weight.mean(dim=1, keepdim=True).expand(-1, in_channels, -1, -1)
    elif mode == "tile":
        new = weight[:, [j % c for j in range(in_channels)]]
    else:
        raise NetworkError(f"stem adaptation mode must be 'auto', 'mean' or 'tile', got {mode!r}")
    return (new * (c / in_channels)).contiguous()


def prepare_convnextv2_state(model: ConvNeXtV2, source: Union[str, Path, Mapping[str, torch.Tensor]],
                             stem_mode: str = "auto") -> PreparedState:
    """Map and check a checkpoint against ``model`` without touching it (raises CheckpointError)."""
    raw = read_checkpoint(source) if isinstance(source, (str, Path)) else dict(source)
    state, layout = to_timm_layout(raw)
    target = model.state_dict()
    report = LoadReport(layout)
    ready: StateDict = {}
    problems = []
    for k, v in state.items():
        if k not in target:
            report.unexpected.append(k)
            continue
        want = target[k].shape
        if v.shape == want:
            ready[k] = v
        elif k == STEM_KEY and v.ndim == 4 and (v.shape[0], *v.shape[2:]) == (want[0], *want[2:]):
            ready[k] = adapt_stem_weight(v, want[1], stem_mode)
            report.adapted.append(f"{k}: {v.shape[1]} -> {want[1]} bands ({stem_mode})")
        elif v.numel() == target[k].numel() and (k.endswith((".grn.weight", ".grn.bias"))
                                                  or ".mlp.fc" in k):
            ready[k] = v.reshape(want)  # GRN (1,1,1,D) -> (D,); Linear <-> 1x1 conv
        else:
            problems.append(f"{k}: file {tuple(v.shape)} vs model {tuple(want)}")
    report.missing = [k for k in target if k not in ready]
    if problems:
        raise CheckpointError("checkpoint does not fit this ConvNeXt-V2 (wrong variant?): "
                              + "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""))
    if not ready:
        raise CheckpointError("the file holds no ConvNeXt-V2 weights (no key matches the backbone); "
                              "give a timm, official or mmpretrain ConvNeXt-V2 checkpoint")
    hard_missing = [k for k in report.missing if not re.match(r"^norm[0-3]\.", k)]
    if hard_missing:
        raise CheckpointError(f"checkpoint lacks {len(hard_missing)} backbone weights (e.g. {hard_missing[:3]}); "
                              "is it a ConvNeXt-V2 of the same variant?")
    return PreparedState(ready, report)


def load_convnextv2_weights(model: ConvNeXtV2,
                            source: Union[str, Path, Mapping[str, torch.Tensor], PreparedState],
                            stem_mode: str = "auto") -> LoadReport:
    """Load a ConvNeXt-V2 checkpoint into ``model``; all-or-nothing (checked before any copy).

    Returns the :class:`LoadReport`. With a timm/official file of the same variant, ``unexpected``
    is only the classifier (``head.fc.*``) and ``missing`` only ``norm0-2`` (no pretrained source).
    Weights are CC-BY-NC-4.0 (see module docstring).
    """
    prepared = source if isinstance(source, PreparedState) else prepare_convnextv2_state(model, source, stem_mode)
    model.load_state_dict(prepared.state, strict=False)
    return prepared.report
