"""One optimiser's training steps on a device: DDP, channels-last, mixed precision, accumulation.

:class:`TrainStep` puts the network on the device (channels-last on CUDA), wraps it for
DistributedDataParallel when the run is distributed (``core.fitting.ddp``), builds the optimiser
(``core.fitting.schedule``) and runs each micro-batch under ``torch.autocast`` in the precision
``core.device.autocast_dtype`` picks, with a GradScaler for fp16. Gradients of ``accumulate``
micro-batches add up before one optimiser step; under DDP they are all-reduced only on that step.
"""
from __future__ import annotations

import contextlib
from typing import Any

from ..errors import MmlcError
from .ddp import DistContext, wrap_for_training
from .schedule import build_optimizer, set_lr


class TrainStep:
    """Forward + backward of micro-batches and the optimiser steps of one network."""

    def __init__(self, net: Any, device: Any, ctx: DistContext, *, optimizer: str, lr: float, weight_decay: float,
                 momentum: float, precision: str, accumulate: int) -> None:
        import torch

        from ..device import autocast_dtype

        self.device = device
        self.accumulate = accumulate
        net.to(device)
        self.channels_last = device.type == "cuda"
        if self.channels_last:
            net.to(memory_format=torch.channels_last)
        self.step_fn = wrap_for_training(net, ctx, device)
        self.opt = build_optimizer(net, optimizer, lr, weight_decay, momentum)
        self.amp_dtype = autocast_dtype(device, precision)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None

    def to_device(self, xs: list[Any]) -> list[Any]:
        """Input tensors on the device (channels-last 4-D tensors on CUDA)."""
        import torch

        out = []
        for x in xs:
            x = x.to(self.device, non_blocking=True)
            if self.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            out.append(x)
        return out

    def backward(self, inputs: list[Any], target: Any, *, last_of_step: bool, epoch: int) -> tuple[Any, dict]:
        """Forward and backward of one micro-batch; returns (loss, the network's logs).

        ``last_of_step``: the optimiser steps after this micro-batch (DDP syncs gradients only then).
        """
        import torch

        inputs, target = self.to_device(inputs), target.to(self.device, non_blocking=True)
        # DDP: no gradient all-reduce on accumulation micro-steps, only at the optimiser step
        no_sync = not last_of_step and hasattr(self.step_fn, "no_sync")
        with self.step_fn.no_sync() if no_sync else contextlib.nullcontext():
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                loss, logs = self.step_fn(inputs, target)
            if not torch.isfinite(loss.detach()).all() and self.scaler is None:
                raise MmlcError(f"the loss became {float(loss)} at epoch {epoch + 1}; lower LEARNING_RATE "
                                "or check the inputs for extreme values")
            scaled = loss / self.accumulate
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        return loss, logs or {}

    def optimizer_step(self, lr_factor: float) -> None:
        """Apply the accumulated gradients at base rate x ``lr_factor`` and clear them."""
        set_lr(self.opt, lr_factor)
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.zero_grad()

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    @property
    def lr(self) -> float:
        """The learning rate of the last parameter group now."""
        return float(self.opt.param_groups[-1]["lr"])
