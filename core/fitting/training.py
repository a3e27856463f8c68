"""The training engine: data preparation, one generic loop for every network, the model file.

:func:`train` is what ``core.api.train``, the Processing algorithm and ``python -m mmlc train``
run. It

1. loads the scenes (``core.data.datasets``), maps label values to class indices, computes per-band
   normalisation statistics from the training data (``core.engine.normalize``), and splits every scene
   into spatially disjoint training/validation blocks (``core.data.splits``);
2. picks the sampler from the ModelSpec's ``head_kind`` (``core.data.samplers``), never from the
   architecture name;
3. runs :func:`run_loop`, which only relies on the network contract of ``docs/contributing.md``
   (``training_step``, optional ``param_groups`` and ``epoch_end``) and the ModelSpec's Recipe;
4. writes the model file (``core.modelfiles.modelfile.save_model_file``, atomic) and the HTML training report.

The loop: optimiser from the Recipe (AdamW/Adam/SGD) over the network's parameter groups,
per-iteration LR factor (linear warm-up from 1e-6, then poly/cosine/step/constant), AMP on CUDA
(``core.device.autocast_dtype``; a GradScaler for fp16), gradient accumulation, early stopping,
the best checkpoint by the validation metric (mIoU for dense, OA for patch models), and a resume
checkpoint written atomically after every epoch beside the output (``<output>.resume.pt``): a
killed run restarted with the same parameters continues at the next epoch with the same
schedule and RNG state, so it ends with the same weights as an uninterrupted run.

Reproducibility: items are functions of ``(seed, epoch, index)`` and the epoch order of
``(seed, epoch)``; the torch RNG state is checkpointed. Bit-identical results are expected on CPU;
CUDA kernels may add non-determinism.
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..classes import ClassInfo, read_class_table
from ..data.datasets import Scene, SceneData, load_scene
from ..data.samplers import IGNORE, DenseTileSampler, PatchSampler, PreparedScene, collate, epoch_order
from ..data.splits import block_split, default_block_size
from ..engine import normalize
from ..engine.atomic import RunFiles, new_run_id, os_error, remove_temp, temp_path
from ..engine.output_paths import check_outputs
from ..errors import InputError, MmlcError, ModelFileError
from ..modelfiles.card_schema import strip_path_kwargs
from ..modelfiles.modelfile import ModalityCard, ModelCard, load_model_file, save_model_file
from ..progress import NullProgress, Progress, check_cancel
from .ddp import DistContext, all_reduce_sum, barrier, broadcast_flag, setup, teardown, wrap_for_training

__all__ = [
    "Scene", "TrainResult", "LoopConfig", "LoopOutcome", "PreparedData", "train", "prepare_data",
    "run_loop", "lr_factor", "resume_path_for", "DenseValidation", "PatchValidation",
]

RESUME_SUFFIX = ".resume.pt"
_RESUME_VERSION = 1


def _version() -> str:
    try:
        from ... import __version__  # type: ignore[attr-defined]

        return str(__version__)
    except Exception:  # the package may not define a version string
        return "0.0.0"


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    model_path: str
    report_path: str | None
    card: ModelCard
    history: list[dict[str, float]]
    best_epoch: int
    best_metric: float
    metric_name: str
    metrics: Any = None  # core.assessment.metrics.Metrics of the best epoch on the validation blocks
    epochs_run: int = 0
    resumed_from_epoch: int = 0


# ---------------------------------------------------------------------------------------------
# Data preparation
# ---------------------------------------------------------------------------------------------

@dataclass
class PreparedData:
    """Scenes ready for sampling plus what the model card needs about them."""

    scenes: list[PreparedScene]
    modality_cards: list[ModalityCard]
    classes: list[ClassInfo]
    band_counts: list[int]
    fingerprints: list[dict]
    n_train: int
    n_val: int


def _looks_linear_sar(a: np.ndarray) -> bool:
    """Heuristic for SAR given as calibrated linear intensity rather than dB (design choice,
    switchable with train's ``to_db``): no negative value and a median below 1 (backscatter
    coefficients are mostly < 1, i.e. < 0 dB). dB data has negative values; 8-bit stretched SAR
    and SpaceNet 6's positive dB values have medians far above 1, so none of them is converted."""
    v = a[np.isfinite(a)]
    if v.size == 0 or v.min() < 0:
        return False
    med = float(np.median(v))
    return 0.0 < med < 1.0


def _subsample(a: np.ndarray, max_pixels: int = 4_000_000) -> np.ndarray:
    step = max(1, int(math.ceil(math.sqrt(a.shape[-1] * a.shape[-2] / max_pixels))))
    return a[:, ::step, ::step]


