"""The best epoch so far and early stopping: which weights the run keeps, and when it gives up.

The best epoch is the one with the highest score (the validation metric, or minus the training
loss when there is no validation block); its weights are copied to the CPU. ``patience`` epochs
in a row without a better score stop the run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .checkpoint import cpu_state


@dataclass
class BestEpoch:
    """The best epoch of a run (1-based; 0 = none yet) and the epochs since."""

    metric: float = -math.inf
    epoch: int = 0
    bad_epochs: int = 0
    state: dict | None = None
    confusion: np.ndarray | None = None

    def update(self, score: float, epoch: int, net: Any, confusion: np.ndarray | None) -> bool:
        """Record epoch ``epoch`` (1-based) with ``score``; True when it is the new best."""
        if score > self.metric or self.state is None:
            self.metric, self.epoch, self.bad_epochs = score, epoch, 0
            self.state = cpu_state(net.state_dict())
            self.confusion = confusion
            return True
        self.bad_epochs += 1
        return False

    def checkpoint_fields(self) -> dict:
        """This record as resume-checkpoint fields (core.fitting.checkpoint)."""
        import torch

        return {"best_state": self.state, "best_metric": self.metric, "best_epoch": self.epoch,
                "bad_epochs": self.bad_epochs,
                "best_cm": torch.from_numpy(self.confusion) if self.confusion is not None else None}

    @classmethod
    def from_checkpoint(cls, ck: dict) -> BestEpoch:
        """The record a resume checkpoint holds."""
        cm = ck.get("best_cm")
        return cls(float(ck["best_metric"]), int(ck["best_epoch"]), int(ck["bad_epochs"]), ck["best_state"],
                   cm.numpy() if cm is not None else None)

    def should_stop(self, patience: int | None) -> bool:
        """Whether ``patience`` epochs in a row brought no better score (None: never stop)."""
        return patience is not None and self.bad_epochs >= patience
