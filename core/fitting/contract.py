"""The network contract's optional methods, each asked in exactly one place.

Every network trains through ``training_step(inputs, target) -> (loss, logs)``; two methods are
optional (``docs/contributing.md``): ``param_groups(lr, weight_decay)`` (per-group learning rates and
decay) and ``epoch_end() -> logs`` (end-of-epoch bookkeeping, e.g. PRSANet's prototypes). They are
duck-typed here and nowhere else, so a typed ``Network`` protocol can replace these two functions.
"""
from __future__ import annotations

from typing import Any


def param_groups_of(net: Any, lr: float, weight_decay: float) -> list[dict] | None:
    """The network's own parameter groups, or None when it has no ``param_groups``."""
    if hasattr(net, "param_groups") and callable(net.param_groups):
        return [dict(g) for g in net.param_groups(lr, weight_decay)]
    return None


def epoch_end_logs(net: Any) -> dict[str, float]:
    """What the network's ``epoch_end`` logs (empty when it has none)."""
    if hasattr(net, "epoch_end") and callable(net.epoch_end):
        return {k: float(v) for k, v in (net.epoch_end() or {}).items()}
    return {}