def resolve_classes(datas: Sequence[SceneData], table: list[ClassInfo] | None) -> list[ClassInfo]:
    """The classes of the run: the given table, else the union over scenes by value (first name wins)."""
    if table is not None:
        return sorted(table, key=lambda c: c.value)
    present: set[int] = set()
    for d in datas:
        present.update(int(v) for v in np.unique(d.values) if v > 0)
    by_value: dict[int, ClassInfo] = {}
    for d in datas:
        for c in d.classes:
            by_value.setdefault(int(c.value), c)
    out = []
    from ..classes import default_color

    for i, v in enumerate(sorted(present)):
        out.append(by_value.get(v, ClassInfo(v, f"class {v}", default_color(i))))
    if len({c.color for c in out}) < len(out):  # scenes coloured their classes independently
        out = [ClassInfo(c.value, c.name, default_color(i)) for i, c in enumerate(out)]
    return out


def prepare_data(
    datas: Sequence[SceneData],
    modality_names: Sequence[str],
    ratios: Sequence[int],
    *,
    classes: list[ClassInfo],
    validation_fraction: float,
    seed: int,
    tile: int,
    guard: int = 0,
    to_db: Sequence[bool] | None = None,
    given_cards: Sequence[ModalityCard | None] | None = None,
    progress: Progress | None = None,
) -> PreparedData:
    """Normalise the scenes, encode labels as class indices, split them into blocks.

    ``given_cards[i]`` reuses an existing modality's normalisation (fine-tuning, distillation
    teachers) instead of computing new statistics.
    """
    progress = progress or NullProgress()
    n_mod = len(modality_names)
    band_counts = [int(a.shape[0]) for a in datas[0].arrays]
    for d in datas[1:]:
        counts = [int(a.shape[0]) for a in d.arrays]
        if counts != band_counts:
            raise InputError(f"scene {d.name} has band counts {counts} but the first scene has {band_counts}; "
                             "every scene must have the same bands in the same order")
    cards: list[ModalityCard] = []
    for i in range(n_mod):
        given = given_cards[i] if given_cards is not None else None
        if given is not None:
            if given.bands != band_counts[i]:
                raise InputError(f"input {i + 1} has {band_counts[i]} bands but the model expects {given.bands}")
            cards.append(given)
            continue
        if to_db is not None:
            db = bool(to_db[i])
        else:
            db = modality_names[i] == "sar" and all(_looks_linear_sar(_subsample(d.arrays[i])) for d in datas)
            if db:
                progress.info(f"input {i + 1} looks like linear SAR intensity: converting it to dB (to_db)")
        try:
            mean, std = normalize.compute_stats((_subsample(d.arrays[i]) for d in datas), to_db_first=db)
        except ValueError as e:
            raise InputError(f"input {i + 1} has no valid pixel in the training scenes: {e}") from e
        cards.append(ModalityCard(name=modality_names[i], bands=band_counts[i], grid_ratio=int(ratios[i]),
                                  mean=[float(x) for x in mean], std=[float(x) for x in std], to_db=db))
    lut_size = max([c.value for c in classes] + [int(d.values.max(initial=0)) for d in datas]) + 1
    lut = np.full(lut_size, IGNORE, np.int64)
    for idx, c in enumerate(classes):
        lut[c.value] = idx
    scenes: list[PreparedScene] = []
    n_train = n_val = 0
    unknown: set[int] = set()
    for si, d in enumerate(datas):
        target = lut[d.values.astype(np.int64)]
        unknown.update(int(v) for v in np.unique(d.values[(target == IGNORE) & (d.values > 0)]))
        arrays = []
        for a, card in zip(d.arrays, cards):
            x = normalize.apply(a, card)
            np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
            arrays.append(x)
        labelled = target != IGNORE
        block = default_block_size(labelled.shape, tile)
        split = block_split(labelled, validation_fraction, block, seed=seed + si, guard=guard)
        n_train += int(split.train.sum())
        n_val += int(split.val.sum())
        scenes.append(PreparedScene(d.name, arrays, target, split.train, split.val, [int(r) for r in ratios]))
    if unknown:
        progress.warn(f"label values {sorted(unknown)} are not in the class table: treated as unlabelled")
    if n_train == 0:
        raise InputError("no labelled pixel left for training: check the labels overlap the inputs, "
                         "the class field/table, or lower VALIDATION_FRACTION")
    fps = [fp for d in datas for fp in d.fingerprints]
    return PreparedData(scenes, cards, list(classes), band_counts, fps, n_train, n_val)


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------

def _default_predict(net: Any, inputs: list[Any]) -> Any:
    return net(*inputs)


class PatchValidation:
    """Validation on the validation-block pixels of patch models (capped, deterministic subset)."""

    def __init__(self, scenes: Sequence[PreparedScene], sizes: Sequence[int], anchors: Sequence[int],
                 seed: int, max_items: int = 20000) -> None:
        self.sampler = PatchSampler(scenes, sizes, anchors, seed, which="val", augment=False, max_items=max_items)

    def __len__(self) -> int:
        return len(self.sampler)

    def confusion(self, net: Any, predict: Callable, k: int, batch: int, device: Any, ctx: DistContext,
                  to_device: Callable) -> np.ndarray:
        import torch

        cm = np.zeros((k, k), np.int64)
        idx = np.arange(len(self.sampler))[ctx.rank::ctx.world_size]
        with torch.no_grad():
            for b in range(0, len(idx), batch):
                inputs, target = collate([self.sampler.item(0, int(i)) for i in idx[b:b + batch]])
                pred = predict(net, to_device(inputs)).argmax(1).cpu().numpy()
                np.add.at(cm, (target.numpy(), pred), 1)
        return cm


