"""classify(): a model file + aligned input rasters -> a styled class raster (and extras).

The steps, each in its own module: resolve the model (:mod:`.builtin`), read its card
(:mod:`.modelfile`), open the inputs once, aligned on input 1's grid cut to the extent and mask
(:mod:`.aligned_inputs`), check everything that can be checked before any pixel is computed
(inputs vs modalities, band counts, classes, outputs, tile and batch: :mod:`.head_paths`), then
run the card's head kind's path (:mod:`.paths`) on those inputs and stream the rows into the
outputs (:mod:`.outputs`), which are renamed into place only when everything succeeded.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from ..classes import ClassInfo
from ..data.labels import split_layer_uri
from ..device import autocast_dtype, resolve_device
from ..errors import GridError, InputError, ModelFileError
from ..modelfiles.builtin import resolve_model
from ..modelfiles.modelfile import ModelCard, read_card
from ..progress import NullProgress, Progress, check_cancel
from .aligned_inputs import AlignedInputs
from .output_paths import check_outputs
from .outputs import OutputSet
from .value_checks import type_mismatch

_PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class ClassifyResult:
    """What a classification produced (paths are None for outputs not asked for)."""

    output: str
    confidence: Optional[str]
    vector: Optional[str]
    style: str
    classes: list[ClassInfo]
    class_pixels: dict[int, int] = field(default_factory=dict)
    device: str = "cpu"
    pixels: int = 0
    valid_pixels: int = 0
    tiles: int = 0
    seconds: float = 0.0
    pixels_per_s: float = 0.0
    forward_seconds: float = 0.0
    read_cpu_seconds: float = 0.0
    write_cpu_seconds: float = 0.0
    batch_size: int = 0
    model_workers: int = 1  # forward_seconds is the model's busy time per worker
    nonfinite_pixels: int = 0  # valid input pixels left nodata: the network's output was NaN/Inf there


def check_inputs(card: ModelCard, inputs: Sequence[str]) -> None:
    """Inputs vs the card's modalities: the count, naming a missing modality."""
    names = [m.name for m in card.modalities]
    if len(inputs) < len(names):
        missing = names[len(inputs):]
        raise InputError(
            f"the model expects {len(names)} inputs ({', '.join(names)}) but got {len(inputs)}; "
            f"missing: {', '.join(missing)}"
        )
    if len(inputs) > len(names):
        raise InputError(f"the model expects {len(names)} input(s) ({', '.join(names)}) but got {len(inputs)}")


def check_bands(card: ModelCard, inputs: Sequence[str], band_counts: Sequence[int]) -> None:
    for i, (m, n, path) in enumerate(zip(card.modalities, band_counts, inputs)):
        if n != m.bands:
            raise InputError(
                f"input {i + 1} ({m.name}, {path}) has {n} band(s) but the model expects {m.bands}; "
                f"give a {m.bands}-band raster in the band order the model was trained with"
            )


def warn_types(card: ModelCard, inputs: Sequence[str], dtypes: Sequence[str], progress: Progress) -> None:
    """Warn when an input's data type clearly differs from the one the model was trained on
    (cards written before data types were recorded are not checked)."""
    for i, (m, path, dt) in enumerate(zip(card.modalities, inputs, dtypes)):
        why = type_mismatch(m.data_type, m.value_range, dt)
        if why:
            progress.warn(f"input {i + 1} ({m.name}, {path}): {why}; the classes will likely be wrong: give the "
                          "data in the type and scaling the model was trained on")


