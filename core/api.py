"""The four operations of mmlc, with plain-value signatures shared by Processing and the CLI.

Each lives in its own module; this module is the single entry point ``ui/`` and ``core/cli.py``
call. Imports are lazy so importing ``mmlc.core.api`` does not import torch (the plugin loads
without it and offers to install it; the CLI's ``install-deps`` runs without it). The signatures
repeat the core functions' keywords, typed; tests/test_operations.py checks that they match the
core functions and that every parameter of the operation specs (core/operations) names one.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

if TYPE_CHECKING:  # types only: the modules below import numpy, GDAL and (training) torch
    from .assessment.evaluate import EvaluationResult
    from .data.datasets import Scene
    from .engine.classify import ClassifyResult
    from .fitting.distill import DistillResult
    from .fitting.training import TrainResult
    from .progress import Progress


def classify(
    model: str | Path,
    inputs: Sequence[str],
    output: str,
    confidence: Optional[str] = None,
    vector: Optional[str] = None,
    extent: Optional[tuple[float, float, float, float]] = None,
    mask: Optional[str] = None,
    tile_size: Optional[int] = None,
    overlap: Optional[int] = None,
    batch_size: Optional[int] = 4,
    device: str = "auto",
    precision: str = "auto",
    progress: Optional[Progress] = None,
    background_writer: bool = True,
    workers: Optional[int] = None,
) -> ClassifyResult:
    """Classify rasters with a model file; see :func:`mmlc.core.engine.classify.classify`."""
    from .engine.classify import classify as _classify

    return _classify(model, inputs, output, confidence=confidence, vector=vector, extent=extent, mask=mask,
                     tile_size=tile_size, overlap=overlap, batch_size=batch_size, device=device,
                     precision=precision, progress=progress, background_writer=background_writer, workers=workers)


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
) -> TrainResult:
    """Train a model file; see :func:`mmlc.core.fitting.training.train`."""
    from .fitting.training import train as _train

    return _train(architecture, inputs, labels, output_model, scenes=scenes, variant=variant,
                  label_field=label_field, classes=classes, epochs=epochs, batch_size=batch_size,
                  learning_rate=learning_rate, tile_size=tile_size, validation_fraction=validation_fraction,
                  init_model=init_model, device=device, output_report=output_report, seed=seed,
                  accumulate=accumulate, patience=patience, max_steps_per_epoch=max_steps_per_epoch,
                  build_kwargs=build_kwargs, labels_note=labels_note, progress=progress, to_db=to_db,
                  scale_range=scale_range, precision=precision, resume=resume, baseline=baseline)


def distill(
    teacher: str,
    input_optical: str,
    input_sar: str,
    labels: str,
    output_model: str,
    *,
    scenes: Sequence[Scene] | None = None,
    label_field: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    temperature: float | None = None,
    feature_weight: float | None = None,
    kd_weight: float | None = None,
    device: str = "auto",
    output_report: str | None = None,
    compare_sar_only: bool = True,
    seed: int = 0,
    progress: Progress | None = None,
    tile_size: int | None = None,
    validation_fraction: float = 0.2,
    max_steps_per_epoch: int | None = None,
) -> DistillResult:
    """Distil a SAR student from an optical teacher; see :func:`mmlc.core.fitting.distill.distill`."""
    from .fitting.distill import distill as _distill

    return _distill(teacher, input_optical, input_sar, labels, output_model, scenes=scenes, label_field=label_field,
                    epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, temperature=temperature,
                    feature_weight=feature_weight, kd_weight=kd_weight, device=device, output_report=output_report,
                    compare_sar_only=compare_sar_only, seed=seed, progress=progress, tile_size=tile_size,
                    validation_fraction=validation_fraction, max_steps_per_epoch=max_steps_per_epoch)


def evaluate(
    prediction: str,
    reference: str,
    label_field: Optional[str] = None,
    output_report: Optional[str] = None,
    output_table: Optional[str] = None,
    progress: Optional[Progress] = None,
    match_names: bool = True,
    block_pixels: int = 1 << 20,
) -> EvaluationResult:
    """Compare a class raster with reference labels; see :func:`mmlc.core.assessment.evaluate.evaluate`."""
    from .assessment.evaluate import evaluate as _evaluate

    return _evaluate(prediction, reference, label_field=label_field, output_report=output_report,
                     output_table=output_table, progress=progress, match_names=match_names,
                     block_pixels=block_pixels)