class DenseValidation:
    """Validation of dense models: tiles over the validation blocks, scored on their pixels only."""

    def __init__(self, scenes: Sequence[PreparedScene], tile: int) -> None:
        self.scenes = list(scenes)
        self.tile = tile
        self.windows: list[tuple[int, int, int, int, int]] = []  # scene, r0, c0, own rows, own cols
        for si, s in enumerate(self.scenes):
            h, w = s.target.shape
            for r in range(0, h, tile):
                for c in range(0, w, tile):
                    if s.val[r:r + tile, c:c + tile].any():
                        self.windows.append((si, r, c, min(tile, h - r), min(tile, w - c)))

    def __len__(self) -> int:
        return len(self.windows)

    def confusion(self, net: Any, predict: Callable, k: int, batch: int, device: Any, ctx: DistContext,
                  to_device: Callable) -> np.ndarray:
        import torch

        cm = np.zeros((k, k), np.int64)
        mine = self.windows[ctx.rank::ctx.world_size]
        with torch.no_grad():
            for b in range(0, len(mine), batch):
                items, owns = [], []
                for si, r, c, rows, cols in mine[b:b + batch]:
                    s = self.scenes[si]
                    h, w = s.target.shape
                    t = min(self.tile, h, w)
                    r0, c0 = min(r, h - t), min(c, w - t)
                    arrays = [a[:, q * r0:q * (r0 + t), q * c0:q * (c0 + t)] for a, q in zip(s.arrays, s.ratios)]
                    items.append((arrays, s.target[r0:r0 + t, c0:c0 + t]))
                    owns.append((s, r, c, rows, cols, r - r0, c - c0))
                inputs, _ = collate(items)
                pred = predict(net, to_device(inputs)).argmax(1).cpu().numpy()
                for p, (s, r, c, rows, cols, dr, dc) in zip(pred, owns):
                    ref = s.target[r:r + rows, c:c + cols]
                    sel = s.val[r:r + rows, c:c + cols]
                    np.add.at(cm, (ref[sel], p[dr:dr + rows, dc:dc + cols][sel]), 1)
        return cm


# ---------------------------------------------------------------------------------------------
# The generic loop
# ---------------------------------------------------------------------------------------------

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
    metric: str = "miou"  # "miou" (dense) or "overall_accuracy" (patch)
    precision: str = "auto"
    val_batch_size: int | None = None


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


def resume_path_for(output_model: str | os.PathLike) -> Path:
    """The resume checkpoint beside an output model file."""
    p = Path(output_model)
    return p.with_name(p.name + RESUME_SUFFIX)


def _build_optimizer(net: Any, cfg: LoopConfig) -> Any:
    import torch

    if hasattr(net, "param_groups") and callable(net.param_groups):
        groups = [dict(g) for g in net.param_groups(cfg.lr, cfg.weight_decay)]
    else:
        groups = [{"params": [p for p in net.parameters() if p.requires_grad]}]
    for g in groups:
        g["params"] = list(g["params"])
        g.setdefault("lr", cfg.lr)
        g.setdefault("weight_decay", cfg.weight_decay)
        g["base_lr"] = g["lr"]
    groups = [g for g in groups if g["params"]]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    import torch

    tmp = temp_path(path, new_run_id())
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise os_error(e, path) from e
    finally:
        remove_temp(tmp)


def _cpu_state(sd: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in sd.items()}


def _metric_of(cm: np.ndarray, classes: Sequence[ClassInfo], name: str) -> tuple[float, Any]:
    from ..assessment.metrics import Metrics

    if cm.sum() == 0:
        return float("nan"), None
    m = Metrics.from_confusion(cm, list(classes))
    return float(getattr(m, name)), m