def check_classes(classes: Sequence[ClassInfo]) -> None:
    values = [c.value for c in classes]
    if not values or min(values) < 1 or max(values) > 65535 or len(set(values)) != len(values):
        raise ModelFileError(f"the model card's class values {values} must be distinct and between 1 and 65535")


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
    """Classify ``inputs`` (one raster per modality, in the model's order) into ``output``.

    model: a model file path or a built-in name. extent: (xmin, ymin, xmax, ymax) in input 1's
    CRS, snapped outward to its pixels. mask: a polygon layer (any OGR format and CRS;
    ``file.gpkg|layername=NAME`` picks a layer) or a raster (non-zero = inside): only pixels inside
    are classified (whose centre a polygon covers), the others are nodata, and the output grid is
    cut to the mask's extent (polygons: their bounding box, like GDAL's crop-to-cutline; a raster:
    its footprint), after ``extent``. tile_size/overlap: dense tile side and shared border
    (default: the card's); for patch models tile_size is the window side (overlap unused).
    batch_size: tiles per forward (dense) or units of ``head_paths.PATCHES_PER_BATCH_UNIT`` patches (patch);
    halved automatically on CUDA out-of-memory. precision: ``auto`` (bf16/fp16 autocast on CUDA),
    ``fp32``, ``bf16``, ``fp16``. background_writer: read, and blend + write, on two threads of
    their own while the model runs (default); False does everything on the calling thread,
    between forward passes (no competition for the cores; see docs/benchmarks.md). workers: model
    threads running consecutive batches at once (default: for dense models on a CPU one per
    intra-op thread, up to 4, see ``pipeline.cpu_workers``; 1 on a GPU and for patch models). Raises InputError/GridError/ModelFileError/OutputError/Cancelled;
    on any error nothing is left at the output paths.
    """
    from .forward import NetworkFile, Runner
    from .head_paths import batch_size_or_default, check_head_kind, plan_path
    from .heap import pin_mmap_threshold

    t0 = time.perf_counter()
    pin_mmap_threshold()
    progress = progress or NullProgress()
    inputs = [str(p) for p in inputs]
    mask = None if mask is None else str(mask)
    if precision not in _PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; use one of {', '.join(_PRECISIONS)}")
    batch_size = batch_size_or_default(batch_size)
    path = resolve_model(model)
    card = read_card(path)
    check_head_kind(card, path)
    check_classes(card.classes)
    check_inputs(card, inputs)
    check_outputs("classify", {"OUTPUT": output, "OUTPUT_CONFIDENCE": confidence, "OUTPUT_VECTOR": vector},
                  {"MODEL": str(path), **{f"INPUT_{i + 1}": p for i, p in enumerate(inputs)},
                   "MASK": split_layer_uri(mask)[0] if mask else None})
    ratios = [m.grid_ratio for m in card.modalities]
    with AlignedInputs.open(inputs, ratios) as scene:  # every input (and the mask) opened once
        check_bands(card, inputs, scene.reader.band_counts)
        warn_types(card, inputs, [str(d) for d in scene.reader.dtypes(native=True)], progress)
        grid = scene.cut(extent, mask)
        plan = plan_path(card, grid, tile_size, overlap, batch_size, progress)
        dev = resolve_device(device)
        amp = autocast_dtype(dev, precision)
        check_cancel(progress)

        outputs = OutputSet(grid, card.classes, output, confidence, vector, inputs)
        try:
            # the network is built by the runner once the reader has started (they overlap)
            runner = Runner(None, dev, plan.per_forward, amp, progress,
                            network=NetworkFile(path, dev, card.num_classes))
            progress.info(f"classifying {grid.width} x {grid.height} pixels with {card.architecture} "
                          f"({card.head_kind}) on {dev}")
            stats = plan.run(scene, card, runner, outputs.write, progress=progress, background=background_writer,
                             workers=workers)
            if outputs.nonfinite:
                progress.warn(f"the network gave non-finite (NaN/Inf) output for {outputs.nonfinite} pixel(s): they "
                              "are nodata in the output; check the inputs for extreme values")
            if stats.valid_pixels > 0 and stats.valid_pixels == outputs.nonfinite:
                raise ModelFileError(f"{path}: the network gave non-finite (NaN/Inf) output for every pixel; the "
                                     "model file or the inputs hold extreme values")
            if stats.valid_pixels == 0:
                where = "inside the mask " if mask is not None else ""
                raise GridError(
                    f"no pixel of the output extent {where}is valid in every input (all nodata or outside an input); "
                    "check the inputs' nodata and overlap, or choose another extent" + (" or mask" if mask else "")
                )
            check_cancel(progress)
            outputs.finish()
            final = outputs.commit()
        except BaseException:
            outputs.abort()  # the writer thread has stopped: run_dense/run_patch join it on any error
            raise
    seconds = time.perf_counter() - t0
    pixels = grid.width * grid.height
    progress.set_fraction(1.0)
    return ClassifyResult(
        output=final["class"], confidence=final.get("confidence"), vector=final.get("vector"), style=final["qml"],
        classes=list(card.classes),
        class_pixels={c.value: int(n) for c, n in zip(card.classes, outputs.counts)},
        device=str(dev), pixels=pixels, valid_pixels=stats.valid_pixels - outputs.nonfinite,
        nonfinite_pixels=outputs.nonfinite, tiles=stats.tiles, seconds=seconds,
        pixels_per_s=pixels / seconds if seconds > 0 else 0.0, forward_seconds=runner.forward_s / stats.workers, model_workers=stats.workers,
        read_cpu_seconds=stats.read_cpu_s, write_cpu_seconds=stats.write_cpu_s,
        batch_size=runner.batch,
    )
