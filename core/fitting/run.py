"""One training run, shared by train and distill: claim the outputs, prepare the data, loop, write.

:class:`TrainingRun` holds what every run does, in order:

1. check and claim the output paths (model file, resume checkpoint, report; ``core.engine.atomic``)
   and set up the device and the process group (``core.fitting.ddp``) -- the constructor;
2. read the scenes and prepare them (``core.data.prepare``): normalisation, class indices, split,
   then the head kind's sampler and validation (``core.head_kinds``) -- :meth:`prepare`;
3. run the loop (``core.fitting.loop``) and score its best epoch -- :meth:`loop`;
4. write the model file and the HTML report together, drop the resume checkpoint -- :meth:`finish`;
5. on leaving the ``with`` block, undo whatever was not committed and leave the process group.

``core.fitting.training.train`` and ``core.fitting.distill.distill`` supply only what differs:
which network(s) to build, the classes, the modality cards kept, the provenance and report extras.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from ..assessment.validation import metric_of
from ..classes import ClassInfo
from ..data import streamed_prepare, windows
from ..data.datasets import Scene, SceneData, load_scene
from ..data.prepare import PreparedData, prepare_data, resolve_classes, run_tile
from ..data.samplers import IGNORE
from ..engine.atomic import RunFiles
from ..engine.output_paths import check_outputs
from ..errors import InputError
from ..head_kinds import HeadKind
from ..modelfiles.modelfile import ModalityCard, ModelCard, save_model_file
from ..progress import Progress
from ..version import plugin_version
from .checkpoint import resume_path_for
from .ddp import DistContext, barrier, setup, teardown
from .loop import LoopConfig, LoopOutcome, run_loop

__all__ = ["TrainingRun", "RunData", "Fit", "report_path_for", "claim_run", "fingerprint"]


def report_path_for(out: Path, output_report: str | None) -> str | None:
    """OUTPUT_REPORT of train and distill: "" = no report, None = beside the model file."""
    if output_report == "":
        return None
    return output_report if output_report is not None else str(out.with_name(out.name + ".report.html"))


def claim_run(out: Path, report_path: str | None, device: str) -> tuple[RunFiles, Any, DistContext]:
    """Claim a run's outputs (model, resume file, report; core.engine.atomic) and set up the device
    and process group; the claim is released if that fails. Returns (run files, device, DDP context)."""
    from ..device import resolve_device

    run = RunFiles([out, resume_path_for(out)] + ([Path(report_path)] if report_path else []))
    try:
        dev = resolve_device(device)
        ctx = setup(dev.type)
    except BaseException:
        run.release()
        raise
    return run, dev, ctx


def fingerprint(obj: Any) -> str:
    """A stable digest of a run's parameters and inputs (the resume checkpoint's key)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class RunData:
    """The prepared data of a run with the head kind's sampler and validation over it."""

    data: PreparedData
    tile: int
    sampler: Any
    validation: Any
    #: the scenes in memory (SceneData) the data was prepared from; empty when streamed
    sources: Sequence[Any] = ()

    @property
    def streamed(self) -> bool:
        """Whether the scenes are read window by window (``core.data.windows``)."""
        return not self.sources


@dataclass
class Fit:
    """One loop's outcome with the best epoch's selection metric and Metrics (None without validation)."""

    outcome: LoopOutcome
    value: float
    metrics: Any


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


def _check_two_classes(classes: Sequence[ClassInfo]) -> None:
    if len(classes) < 2:
        raise InputError(f"the labels hold {len(classes)} class(es); training needs at least 2")