def run_loop(
    net: Any,
    train_sampler: Any,
    validation: Any,
    cfg: LoopConfig,
    classes: Sequence[ClassInfo],
    device: Any,
    *,
    predict: Callable[[Any, list[Any]], Any] = _default_predict,
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
    import torch

    from ..device import autocast_dtype

    progress = progress or NullProgress()
    ctx = ctx or DistContext()
    export_state = export_state or (lambda m: m.state_dict())
    k = len(classes)
    net.to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        net.to(memory_format=torch.channels_last)
    step_fn = wrap_for_training(net, ctx, device)
    opt = _build_optimizer(net, cfg)
    amp_dtype = autocast_dtype(device, cfg.precision)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    n_items = len(train_sampler)
    if n_items == 0:
        raise InputError("no training sample: the labels leave no labelled pixel for training")
    per_rank = -(-n_items // ctx.world_size)
    n_batches = max(1, -(-per_rank // cfg.batch_size))
    if cfg.max_steps_per_epoch:
        n_batches = min(n_batches, cfg.max_steps_per_epoch * cfg.accumulate)
    steps_per_epoch = -(-n_batches // cfg.accumulate)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = min(cfg.warmup_iters, total_steps // 10)

    def to_device(xs: list[Any]) -> list[Any]:
        out = []
        for x in xs:
            x = x.to(device, non_blocking=True)
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            out.append(x)
        return out

    start_epoch, global_step, best_metric, best_epoch, bad_epochs = 0, 0, -math.inf, 0, 0
    history: list[dict[str, float]] = []
    best_state: dict | None = None
    best_cm: np.ndarray | None = None
    if resume_path is not None and resume_path.is_file():
        try:
            ck = torch.load(resume_path, map_location="cpu", weights_only=True)
        except Exception as e:  # a damaged checkpoint must not block a fresh run
            progress.warn(f"ignoring the unreadable resume checkpoint {resume_path}: {e}")
            ck = None
        if ck is not None and ck.get("fingerprint") != run_fingerprint:
            progress.warn(f"the resume checkpoint {resume_path} belongs to a run with other parameters or "
                          "inputs; starting afresh (it will be overwritten)")
            ck = None
        if ck is not None:
            net.load_state_dict(ck["net"])
            opt.load_state_dict(ck["opt"])
            if scaler is not None and ck.get("scaler"):
                scaler.load_state_dict(ck["scaler"])
            start_epoch, global_step = int(ck["epoch"]), int(ck["global_step"])
            best_metric, best_epoch, bad_epochs = float(ck["best_metric"]), int(ck["best_epoch"]), int(ck["bad_epochs"])
            history = [dict(h) for h in ck["history"]]
            best_state = ck["best_state"]
            best_cm = ck["best_cm"].numpy() if ck.get("best_cm") is not None else None
            torch.set_rng_state(ck["torch_rng"])
            if torch.cuda.is_available() and ck.get("cuda_rng"):
                torch.cuda.set_rng_state_all(ck["cuda_rng"])
            progress.info(f"resuming from {resume_path} after epoch {start_epoch}")
    resumed_from = start_epoch
    stop = bool(history and history[-1].get("stopped_early"))
    val_batch = cfg.val_batch_size or max(1, cfg.batch_size)

    epoch = start_epoch
    for epoch in range(start_epoch, cfg.epochs):
        if stop:
            break
        t0 = time.perf_counter()
        net.train()
        order = epoch_order(n_items, cfg.seed, epoch, ctx.rank, ctx.world_size)
        sums: dict[str, float] = {}
        count = 0
        opt.zero_grad(set_to_none=True)
        for b in range(n_batches):
            check_cancel(progress)
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            if len(idx) == 0:
                idx = order[:cfg.batch_size]
            inputs, target = collate([train_sampler.item(epoch, int(i)) for i in idx])
            inputs, target = to_device(inputs), target.to(device, non_blocking=True)
            boundary = (b + 1) % cfg.accumulate == 0 or b == n_batches - 1
            # DDP: no gradient all-reduce on accumulation micro-steps, only at the optimiser step
            sync = step_fn.no_sync() if not boundary and hasattr(step_fn, "no_sync") else contextlib.nullcontext()
            with sync:
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    loss, logs = step_fn(inputs, target)
                if not torch.isfinite(loss.detach()).all() and scaler is None:
                    raise MmlcError(f"the loss became {float(loss)} at epoch {epoch + 1}; lower LEARNING_RATE "
                                    "or check the inputs for extreme values")
                scaled = loss / cfg.accumulate
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            if boundary:
                f = lr_factor(global_step, total_steps, warmup, cfg.schedule, cfg.poly_power)
                for g in opt.param_groups:
                    g["lr"] = g["base_lr"] * f
                if scaler is not None:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                opt.zero_grad(set_to_none=True)
                global_step += 1
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            for key, v in (logs or {}).items():
                if key != "loss":  # the loop's own loss is authoritative
                    sums[key] = sums.get(key, 0.0) + float(v)
            count += 1
            progress.set_fraction((epoch + (b + 1) / n_batches) / cfg.epochs)
        keys = sorted(sums)
        reduced = all_reduce_sum(ctx, np.array([sums[kk] for kk in keys] + [count], np.float64), device)
        row: dict[str, float] = {"epoch": float(epoch + 1)}
        row.update({kk: float(v / max(1.0, reduced[-1])) for kk, v in zip(keys, reduced[:-1])})
        row["lr"] = float(opt.param_groups[-1]["lr"])
        if hasattr(net, "epoch_end") and callable(net.epoch_end):
            row.update({f"{kk}": float(v) for kk, v in (net.epoch_end() or {}).items()})
        net.eval()
        cm = validation.confusion(net, predict, k, val_batch, device, ctx, to_device) if len(validation) else \
            np.zeros((k, k), np.int64)
        cm = all_reduce_sum(ctx, cm, device).astype(np.int64)
        value, metrics = _metric_of(cm, classes, cfg.metric)
        if metrics is not None:
            row["val_overall_accuracy"] = float(metrics.overall_accuracy)
            row["val_miou"] = float(metrics.miou)
            row["val_kappa"] = float(metrics.kappa)
            score = value
        else:  # no validation blocks: select on the training loss (reported as such)
            score = -row["loss"]
        row["time_s"] = time.perf_counter() - t0
        if score > best_metric or best_state is None:
            best_metric, best_epoch, bad_epochs = score, epoch + 1, 0
            best_state = _cpu_state(net.state_dict())
            best_cm = cm if metrics is not None else None
        else:
            bad_epochs += 1
        if cfg.patience is not None and bad_epochs >= cfg.patience:
            row["stopped_early"] = 1.0
            stop = True
        stop = broadcast_flag(ctx, stop, device)
        history.append(row)
        progress.info(" ".join(f"{kk}={v:.4g}" for kk, v in row.items()))
        if resume_path is not None and ctx.is_main:
            _atomic_torch_save({
                "version": _RESUME_VERSION, "fingerprint": run_fingerprint, "epoch": epoch + 1,
                "global_step": global_step, "net": _cpu_state(net.state_dict()), "opt": opt.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else {},
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "best_state": best_state, "best_metric": best_metric, "best_epoch": best_epoch,
                "bad_epochs": bad_epochs, "history": history,
                "best_cm": torch.from_numpy(best_cm) if best_cm is not None else None,
            }, resume_path)
        barrier(ctx)
    if best_state is None:  # the loop ran no epoch: EPOCHS < 1 reached the loop
        raise InputError(f"training ran no epoch (EPOCHS={cfg.epochs}, starting at epoch {resumed_from}); "
                         "ask for at least one epoch")
    net.load_state_dict(best_state)
    if best_cm is None:
        best_metric = float("nan")
    return LoopOutcome(_cpu_state(export_state(net)), best_epoch, best_metric, best_cm, history,
                       len(history), resumed_from)


# ---------------------------------------------------------------------------------------------
# train()
# ---------------------------------------------------------------------------------------------

def variant_kwarg(spec: Any) -> str | None:
    """The builder keyword that takes the variant: ``variant`` if the builder has it, else the
    parameter whose default is one of the spec's variants (HFD-Net: ``encoder``)."""
    try:
        params = inspect.signature(spec.builder).parameters
    except (TypeError, ValueError):
        return None
    if "variant" in params:
        return "variant"
    for name, p in params.items():
        if isinstance(p.default, str) and p.default in spec.variants:
            return name
    return None


def check_tile_option(tile_size: int | None) -> None:
    """Refuse a TILE_SIZE a model card could not hold, before any data is read."""
    from ..modelfiles.card_schema import MAX_TILE

    if tile_size and not 8 <= int(tile_size) <= MAX_TILE:
        raise InputError(f"TILE_SIZE {tile_size} must be between 8 and {MAX_TILE} (0 = the network's default)")


def training_tile(tile_size: int, datas: Sequence[SceneData]) -> int:
    """The asked training tile cut to the largest scene (a larger one only pads it)."""
    from ..engine.sizes import clamp_tile

    side = max(max(d.shape) for d in datas)
    return clamp_tile(int(tile_size), side, side, 32)


def record_profile(card: ModalityCard, path: str, arrays: Sequence[np.ndarray]) -> None:
    """Store the input's data type and value range in its card (classify warns on a mismatch)."""
    from ..engine.value_checks import input_profile, raster_dtype

    card.data_type, card.value_range = input_profile(raster_dtype(path), (_subsample(a) for a in arrays))


def _fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _default_tile(recipe_tile: int, datas: Sequence[SceneData]) -> int:
    """The Recipe's tile, shrunk to the largest multiple of 32 inside the biggest scene (small data)."""
    side = max(min(d.shape) for d in datas)
    return int(max(32, min(recipe_tile, (side // 32) * 32)))


def _init_weights(net: Any, init_model: str, architecture: str, progress: Progress) -> dict:
    """Fine-tune from a model file (same architecture) or load a pretrained backbone file.

    Tensors whose shape differs (e.g. the classifier for another number of classes) are skipped
    and reported. A non-model file goes to the network's loader (``load_pretrained``,
    ``load_encoder_weights`` or ``load_backbone_weights``) when it has one.
    """
    path = Path(init_model)
    if not path.is_file():
        raise InputError(f"INIT_MODEL {path} does not exist")
    try:
        card, tensors = load_model_file(path)
    except ModelFileError as e:
        if path.suffix.lower() == ".mmlc":
            raise
        for name in ("load_pretrained", "load_encoder_weights", "load_backbone_weights"):
            loader = getattr(net, name, None)
            if callable(loader):
                report = loader(str(path))
                progress.info(f"loaded pretrained weights from {path} with {name}: {report}")
                return {"init_model": str(path), "init_kind": "pretrained_backbone"}
        raise InputError(f"INIT_MODEL {path} is not an mmlc model file and {architecture} offers no "
                         f"pretrained-weights loader ({e})") from e
    if card.architecture != architecture:
        raise InputError(f"INIT_MODEL {path} is a {card.architecture} model; fine-tuning needs a {architecture} model")
    own = net.state_dict()
    usable = {k: v for k, v in tensors.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    skipped = sorted(set(tensors) - set(usable))
    net.load_state_dict(usable, strict=False)
    if skipped:
        progress.warn(f"INIT_MODEL: {len(skipped)} tensor(s) did not fit and start fresh: {', '.join(skipped[:6])}")
    return {"init_model": str(path), "init_kind": "model_file", "init_skipped": len(skipped)}


def _write_report(path: str | None, card: ModelCard, history: list[dict[str, float]], metrics: Any,
                  extra: dict, progress: Progress, baseline: Any = None) -> str | None:
    if path is None:
        return None
    try:
        from ..assessment.reports import write_training_report
    except ImportError as e:
        progress.warn(f"the training report was not written (core.assessment.reports unavailable: {e})")
        return None
    write_training_report(path, card, history, metrics, extra, baseline=baseline)
    return str(path)


def resolve_variant(spec: Any, variant: str | None) -> str | None:
    """The spec's full variant name for ``variant``, which may be the full name or its short form
    (the part after the last ``_``: ``atto`` for ``convnextv2_atto``), any case; InputError listing
    both forms otherwise. Called before any data is read."""
    if not variant:
        return None
    if not spec.variants:
        raise InputError(f"{spec.name} has no variants; leave VARIANT empty")
    want = variant.strip().lower()
    for v in spec.variants:
        if v.lower() == want:
            return v
    short = [v for v in spec.variants if v.lower().rsplit("_", 1)[-1] == want]
    if len(short) == 1:
        return short[0]
    names = ", ".join(v if "_" not in v else f"{v.rsplit('_', 1)[-1]} ({v})" for v in spec.variants)
    raise InputError(f"unknown {spec.name} variant {variant!r}; choose one of {names}")


def _forest_baseline(data: PreparedData, classes: Sequence[ClassInfo], seed: int, metrics: Any,
                     progress: Progress) -> Any:
    """The random-forest baseline on the same training / validation pixels (core.assessment.baseline),
    logged beside the network's figures; None if it failed (reported, never fatal)."""
    from ..assessment.baseline import forest_baseline

    try:
        progress.info("training the random-forest baseline on the same pixels...")
        result = forest_baseline(data.scenes, classes, seed=seed)
    except (MemoryError, ValueError) as e:
        progress.warn(f"random-forest baseline skipped: {e}")
        return None
    if metrics is not None:
        s = metrics.summary()
        progress.info(f"network: OA {s['overall_accuracy']:.4f} AA {s['average_accuracy']:.4f} "
                      f"kappa {s['kappa']:.4f} mIoU {s['miou']:.4f} (best epoch, validation blocks)")
    progress.info(result.summary_line())
    return result


def report_path_for(out: Path, output_report: str | None) -> str | None:
    """OUTPUT_REPORT of train and distill: "" = no report, None = beside the model file."""
    if output_report == "":
        return None
    return output_report if output_report is not None else str(out.with_name(out.name + ".report.html"))


def claim_run(out: Path, report_path: str | None, device: str) -> tuple[RunFiles, Any, Any]:
    """Start a training run (train and distill): claim its outputs (model, resume file, report;
    core.engine.atomic) and set up the device and process group; the claim is released if that fails.
    Returns (run files, device, DDP context)."""
    from ..device import resolve_device

    run = RunFiles([out, resume_path_for(out)] + ([Path(report_path)] if report_path else []))
    try:
        dev = resolve_device(device)
        ctx = setup(dev.type)
    except BaseException:
        run.release()
        raise
    return run, dev, ctx


def build_network(spec: Any, variant: str | None, band_counts: Sequence[int], num_classes: int,
                  extra_kwargs: dict | None) -> tuple[Any, dict]:
    """Build a network from its spec and band counts; returns (net, build_kwargs for the card)."""
    for m, n in zip(spec.modalities, band_counts):
        if m.fixed_bands and n != m.default_bands:
            raise InputError(f"{spec.name} takes exactly {m.default_bands} {m.name} band(s); the input has {n}")
    kwargs: dict[str, Any] = dict(spec.channel_kwargs(list(band_counts)))
    kwargs["num_classes"] = int(num_classes)
    variant = resolve_variant(spec, variant)
    if variant:
        key = variant_kwarg(spec)
        if key is None:
            raise InputError(f"{spec.name} has no variants")
        kwargs[key] = variant
    kwargs.update(extra_kwargs or {})
    try:
        net = spec.builder(**kwargs)
    except (TypeError, ValueError) as e:
        raise InputError(f"cannot build {spec.name} with {kwargs}: {e}") from e
    return net, kwargs


def train(
    architecture: str,
    inputs: Sequence[str] | None,
    labels: str | None,
    output_model: str,
    *,
    scenes: Sequence[Scene] | None = None,
    variant: str | None = None,
    label_field: str | None = None,
    classes: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    tile_size: int | None = None,
    validation_fraction: float = 0.2,
    init_model: str | None = None,
    device: str = "auto",
    output_report: str | None = None,
    seed: int = 0,
    accumulate: int = 1,
    patience: int | None = None,
    max_steps_per_epoch: int | None = None,
    build_kwargs: dict | None = None,
    labels_note: str = "",
    progress: Progress | None = None,
    to_db: Sequence[bool] | None = None,
    scale_range: tuple[float, float] | None = None,
    precision: str = "auto",
    resume: bool = True,
    baseline: bool = True,
    stream: bool | None = None,
) -> TrainResult:
    """Train ``architecture`` on one scene (``inputs`` + ``labels``) or several (``scenes``).

    Writes ``output_model`` (a ``.mmlc`` model file) and the HTML report (``output_report``, by
    default ``<output_model>.report.html``). Extra keywords beyond the Processing parameters:
    ``to_db`` per input (None = detect linear SAR, a design choice), ``scale_range`` (joint random
    rescale of dense tiles, ASANet uses (0.5, 2.0); off by default for small data), ``precision``
    (``auto``/``fp32``/``bf16``/``fp16``), ``resume`` (continue from ``<output>.resume.pt``),
    ``baseline`` (a random forest on the same pixels, in the log and the report; core.assessment.baseline),
    ``stream`` (read training windows from disk instead of whole scenes, core.data.windows; None =
    when a scene is larger than ``windows.STREAM_PIXELS``; the forest baseline is skipped then).
    Raises InputError/GridError/ModelFileError/OutputError/Cancelled; nothing is written at the
    output paths on error.
    """
    import torch

    from ...models.registry import get_spec

    progress = progress or NullProgress()
    try:
        spec = get_spec(architecture)
    except KeyError as e:
        raise InputError(str(e.args[0]) if e.args else f"unknown architecture {architecture!r}") from e
    arch = spec.name
    rec = spec.recipe
    if scenes is None:
        if not inputs or not labels:
            raise InputError("give INPUT_1 (and INPUT_2 for two-modality networks) and LABELS, or a list of scenes")
        scenes = [Scene(list(inputs), labels, label_field)]
    scenes = list(scenes)
    if not scenes:
        raise InputError("no training scene given")
    n_mod = len(spec.modalities)
    for s in scenes:
        if len(s.inputs) != n_mod:
            raise InputError(f"{arch} takes {n_mod} input(s) ({', '.join(m.name for m in spec.modalities)}); "
                             f"scene {s.name} gives {len(s.inputs)}")
    variant = resolve_variant(spec, variant)  # options are checked before any data is read
    check_tile_option(tile_size)
    if not 0.0 <= validation_fraction < 0.95:
        raise InputError(f"VALIDATION_FRACTION must be in [0, 0.95), got {validation_fraction}")
    # 0 (or None) means the network's default, in the CLI, Processing and the docs alike
    epochs = int(epochs) if epochs else rec.epochs
    batch_size = int(batch_size) if batch_size else rec.batch_size
    lr = float(learning_rate if learning_rate is not None else rec.lr)
    if epochs < 1 or batch_size < 1 or lr <= 0 or accumulate < 1:
        raise InputError("EPOCHS, BATCH_SIZE and accumulate must be >= 1 (0 = the network's default) and "
                         "LEARNING_RATE > 0")
    out = Path(output_model)
    report_path = report_path_for(out, output_report)
    check_outputs("train", {"OUTPUT_MODEL": output_model, "OUTPUT_REPORT": report_path},
                  {**{f"INPUT_{i + 1}": [s.inputs[i] for s in scenes] for i in range(n_mod)},
                   "LABELS": [s.labels for s in scenes], "CLASSES": classes, "INIT_MODEL": init_model})
    run, dev, ctx = claim_run(out, report_path, device)
    try:
        if ctx.distributed and dev.type == "cuda":
            dev = torch.device("cuda", ctx.local_rank)
        table = read_class_table(classes) if classes else None
        ratios = [m.grid_ratio for m in spec.modalities]
        dense = spec.head_kind == "dense"
        guard = 0 if dense else max([m.patch_size // max(1, m.grid_ratio) for m in spec.modalities] + [0]) // 2 + 1
        init_card = None
        if init_model and Path(init_model).is_file():
            try:
                init_card = load_model_file(init_model, weights=False)[0]
            except ModelFileError:
                init_card = None
        given = None
        if init_card is not None and init_card.architecture == arch and len(init_card.modalities) == n_mod:
            given = init_card.modalities  # fine-tuning keeps the original normalisation
        from ..data import windows

        streamed = windows.should_stream(scenes, stream)
        if streamed:  # windows read on demand (core.data.windows)
            datas = windows.open_scenes(scenes, ratios)
            tile = training_tile(tile_size, datas) if tile_size else _default_tile(rec.tile_size, datas)
            data = windows.prepare_streamed(datas, [m.name for m in spec.modalities], ratios, table=table,
                                            validation_fraction=validation_fraction, seed=seed, tile=tile,
                                            guard=guard, to_db=to_db, given_cards=given, progress=progress)
            run_classes = data.classes
        else:
            datas = []
            for i, s in enumerate(scenes):
                progress.info(f"reading scene {i + 1}/{len(scenes)}: {s.name}")
                datas.append(load_scene(s, ratios))
            run_classes = resolve_classes(datas, table)
            if len(run_classes) < 2:
                raise InputError(f"the labels hold {len(run_classes)} class(es); training needs at least 2")
            tile = training_tile(tile_size, datas) if tile_size else _default_tile(rec.tile_size, datas)
            data = prepare_data(datas, [m.name for m in spec.modalities], ratios, classes=run_classes,
                                validation_fraction=validation_fraction, seed=seed, tile=tile, guard=guard,
                                to_db=to_db, given_cards=given, progress=progress)
        progress.info(f"{data.n_train} training and {data.n_val} validation pixels labelled, "
                      f"{len(run_classes)} classes")
        for i, (mc, m) in enumerate(zip(data.modality_cards, spec.modalities)):
            mc.patch_size, mc.patch_anchor, mc.grid_ratio = m.patch_size, m.patch_anchor, m.grid_ratio
            if given is None and not streamed:  # fine-tuning keeps the original card, data type and range included
                record_profile(mc, scenes[0].inputs[i], [d.arrays[i] for d in datas])
        if streamed:
            sampler, validation = windows.streamed_samplers(data, spec, tile, batch_size, seed, scale_range,
                                                            ctx.world_size)
        elif dense:
            length = max(batch_size, 4 * int(math.ceil(data.n_train / float(tile * tile))))
            sampler: Any = DenseTileSampler(data.scenes, tile, length, seed, scale_range=scale_range)
            validation: Any = DenseValidation(data.scenes, tile)
        else:
            sizes = [m.patch_size for m in spec.modalities]
            anchors = [m.patch_anchor for m in spec.modalities]
            sampler = PatchSampler(data.scenes, sizes, anchors, seed, which="train")
            validation = PatchValidation(data.scenes, sizes, anchors, seed)
        torch.manual_seed(seed)
        net, kwargs = build_network(spec, variant, data.band_counts, len(run_classes), build_kwargs)
        init_info = _init_weights(net, init_model, arch, progress) if init_model else {}
        cfg = LoopConfig(
            epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=rec.weight_decay, optimizer=rec.optimizer,
            momentum=rec.momentum, schedule=rec.schedule, poly_power=rec.poly_power, warmup_iters=rec.warmup_iters,
            accumulate=accumulate, patience=patience, max_steps_per_epoch=max_steps_per_epoch, seed=seed,
            metric="miou" if dense else "overall_accuracy", precision=precision,
        )
        run_fp = _fingerprint({
            "arch": arch, "kwargs": kwargs, "cfg": cfg.__dict__, "tile": tile, "fraction": validation_fraction,
            "inputs": data.fingerprints, "classes": [c.to_dict() for c in run_classes], "world": ctx.world_size,
            "init": init_model, "scale_range": scale_range, **({"streamed": True} if streamed else {}),
        })
        resume_file = resume_path_for(out) if resume else None
        outcome = run_loop(net, sampler, validation, cfg, run_classes, dev, resume_path=resume_file,
                           run_fingerprint=run_fp, progress=progress, ctx=ctx)
        metric_value, metrics = (_metric_of(outcome.best_confusion, run_classes, cfg.metric)
                                 if outcome.best_confusion is not None else (float("nan"), None))
        provenance = {
            "inputs": data.fingerprints,
            "epochs": outcome.epochs_run,
            "epochs_requested": epochs,
            "best_epoch": outcome.best_epoch,
            "best_metrics": metrics.summary() if metrics is not None else {},
            "selection_metric": cfg.metric,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "mmlc_version": _version(),
            "labels_note": labels_note,
            "seed": seed,
            "batch_size": batch_size,
            "learning_rate": lr,
            "validation_fraction": validation_fraction,
            "train_pixels": data.n_train,
            "validation_pixels": data.n_val,
            "device": str(dev),
            "world_size": ctx.world_size,
            **init_info,
        }
        card = ModelCard(
            architecture=arch, build_kwargs=strip_path_kwargs(kwargs), head_kind=spec.head_kind, modalities=data.modality_cards,
            classes=run_classes, variant=variant or "", tile_size=tile if dense else rec.tile_size,
            overlap=min(32, (tile if dense else rec.tile_size) // 4), provenance=provenance,
        )
        written_report = None
        if ctx.is_main:  # the model and its report are placed together (core.engine.atomic)
            save_model_file(run.temp(out), card, outcome.state)
            forest = _forest_baseline(data, run_classes, seed, metrics, progress) if baseline and not streamed \
                else None
            written_report = _write_report(str(run.temp(report_path)) if report_path else None, card,
                                           outcome.history, metrics,
                                           {"architecture": arch, "scenes": [s.name for s in scenes],
                                            "resumed_from_epoch": outcome.start_epoch}, progress, forest)
            if written_report is None and report_path:
                run.discard(report_path)
            run.commit()
            written_report = report_path if written_report is not None else None
            if resume_file is not None and resume_file.exists():
                resume_file.unlink()
        barrier(ctx)
        progress.set_fraction(1.0)
        return TrainResult(str(out), written_report, card, outcome.history, outcome.best_epoch, metric_value,
                           cfg.metric, metrics, outcome.epochs_run, outcome.start_epoch)
    finally:
        run.abort()
        run.release()
        teardown(ctx)
