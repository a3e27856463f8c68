"""The generic training loop: epochs of shuffled batches, validation, the best epoch, resume.

:func:`run_loop` relies only on the network contract (``training_step``; the optional
``param_groups`` and ``epoch_end`` through ``models.registry``'s ``Network`` helpers) and composes the small units
of ``core.fitting``: the optimiser and LR schedule (:mod:`.schedule`), the AMP/DDP step
(:mod:`.step`), the best epoch and early stopping (:mod:`.early_stopping`) and the resume
checkpoint (:mod:`.checkpoint`).

Reproducibility: items are functions of ``(seed, epoch, index)`` and the epoch order of
``(seed, epoch)`` (``core.data.samplers``); the torch RNG state is checkpointed. Bit-identical
results are expected on CPU; CUDA kernels may add non-determinism.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ...models.registry import epoch_end_logs
from ..assessment.validation import default_predict, metric_of
from ..classes import ClassInfo
from ..data.samplers import collate, epoch_order
from ..errors import InputError
from ..progress import NullProgress, Progress, check_cancel
from .checkpoint import cpu_state, read_resume, restore, write_resume
from .ddp import DistContext, all_reduce_sum, barrier, broadcast_flag
from .early_stopping import BestEpoch
from .schedule import lr_factor
from .step import TrainStep

__all__ = ["LoopConfig", "LoopOutcome", "run_loop"]


@dataclass
class LoopConfig:
    """Settings of :func:`run_loop` (defaults from the ModelSpec's Recipe, overridden by the caller)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.01
    optimizer: str = "adamw"
    momentum: float = 0.9
    schedule: str = "poly"
    poly_power: float = 1.0
    warmup_iters: int = 0
    accumulate: int = 1
    patience: int | None = None
    max_steps_per_epoch: int | None = None
    seed: int = 0
    metric: str = "miou"  # "miou" (dense) or "overall_accuracy" (patch): the head kind's selection metric
    precision: str = "auto"
    val_batch_size: int | None = None

    @classmethod
    def from_recipe(cls, recipe: Any, **overrides: Any) -> LoopConfig:
        """The Recipe's optimiser and schedule with ``overrides`` (epochs, batch_size, lr, ...)."""
        keys = ("weight_decay", "optimizer", "momentum", "schedule", "poly_power", "warmup_iters")
        return cls(**{**{k: getattr(recipe, k) for k in keys}, **overrides})


@dataclass
class LoopOutcome:
    """What :func:`run_loop` returns (weights of the best epoch, already exported)."""

    state: dict
    best_epoch: int
    best_metric: float
    best_confusion: np.ndarray | None
    history: list[dict[str, float]] = field(default_factory=list)
    epochs_run: int = 0
    start_epoch: int = 0


@dataclass
class _Plan:
    """Batches per epoch and optimiser steps of the whole run."""

    n_items: int
    n_batches: int
    total_steps: int
    warmup: int

    @classmethod
    def of(cls, n_items: int, cfg: LoopConfig, world_size: int) -> _Plan:
        if n_items == 0:
            raise InputError("no training sample: the labels leave no labelled pixel for training")
        per_rank = -(-n_items // world_size)
        n_batches = max(1, -(-per_rank // cfg.batch_size))
        if cfg.max_steps_per_epoch:
            n_batches = min(n_batches, cfg.max_steps_per_epoch * cfg.accumulate)
        total_steps = -(-n_batches // cfg.accumulate) * cfg.epochs
        return cls(n_items, n_batches, total_steps, min(cfg.warmup_iters, total_steps // 10))


def _train_epoch(epoch: int, global_step: int, sampler: Any, step: TrainStep, plan: _Plan, cfg: LoopConfig,
                 ctx: DistContext, progress: Progress) -> tuple[dict[str, float], int, int]:
    """One epoch of optimiser steps; returns (summed logs, batches, global step after it)."""
    order = epoch_order(plan.n_items, cfg.seed, epoch, ctx.rank, ctx.world_size)
    sums: dict[str, float] = {}
    count = 0
    step.zero_grad()
    for b in range(plan.n_batches):
        check_cancel(progress)
        idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        if len(idx) == 0:
            idx = order[:cfg.batch_size]
        inputs, target = collate([sampler.item(epoch, int(i)) for i in idx])
        boundary = (b + 1) % cfg.accumulate == 0 or b == plan.n_batches - 1
        loss, logs = step.backward(inputs, target, last_of_step=boundary, epoch=epoch)
        if boundary:
            step.optimizer_step(lr_factor(global_step, plan.total_steps, plan.warmup, cfg.schedule, cfg.poly_power))
            global_step += 1
        sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
        for key, v in logs.items():
            if key != "loss":  # the loop's own loss is authoritative
                sums[key] = sums.get(key, 0.0) + float(v)
        count += 1
        progress.set_fraction((epoch + (b + 1) / plan.n_batches) / cfg.epochs)
    return sums, count, global_step


def run_loop(
    net: Any,
    train_sampler: Any,
    validation: Any,
    cfg: LoopConfig,
    classes: Sequence[ClassInfo],
    device: Any,
    *,
    predict: Callable[[Any, list[Any]], Any] = default_predict,
    export_state: Callable[[Any], dict] | None = None,
    resume_path: Path | None = None,
    run_fingerprint: str = "",
    progress: Progress | None = None,
    ctx: DistContext | None = None,
) -> LoopOutcome:
    """Train ``net`` (any module with ``training_step``) and return its best weights.

    ``train_sampler``: ``__len__`` and ``item(epoch, index) -> (arrays, target)``.
    ``validation``: ``__len__`` and ``confusion(net, predict, K, batch, device, ctx, to_device)``.
    ``predict(net, inputs) -> logits`` (default ``net(*inputs)``); ``export_state(net)`` turns the
    best weights into the state dict to save (default ``net.state_dict()``).
    """
    progress = progress or NullProgress()
    ctx = ctx or DistContext()
    export_state = export_state or (lambda m: m.state_dict())
    k = len(classes)
    step = TrainStep(net, device, ctx, optimizer=cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay,
                     momentum=cfg.momentum, precision=cfg.precision, accumulate=cfg.accumulate)
    plan = _Plan.of(len(train_sampler), cfg, ctx.world_size)

    start_epoch, global_step, history, best = 0, 0, [], BestEpoch()
    ck = read_resume(resume_path, run_fingerprint, progress)
    if ck is not None:
        start_epoch, global_step, history = restore(ck, net, step.opt, step.scaler)
        best = BestEpoch.from_checkpoint(ck)
        progress.info(f"resuming from {resume_path} after epoch {start_epoch}")
    stop = bool(history and history[-1].get("stopped_early"))
    val_batch = cfg.val_batch_size or max(1, cfg.batch_size)

    for epoch in range(start_epoch, cfg.epochs):
        if stop:
            break
        t0 = time.perf_counter()
        net.train()
        sums, count, global_step = _train_epoch(epoch, global_step, train_sampler, step, plan, cfg, ctx, progress)
        keys = sorted(sums)
        reduced = all_reduce_sum(ctx, np.array([sums[kk] for kk in keys] + [count], np.float64), device)
        row: dict[str, float] = {"epoch": float(epoch + 1)}
        row.update({kk: float(v / max(1.0, reduced[-1])) for kk, v in zip(keys, reduced[:-1])})
        row["lr"] = step.lr
        row.update(epoch_end_logs(net))
        net.eval()
        cm = validation.confusion(net, predict, k, val_batch, device, ctx, step.to_device) if len(validation) else \
            np.zeros((k, k), np.int64)
        cm = all_reduce_sum(ctx, cm, device).astype(np.int64)
        value, metrics = metric_of(cm, classes, cfg.metric)
        if metrics is not None:
            row["val_overall_accuracy"] = float(metrics.overall_accuracy)
            row["val_miou"] = float(metrics.miou)
            row["val_kappa"] = float(metrics.kappa)
            score = value
        else:  # no validation blocks: select on the training loss (reported as such)
            score = -row["loss"]
        row["time_s"] = time.perf_counter() - t0
        best.update(score, epoch + 1, net, cm if metrics is not None else None)
        if best.should_stop(cfg.patience):
            row["stopped_early"] = 1.0
            stop = True
        stop = broadcast_flag(ctx, stop, device)
        history.append(row)
        progress.info(" ".join(f"{kk}={v:.4g}" for kk, v in row.items()))
        if resume_path is not None and ctx.is_main:
            write_resume(resume_path, run_fingerprint, epoch=epoch + 1, global_step=global_step, net=net,
                         opt=step.opt, scaler=step.scaler, history=history, best=best.checkpoint_fields())
        barrier(ctx)
    if best.state is None:  # the loop ran no epoch: EPOCHS < 1 reached the loop
        raise InputError(f"training ran no epoch (EPOCHS={cfg.epochs}, starting at epoch {start_epoch}); "
                         "ask for at least one epoch")
    net.load_state_dict(best.state)
    best_metric = best.metric if best.confusion is not None else float("nan")
    return LoopOutcome(cpu_state(export_state(net)), best.epoch, best_metric, best.confusion, history,
                       len(history), start_epoch)