class TrainingRun:
    """A run of ``operation`` (``train``/``distill``) writing ``output_model`` (see the module doc).

    ``inputs``: the operation's input paths by parameter name, for the output-path checks.
    Use as a context manager: leaving the block without :meth:`finish` leaves nothing at the outputs.
    """

    def __init__(self, operation: str, output_model: str, output_report: str | None, inputs: dict,
                 device: str, progress: Progress) -> None:
        import torch

        self.out = Path(output_model)
        self.report_path = report_path_for(self.out, output_report)
        self.resume_path = resume_path_for(self.out)
        self.progress = progress
        check_outputs(operation, {"OUTPUT_MODEL": output_model, "OUTPUT_REPORT": self.report_path}, inputs)
        self.files, self.device, self.ctx = claim_run(self.out, self.report_path, device)
        if self.ctx.distributed and self.device.type == "cuda":
            self.device = torch.device("cuda", self.ctx.local_rank)

    def __enter__(self) -> TrainingRun:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.files.abort()
        self.files.release()
        teardown(self.ctx)

    def read_scenes(self, scenes: Sequence[Scene], ratios: Sequence[int]) -> list[SceneData]:
        """Every scene in memory, its inputs on the grid of input 1 at ``ratios``."""
        datas = []
        for i, s in enumerate(scenes):
            self.progress.info(f"reading scene {i + 1}/{len(scenes)}: {s.name}")
            datas.append(load_scene(s, ratios))
        return datas

    def prepare_scenes(self, scenes: Sequence[Scene], head: HeadKind, modalities: Sequence[Any], *,
                       names: Sequence[str], ratios: Sequence[int], table: list[ClassInfo] | None,
                       tile_size: int | None, recipe_tile: int, validation_fraction: float, seed: int,
                       batch_size: int, stream: bool | None = None, to_db: Sequence[bool] | None = None,
                       given_cards: Sequence[ModalityCard | None] | None = None,
                       scale_range: tuple[float, float] | None = None,
                       class_balance: float = 0.0, min_batches: int = 1) -> tuple[RunData, list[ClassInfo]]:
        """The run's data and classes from ``scenes``: read into memory and prepared (:meth:`prepare`),
        or, when ``stream`` says so or a scene is larger than ``windows.STREAM_PIXELS`` (None),
        opened and read window by window (``core.data.windows``, never a whole scene) with the head
        kind's streamed sampler and validation. ``table``: the classes (sorted by value), else those
        the labels hold; ``min_batches``: the Recipe's ``min_batches_per_epoch``. The one place where
        train and distill choose between the two paths."""
        if windows.should_stream(scenes, stream):
            opened = windows.open_scenes(scenes, ratios)
            tile = run_tile(tile_size, recipe_tile, opened)
            data = streamed_prepare.prepare_streamed(
                opened, names, ratios, table=table, validation_fraction=validation_fraction, seed=seed, tile=tile,
                guard=head.split_guard(modalities), to_db=to_db, given_cards=given_cards, progress=self.progress)
            _check_two_classes(data.classes)
            self.progress.info(f"{data.n_train} training and {data.n_val} validation pixels labelled, "
                               f"{len(data.classes)} classes (read window by window)")
            if class_balance > 0:
                self.progress.info("class-balanced sampling is not applied to windows read from disk: "
                                   "labelled pixels are drawn uniformly")
            sampler, validation = head.streamed(data, modalities, tile=tile, batch_size=batch_size, seed=seed,
                                                scale_range=scale_range, world_size=self.ctx.world_size,
                                                min_batches=min_batches)
            return RunData(data, tile, sampler, validation), data.classes
        datas = self.read_scenes(scenes, ratios)
        classes = resolve_classes(datas, table)
        _check_two_classes(classes)
        tile = run_tile(tile_size, recipe_tile, datas)
        prepared = self.prepare(datas, head, modalities, names=names, ratios=ratios, classes=classes, tile=tile,
                                validation_fraction=validation_fraction, seed=seed, batch_size=batch_size,
                                to_db=to_db, given_cards=given_cards, scale_range=scale_range,
                                class_balance=class_balance, min_batches=min_batches)
        return prepared, classes

    def prepare(self, datas: Sequence[SceneData], head: HeadKind, modalities: Sequence[Any], *,
                names: Sequence[str], ratios: Sequence[int], classes: list[ClassInfo], tile: int,
                validation_fraction: float, seed: int, batch_size: int,
                to_db: Sequence[bool] | None = None, given_cards: Sequence[ModalityCard | None] | None = None,
                scale_range: tuple[float, float] | None = None, class_balance: float = 0.0,
                min_batches: int = 1) -> RunData:
        """Prepare the scenes and build the head kind's sampler and validation over them.

        ``modalities``: the network's ModalitySpecs (patch geometry; unused by dense heads).
        """
        data = prepare_data(datas, names, ratios, classes=classes, validation_fraction=validation_fraction,
                            seed=seed, tile=tile, guard=head.split_guard(modalities), to_db=to_db,
                            given_cards=given_cards, progress=self.progress)
        self.progress.info(f"{data.n_train} training and {data.n_val} validation pixels labelled, "
                           f"{len(classes)} classes")
        sampler = head.training_sampler(data.scenes, modalities, tile=tile, n_train=data.n_train,
                                        batch_size=batch_size, seed=seed, scale_range=scale_range,
                                        class_balance=class_balance, min_batches=min_batches)
        return RunData(data, tile, sampler, head.validation(data.scenes, modalities, tile=tile, seed=seed),
                       sources=list(datas))

    def with_all_labels(self, prepared: RunData, head: HeadKind, modalities: Sequence[Any], *, batch_size: int,
                        seed: int, scale_range: tuple[float, float] | None = None,
                        class_balance: float = 0.0, min_batches: int = 1) -> RunData:
        """``prepared`` (in memory) with every labelled pixel for training and none for validation,
        as :meth:`prepare` with ``validation_fraction=0`` gives, reusing the normalised scenes
        instead of preparing them again (the refit's data, core.fitting.training)."""
        import dataclasses

        import numpy as np

        scenes = [dataclasses.replace(s, train=s.target != IGNORE, val=np.zeros_like(s.val))
                  for s in prepared.data.scenes]
        n_train = sum(int(s.train.sum()) for s in scenes)
        data = dataclasses.replace(prepared.data, scenes=scenes, n_train=n_train, n_val=0)
        sampler = head.training_sampler(scenes, modalities, tile=prepared.tile, n_train=n_train,
                                        batch_size=batch_size, seed=seed, scale_range=scale_range,
                                        class_balance=class_balance, min_batches=min_batches)
        return RunData(data, prepared.tile, sampler, head.validation(scenes, modalities, tile=prepared.tile, seed=seed),
                       sources=prepared.sources)

    def loop(self, net: Any, run_data: RunData, cfg: LoopConfig, classes: Sequence[ClassInfo], *,
             run_fingerprint: str = "", resume: bool = True,
             export_state: Callable[[Any], dict] | None = None) -> Fit:
        """Train ``net`` with the run's sampler and validation; ``resume``: use the resume checkpoint."""
        outcome = run_loop(net, run_data.sampler, run_data.validation, cfg, classes, self.device,
                           export_state=export_state, resume_path=self.resume_path if resume else None,
                           run_fingerprint=run_fingerprint, progress=self.progress, ctx=self.ctx)
        if outcome.best_confusion is None:
            return Fit(outcome, float("nan"), None)
        return Fit(outcome, *metric_of(outcome.best_confusion, classes, cfg.metric))

    def provenance(self, data: PreparedData, fit: Fit, cfg: LoopConfig, labels_note: str, **extra: Any) -> dict:
        """The provenance fields every run records, followed by the operation's ``extra``."""
        return {
            "inputs": data.fingerprints,
            "epochs": fit.outcome.epochs_run,
            "best_epoch": fit.outcome.best_epoch,
            "best_metrics": fit.metrics.summary() if fit.metrics is not None else {},
            "selection_metric": cfg.metric,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "mmlc_version": plugin_version(),
            "labels_note": labels_note,
            "seed": cfg.seed,
            "train_pixels": data.n_train,
            "validation_pixels": data.n_val,
            **extra,
        }

    def finish(self, card: ModelCard, fit: Fit, report_extra: dict, *,
               baseline: Callable[[], Any] | None = None, drop_resume: bool = True) -> str | None:
        """Write the model file and its report together (rank 0), then drop the resume checkpoint.

        ``baseline()`` (rank 0 only) gives the report's baseline figures. Returns the report's path,
        None when none was written.
        """
        written = None
        if self.ctx.is_main:  # the model and its report are placed together (core.engine.atomic)
            save_model_file(self.files.temp(self.out), card, fit.outcome.state)
            forest = baseline() if baseline is not None else None
            temp_report = str(self.files.temp(self.report_path)) if self.report_path else None
            written = _write_report(temp_report, card, fit.outcome.history, fit.metrics, report_extra,
                                    self.progress, forest)
            if written is None and self.report_path:
                self.files.discard(self.report_path)
            self.files.commit()
            written = self.report_path if written is not None else None
            if drop_resume and self.resume_path.exists():
                self.resume_path.unlink()
        barrier(self.ctx)
        self.progress.set_fraction(1.0)
        return written
