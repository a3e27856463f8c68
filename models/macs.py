"""A small multiply-accumulate (MAC) counter: conv and linear layers only, via forward hooks.

What it counts, per call of a module during one forward pass:

- ``nn.Conv*d`` (any dim, grouped/depthwise included): ``output elements x (in_channels / groups)
  x prod(kernel_size)``; bias additions are not counted.
- ``nn.Linear``: ``output elements x in_features``.

Everything else (norms, activations, pooling, interpolation, softmax, element-wise products) is
ignored, which is the convention behind the "FLOPs" columns of most segmentation papers (they
are MACs; spec ``asanet.md`` section 5: 25.85 G for ASANet-tiny at 256x256). Works on the
``meta`` device, so a big model can be counted without memory or compute:
``with torch.device("meta"): model = ...`` then ``count_macs(model, torch.empty(..., device="meta"))``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class MacCount:
    """Total MACs of one forward pass, per sample, and per top-level child module."""

    total: int
    batch: int
    by_module: dict[str, int] = field(default_factory=dict)

    @property
    def per_sample(self) -> float:
        return self.total / max(self.batch, 1)


def module_macs(module: nn.Module, output: torch.Tensor) -> int:
    """MACs of one conv/linear call that produced ``output`` (0 for other modules)."""
    if isinstance(module, _CONV):
        k = math.prod(module.kernel_size)
        return output.numel() * (module.in_channels // module.groups) * k
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def count_macs(model: nn.Module, *inputs: Any, top_level_depth: int = 1) -> MacCount:
    """Run ``model(*inputs)`` under ``no_grad`` and count conv + linear MACs.

    by_module groups the counts by the first ``top_level_depth`` components of each module name.
    The model's train/eval mode is left as the caller set it (count in ``eval()`` to leave out
    training-only heads).
    """
    counts: dict[str, int] = {}
    handles = []

    def hook_for(name: str):
        group = ".".join(name.split(".")[:top_level_depth]) or "<root>"

        def hook(mod: nn.Module, _inp: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor):
                counts[group] = counts.get(group, 0) + module_macs(mod, out)
        return hook

    for name, mod in model.named_modules():
        if isinstance(mod, _CONV + (nn.Linear,)):
            handles.append(mod.register_forward_hook(hook_for(name)))
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    batch = next((int(x.shape[0]) for x in inputs if isinstance(x, torch.Tensor) and x.ndim > 0), 1)
    return MacCount(sum(counts.values()), batch, counts)
