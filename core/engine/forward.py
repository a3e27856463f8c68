"""The model's forward pass in an inference run: batches in, softmax probabilities out.

:class:`NetworkFile` builds the network of a model file once the run starts;
:class:`Runner` runs it on a device (inference mode, channels_last on CUDA, autocast)
and halves its batch on a CUDA out-of-memory error; :class:`ForwardTicks` moves the progress
bar while a batch is inside the network, stage by stage.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..errors import InputError, ModelFileError
from ..modelfiles.modelfile import build_from_file
from ..progress import NullProgress, Progress, Steps, check_cancel


@dataclass(frozen=True)
class NetworkFile:
    """The network of a model file (``path``), to be built on ``device`` once, when the run
    starts (:meth:`Runner.start`): built on torch's meta device and given the file's weights
    (:func:`.modelfile.build_from_file`), channels_last on CUDA. ``num_classes``: the card's,
    as the checks before the run read it."""

    path: Path
    device: Any
    num_classes: int

    def build(self) -> Any:
        card, net = build_from_file(self.path, self.device)
        if card.num_classes != self.num_classes:
            raise ModelFileError(f"{self.path}: inconsistent card")
        if self.device.type == "cuda":
            import torch

            net = net.to(memory_format=torch.channels_last)
        return net


@dataclass
class Runner:
    """Runs the model on batches on ``device`` (inference mode, channels_last, autocast).

    On a CUDA out-of-memory error the batch is halved and the run continues (down to 1).
    ``model`` may be None with the ``network`` file to build it from: it is then built by
    :meth:`start` or at the first batch, so that building it overlaps the reader's first windows.
    """

    model: Any
    device: Any
    batch: int
    autocast: Any = None  # torch dtype or None
    progress: Progress = field(default_factory=NullProgress)
    network: Optional[NetworkFile] = None
    forward_s: float = 0.0  # summed over model workers
    _lock: Any = field(default_factory=threading.Lock, repr=False)

    def start(self) -> None:
        """Build the model now if it is still to be built."""
        if self.model is None:  # called by the driver before any worker runs
            if self.network is None:
                raise ValueError("Runner needs a model or a network file")
            self.model = self.network.build()

    def __call__(self, inputs: Sequence[Any]) -> np.ndarray:
        """Softmax probabilities (float32 numpy) for a batch: model-ready tensors (on the device)
        or float32 arrays."""
        import torch

        n = inputs[0].shape[0]
        outs = []
        i = 0
        while i < n:
            b = min(self.batch, n - i)
            try:
                outs.append(self._forward([x[i:i + b] for x in inputs]))
                i += b
            except torch.OutOfMemoryError:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if b <= 1:
                    raise InputError(
                        "the GPU ran out of memory even for one tile/patch batch; use a smaller tile size, "
                        "precision bf16/fp16, or device cpu"
                    ) from None
                self.batch = max(1, self.batch // 2)
                self.progress.warn(f"GPU out of memory: batch size lowered to {self.batch}")
        return outs[0] if len(outs) == 1 else np.concatenate(outs, axis=0)

    def _forward(self, xs: Sequence[Any]) -> np.ndarray:
        import torch

        self.start()
        t0 = time.perf_counter()
        with torch.inference_mode():
            ts = []
            for x in xs:
                t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
                t = t.to(self.device, non_blocking=True)
                if t.ndim == 4 and self.device.type == "cuda":
                    t = t.contiguous(memory_format=torch.channels_last)
                ts.append(t)
            if self.autocast is not None:
                with torch.autocast(self.device.type, dtype=self.autocast):
                    logits = self.model(*ts)
            else:
                logits = self.model(*ts)
            probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
        with self._lock:
            self.forward_s += time.perf_counter() - t0
        return probs


# --- progress inside a forward pass ----------------------------------------------------
class ForwardTicks:
    """Moves the bar while a batch is inside the network, for rasters of few tiles (one 256 x 256
    tile of ASANet is a few seconds on a CPU: the bar used to jump from 0 to 100).

    A forward hook on each top-level child module of the network (encoders, fusion, decoder...)
    advances a share of the running batch's units as that stage finishes; :meth:`run` returns
    what is left for the hand-over. Shares are per thread (model workers run batches side by
    side) and capped, so a module called twice or a batch retried after a GPU out-of-memory
    error never counts more than its batch. A cancel is honoured there too, between two stages
    of the forward pass, rather than after the whole batch.
    """

    def __init__(self, steps: Steps) -> None:
        self.steps = steps
        self.local = threading.local()
        self.handles: list = []
        self.stages = 0

    def attach(self, model: Any) -> None:
        """Hook the network's stages: its top-level modules and, for its top-level
        ModuleLists/ModuleDicts (a container itself is never called), the blocks of each member
        (ASANet's per-level fusion modules; DAS2F's stage = its MS, PAN and cross blocks, where
        nearly all of its time goes)."""
        import torch

        stages = []
        for child in (model.children() if hasattr(model, "children") else []):
            if isinstance(child, (torch.nn.ModuleList, torch.nn.ModuleDict)):
                for member in child.children():
                    stages += list(member.children()) or [member]
            else:
                stages.append(child)
        self.stages = len(stages)
        self.handles = [m.register_forward_hook(self._tick) for m in stages]

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def _tick(self, *_: Any) -> None:
        rec = getattr(self.local, "rec", None)
        if rec is not None and rec[1] > 0:
            part = min(rec[0], rec[1])
            rec[1] -= part
            self.steps.advance(part, settle=False)
        if rec is not None:
            check_cancel(self.steps.progress)

    def run(self, units: float, forward: Callable[[], Any]) -> tuple[Any, float]:
        """``forward()`` with ticks; (its result, the batch's units not advanced yet)."""
        if not self.stages:
            return forward(), units
        share = units * self.stages / (self.stages + 1)
        rec = [share / self.stages, share]
        self.local.rec = rec
        try:
            out = forward()
        finally:
            self.local.rec = None
        return out, units - (share - rec[1])
