"""The base class of every network: the defaults of the contract's optional hooks.

A network subclasses :class:`NetworkModule` instead of ``nn.Module`` and so fulfils
:class:`.registry.Network` once it defines ``forward`` and ``training_step``; it overrides
``param_groups`` (stage-wise LR, no-decay groups) or ``epoch_end`` (per-epoch statistics) only
where its spec asks for them. The base adds no parameter or buffer: state-dict keys are those of
the subclass alone.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from .registry import single_param_group


class NetworkModule(nn.Module):
    """``nn.Module`` with the contract's defaults: one optimiser group, no end-of-epoch logs."""

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """One group of every trainable parameter at ``lr`` and ``weight_decay``."""
        return single_param_group(self, lr, weight_decay)

    def epoch_end(self) -> dict[str, float]:
        """Nothing to report or update at the end of an epoch."""
        return {}
