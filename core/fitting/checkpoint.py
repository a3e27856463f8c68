"""The resume checkpoint of a training run, ``<output>.resume.pt`` beside the model file.

Written atomically after every epoch (:func:`write_resume`): network, optimiser and GradScaler
state, the step counters, the history, the best epoch (its own fields, from
``core.fitting.early_stopping``) and the torch RNG states. A run restarted with the same
parameters and inputs (the same ``fingerprint``) continues at the next epoch with the same
schedule and RNG state (:func:`read_resume`, :func:`restore`); a damaged or foreign checkpoint is
ignored with a warning and overwritten.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..engine.atomic import new_run_id, os_error, remove_temp, temp_path
from ..progress import Progress

RESUME_SUFFIX = ".resume.pt"
RESUME_VERSION = 1


def resume_path_for(output_model: str | os.PathLike) -> Path:
    """The resume checkpoint beside an output model file."""
    p = Path(output_model)
    return p.with_name(p.name + RESUME_SUFFIX)


def cpu_state(sd: dict) -> dict:
    """A detached CPU copy of a state dict."""
    return {k: v.detach().to("cpu", copy=True) for k, v in sd.items()}


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file renamed over ``path`` (never a half-written checkpoint)."""
    import torch

    tmp = temp_path(path, new_run_id())
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise os_error(e, path) from e
    finally:
        remove_temp(tmp)


def read_resume(path: Path | None, fingerprint: str, progress: Progress) -> dict | None:
    """The checkpoint at ``path`` if it exists, is readable and belongs to this run; else None."""
    import torch

    if path is None or not path.is_file():
        return None
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged checkpoint must not block a fresh run
        progress.warn(f"ignoring the unreadable resume checkpoint {path}: {e}")
        return None
    if ck.get("fingerprint") != fingerprint:
        progress.warn(f"the resume checkpoint {path} belongs to a run with other parameters or "
                      "inputs; starting afresh (it will be overwritten)")
        return None
    return ck


def restore(ck: dict, net: Any, opt: Any, scaler: Any) -> tuple[int, int, list[dict[str, float]]]:
    """Load network, optimiser, scaler and RNG states; returns (epochs done, optimiser steps, history)."""
    import torch

    net.load_state_dict(ck["net"])
    opt.load_state_dict(ck["opt"])
    if scaler is not None and ck.get("scaler"):
        scaler.load_state_dict(ck["scaler"])
    torch.set_rng_state(ck["torch_rng"])
    if torch.cuda.is_available() and ck.get("cuda_rng"):
        torch.cuda.set_rng_state_all(ck["cuda_rng"])
    return int(ck["epoch"]), int(ck["global_step"]), [dict(h) for h in ck["history"]]


def write_resume(path: Path, fingerprint: str, *, epoch: int, global_step: int, net: Any, opt: Any, scaler: Any,
                 history: list[dict[str, float]], best: dict) -> None:
    """Save the state after epoch ``epoch`` (1-based); ``best``: the best epoch's checkpoint fields."""
    import torch

    atomic_torch_save({
        "version": RESUME_VERSION, "fingerprint": fingerprint, "epoch": epoch,
        "global_step": global_step, "net": cpu_state(net.state_dict()), "opt": opt.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "history": history, **best,
    }, path)
