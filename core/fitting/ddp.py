"""Multi-process training with DistributedDataParallel, started by ``torchrun``.

``torchrun --nproc_per_node=N -m mmlc train ...`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``;
:func:`setup` then joins the process group (NCCL on CUDA GPUs, gloo on CPU). The training loop
shards every epoch like ``DistributedSampler`` (``core.data.samplers.epoch_order``), all-reduces its
logs and validation confusion matrices (:func:`all_reduce_sum`), and only rank 0 writes files.

torch's TCP store (the rendezvous of torchrun and of ``init_process_group``) defaults to a libuv
back end, which some torch builds lack (Debian's ``python3-torch`` 2.6): :func:`store_environment`
says ``USE_LIBUV=0`` there, but torch 2.6 does not pass it to every store it builds, so
:func:`setup` also makes torch's rendezvous stores default to the classic back end
(:func:`stores_without_libuv`) in the workers, and ``python -m mmlc.core.torchrun ...``
(:mod:`.torchrun`) does the same in the launcher: that one launches on any torch.

The network contract trains through ``model.training_step(inputs, target)``, not ``forward``;
DDP only synchronises gradients of calls that go through its ``forward``, so :class:`StepModule`
exposes ``training_step`` as ``forward`` and that module is wrapped.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class DistContext:
    """Where this process stands in a distributed run (world_size 1 = not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    """WORLD_SIZE set by torchrun (1 when started normally)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


@functools.lru_cache(maxsize=1)
def torch_has_libuv() -> bool:
    """Whether this torch's TCP store can use its libuv back end (torch's default since 2.4).

    Probed by starting a libuv store on a free local port, the one reliable test across versions.
    """
    try:
        import torch.distributed as dist

        if not dist.is_available():
            return False
        store = dist.TCPStore("127.0.0.1", 0, 1, True, wait_for_workers=False, use_libuv=True)
    except (RuntimeError, TypeError, ValueError, OSError):
        return False
    del store
    return True


def store_environment() -> dict[str, str]:
    """Environment the workers of a torchrun launch need on this torch: ``USE_LIBUV=0`` when the
    torch has no libuv (their ``env://`` store honours it), nothing otherwise or when set already."""
    if "USE_LIBUV" in os.environ or torch_has_libuv():
        return {}
    return {"USE_LIBUV": "0"}


# Modules of torch 2.6-2.13 that build a TCPStore without saying which back end (so libuv): the
# launcher's rendezvous back ends and the workers' env:// rendezvous on the launcher's store.
_STORE_USERS = (
    "torch.distributed",
    "torch.distributed.rendezvous",
    "torch.distributed.elastic.rendezvous.static_tcp_rendezvous",
    "torch.distributed.elastic.rendezvous.c10d_rendezvous_backend",
)


def stores_without_libuv() -> Any:
    """Make ``TCPStore(...)`` in torch's rendezvous modules default to ``use_libuv=False``.

    For a torch without libuv, where ``USE_LIBUV=0`` does not reach every store torch builds (torch
    2.6 ignores it in torchrun's rendezvous and in the workers' client of the launcher's store).
    Idempotent; returns the class now used.
    """
    import importlib

    import torch.distributed as dist

    base = dist.TCPStore
    if getattr(base, "_mmlc_without_libuv", False):
        return base

    class TCPStoreWithoutLibuv(base):  # type: ignore[misc, valid-type]
        """torch's TCPStore on its classic (non-libuv) back end unless asked otherwise."""

        _mmlc_without_libuv = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("use_libuv", False)
            super().__init__(*args, **kwargs)

    for name in _STORE_USERS:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if getattr(module, "TCPStore", None) is base:
            module.TCPStore = TCPStoreWithoutLibuv
    return TCPStoreWithoutLibuv


def setup(device_type: str) -> DistContext:
    """Join the process group torchrun prepared, or return a single-process context.

    ``device_type`` "cuda" uses NCCL and pins this process to GPU ``LOCAL_RANK``; anything else
    uses gloo.
    """
    world = env_world_size()
    if world <= 1:
        return DistContext()
    import torch
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device_type == "cuda" and dist.is_nccl_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        os.environ.update(store_environment())
        if not torch_has_libuv():
            stores_without_libuv()
        dist.init_process_group(backend=backend)
    return DistContext(dist.get_rank(), dist.get_world_size(), local, backend)


def teardown(ctx: DistContext) -> None:
    """Leave the process group (no-op when not distributed)."""
    if ctx.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        dist.barrier()


def all_reduce_sum(ctx: DistContext, values: np.ndarray, device: Any = "cpu") -> np.ndarray:
    """Element-wise sum of a numpy array over all ranks (float64/int64 kept)."""
    if not ctx.distributed:
        return values
    import torch
    import torch.distributed as dist

    dev = device if ctx.backend == "nccl" else "cpu"
    t = torch.as_tensor(np.ascontiguousarray(values)).to(dev)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().numpy()


def broadcast_flag(ctx: DistContext, flag: bool, device: Any = "cpu") -> bool:
    """Rank 0's boolean for everyone (e.g. "stop early", "cancelled")."""
    if not ctx.distributed:
        return flag
    import torch
    import torch.distributed as dist

    dev = device if ctx.backend == "nccl" else "cpu"
    t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=dev)
    dist.broadcast(t, 0)
    return bool(t.item())


def _step_module(net: Any) -> Any:
    import torch.nn as nn

    class StepModule(nn.Module):
        """``forward(inputs, target)`` = ``net.training_step(inputs, target)`` (see module doc)."""

        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.net = inner

        def forward(self, inputs, target):  # noqa: D401 - delegating
            return self.net.training_step(inputs, target)

    return StepModule(net)


def wrap_for_training(net: Any, ctx: DistContext, device: Any, find_unused_parameters: bool = True) -> Any:
    """A callable ``step(inputs, target) -> (loss, logs)``: DDP-wrapped when distributed.

    ``find_unused_parameters`` defaults to True because networks with auxiliary heads or frozen
    teachers may leave parameters without gradient in a step (switchable; False is faster).
    """
    if not ctx.distributed:
        return net.training_step
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    mod = _step_module(net)
    if getattr(device, "type", "cpu") == "cuda":
        mod = torch.nn.SyncBatchNorm.convert_sync_batchnorm(mod)
        return DDP(mod, device_ids=[device.index or 0], find_unused_parameters=find_unused_parameters)
    return DDP(mod, find_unused_parameters=find_unused_parameters)
