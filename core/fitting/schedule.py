"""Optimiser and learning-rate schedule of the training loop, from the ModelSpec's Recipe.

:func:`build_optimizer`: AdamW, Adam or SGD over the network's parameter groups (its own
``param_groups`` when it has them, else every trainable parameter), each group remembering its
``base_lr``. :func:`lr_factor`: the per-optimiser-step multiplier of those base rates.
"""
from __future__ import annotations

import math
from typing import Any

from ...models.registry import optimizer_groups


def lr_factor(step: int, total: int, warmup: int, schedule: str, power: float) -> float:
    """Multiplier of every group's base LR at optimiser step ``step`` of ``total``.

    Linear warm-up from 1e-6 to 1 over ``warmup`` steps (ASANet spec 4.3), then ``poly``
    ((1 - t)^power), ``cosine``, ``step`` (x0.1 at half and at three quarters of the run; design
    choice: the Recipe has no step size) or ``constant``; t runs from 0 to 1 after the warm-up.
    """
    if warmup > 0 and step < warmup:
        return 1e-6 + (1.0 - 1e-6) * step / warmup
    t = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
    if schedule == "poly":
        return (1.0 - t) ** power
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if schedule == "step":
        return 0.1 ** (int(t >= 0.5) + int(t >= 0.75))
    return 1.0


def build_optimizer(net: Any, optimizer: str, lr: float, weight_decay: float, momentum: float) -> Any:
    """The optimiser over ``net``'s parameter groups; empty groups are dropped."""
    import torch

    groups = optimizer_groups(net, lr, weight_decay)  # the network's own groups, or one of all
    for g in groups:
        g["params"] = list(g["params"])
        g.setdefault("lr", lr)
        g.setdefault("weight_decay", weight_decay)
        g["base_lr"] = g["lr"]
    groups = [g for g in groups if g["params"]]
    if optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


def set_lr(opt: Any, factor: float) -> None:
    """Every group's learning rate = its base rate x ``factor``."""
    for g in opt.param_groups:
        g["lr"] = g["base_lr"] * factor
