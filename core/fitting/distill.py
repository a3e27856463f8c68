"""Optical -> SAR distillation glue (HFD-Net, spec ``hfdnet.md`` Sec. 5.2-5.3).

:func:`distill` loads a teacher model file (an ``hfdnet`` trained on optical bands with
:func:`core.fitting.training.train`), builds a student ``hfdnet`` with the SAR band count, wraps both in
``models.hfd_distill.HFDDistiller`` and trains that through the *same* training run as
:func:`core.fitting.training.train` (``core.fitting.run.TrainingRun``, its loop ``core.fitting.loop``):
the distiller fulfils the network contract with inputs ``[optical, sar]``. The saved model file is an ordinary SAR-only ``hfdnet`` (the
student's weights; adapters and teacher dropped), usable by classify with one SAR input.

With ``compare_sar_only`` a second student with the same initial weights is trained on SAR
alone, on the same samples and under the same budget, and both validation metrics go to the
report (and to the card's provenance). Which one wins is reported, not asserted.

Design choices: the optical input is normalised with the teacher card's statistics (it must see
what it was trained on); the SAR statistics are computed from the training data; the classes
are the teacher's (label values outside its table are unlabelled).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..classes import ClassInfo
from ..data.datasets import Scene, fingerprint
from ..data.prepare import check_tile_option, record_profile
from ..engine.io import open_raster
from ..errors import InputError
from ..head_kinds import head_kind
from ..modelfiles.builtin import resolve_model
from ..modelfiles.modelfile import ModelCard, build_from_file, load_model_file
from ..progress import NullProgress, Progress
from .loop import LoopConfig
from .run import TrainingRun


@dataclass
class DistillResult:
    """What :func:`distill` produced; ``sar_only_*`` are None when the comparison was skipped."""

    model_path: str
    report_path: str | None
    card: ModelCard
    history: list[dict[str, float]]
    best_metric: float
    metrics: Any
    sar_only_metric: float | None = None
    sar_only_metrics: Any = None
    sar_only_history: list[dict[str, float]] | None = None


def _sar_only(student: Any) -> Any:
    """The comparison run: a SAR student fed ``[optical, sar]`` batches that ignores the optical."""
    import torch.nn as nn

    class SarOnly(nn.Module):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.student = net

        def forward(self, optical, sar):  # same calling convention as the distiller
            return self.student(sar)

        def training_step(self, inputs, target):
            return self.student.training_step([inputs[1]], target)

        def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
            return self.student.param_groups(lr, weight_decay)

    return SarOnly(student)


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
    stream: bool | None = None,
) -> DistillResult:
    """Distil a SAR-only ``hfdnet`` from an optical ``hfdnet`` teacher (see the module docstring).

    ``scenes``: several ``Scene([optical, sar], labels)`` instead of the single scene given by
    ``input_optical``/``input_sar``/``labels``. ``stream``: read training windows from disk instead
    of whole scenes (None = when a scene is larger than ``windows.STREAM_PIXELS``; as in train). Raises InputError, ModelFileError, OutputError,
    Cancelled; nothing is written at the output paths on error.
    """
    import torch

    from ...models.hfd_distill import HFDDistiller
    from ...models.registry import get_spec

    progress = progress or NullProgress()
    teacher_path = resolve_model(teacher)  # a model file or a built-in name, as classify's MODEL
    t_card = load_model_file(teacher_path, weights=False)[0]
    if t_card.architecture != "hfdnet" or len(t_card.modalities) != 1:
        raise InputError(f"TEACHER {teacher} is a {t_card.architecture} model with {len(t_card.modalities)} "
                         "input(s); distillation needs an hfdnet teacher trained on one optical raster")
    spec = get_spec("hfdnet")
    rec, head = spec.recipe, head_kind(spec)
    if scenes is None:
        if not (input_optical and input_sar and labels):
            raise InputError("give INPUT_OPTICAL, INPUT_SAR and LABELS (or a list of scenes)")
        scenes = [Scene([input_optical, input_sar], labels, label_field)]
    scenes = list(scenes)
    for s in scenes:
        if len(s.inputs) != 2:
            raise InputError(f"scene {s.name}: distillation takes [optical, sar] inputs, got {len(s.inputs)}")
    # 0 (or None) means the network's default, in the CLI, Processing and the docs alike
    check_tile_option(tile_size)
    epochs = int(epochs) if epochs else rec.epochs
    batch_size = int(batch_size) if batch_size else rec.batch_size
    lr = float(learning_rate if learning_rate is not None else rec.peak_lr(from_scratch=True))  # the student starts from random weights
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise InputError("EPOCHS and BATCH_SIZE must be >= 1 (0 = the network's default) and LEARNING_RATE > 0")
    run_inputs = {"TEACHER": str(teacher_path), "INPUT_OPTICAL": [s.inputs[0] for s in scenes],
                  "INPUT_SAR": [s.inputs[1] for s in scenes], "LABELS": [s.labels for s in scenes]}
    with TrainingRun("distill", output_model, output_report, run_inputs, device, progress) as run:
        for s in scenes:  # from the headers, before any pixel is read
            bands = open_raster(s.inputs[0]).RasterCount
            if bands != t_card.modalities[0].bands:
                raise InputError(f"INPUT_OPTICAL has {bands} bands but the teacher was trained "
                                 f"on {t_card.modalities[0].bands}" + (f" (scene {s.name})" if len(scenes) > 1 else ""))
        classes: list[ClassInfo] = list(t_card.classes)
        # HFD-Net's head is dense: its sampler and validation need no patch geometry
        prepared, _ = run.prepare_scenes(
            scenes, head, (), names=["optical", "sar"], ratios=[1, 1], table=sorted(classes, key=lambda c: c.value),
            tile_size=tile_size, recipe_tile=t_card.tile_size or rec.tile_size,
            validation_fraction=validation_fraction, seed=seed, batch_size=batch_size, stream=stream,
            given_cards=[t_card.modalities[0], None], min_batches=rec.min_batches_per_epoch)
        data, tile = prepared.data, prepared.tile
        sar_card = data.modality_cards[1]
        if not prepared.streamed:
            record_profile(sar_card, scenes[0].inputs[1], [d.arrays[1] for d in prepared.sources])
        # built on torch's meta device and given the file's tensors: a card whose sizes do not
        # match its weights is refused without allocating what the card claims
        _, teacher_net = build_from_file(teacher_path, "cpu")
        s_kwargs = dict(t_card.build_kwargs)
        s_kwargs.update(spec.channel_kwargs([data.band_counts[1]]))
        kd_kwargs = {k: v for k, v in (("temperature", temperature), ("feature_weight", feature_weight),
                                        ("kd_weight", kd_weight)) if v is not None}
        cfg = LoopConfig.from_recipe(rec, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                                     metric=head.selection_metric, max_steps_per_epoch=max_steps_per_epoch)
        torch.manual_seed(seed)
        student = spec.builder(**s_kwargs)
        initial = {k: v.clone() for k, v in student.state_dict().items()}
        try:
            distiller = HFDDistiller(teacher_net, student, **kd_kwargs)
        except ValueError as e:
            raise InputError(f"cannot set up the distillation: {e}") from e
        progress.info("training the distilled SAR student")
        fit = run.loop(distiller, prepared, cfg, classes, export_state=lambda m: m.student_state_dict(),
                       run_fingerprint=repr((t_card.to_json(), s_kwargs, cfg.__dict__, kd_kwargs, data.fingerprints,
                                             tile)))
        sar_fit = None
        if compare_sar_only:
            progress.info("training the SAR-only comparison student (same start, samples and budget)")
            torch.manual_seed(seed)
            plain = spec.builder(**s_kwargs)
            plain.load_state_dict(initial)
            sar_fit = run.loop(_sar_only(plain), prepared, cfg, classes, resume=False,
                               export_state=lambda m: m.student.state_dict())
        sar_value = sar_fit.value if sar_fit is not None and sar_fit.metrics is not None else None
        sar_metrics = sar_fit.metrics if sar_fit is not None else None
        sar_history = sar_fit.outcome.history if sar_fit is not None else None
        comparison = {"distilled_miou": fit.value, "sar_only_miou": sar_value,
                      "distilled_summary": fit.metrics.summary() if fit.metrics is not None else {},
                      "sar_only_summary": sar_metrics.summary() if sar_metrics is not None else {}}
        provenance = run.provenance(
            data, fit, cfg, t_card.provenance.get("labels_note", ""), teacher=fingerprint(str(teacher_path)),
            teacher_provenance={k: t_card.provenance.get(k) for k in ("best_metrics", "epochs", "date")},
            distillation={"feature_weight": distiller.feature_weight, "kd_weight": distiller.kd_weight,
                          "temperature": distiller.temperature, "levels": list(distiller.levels)},
            comparison=comparison,
        )
        card = ModelCard(architecture="hfdnet", build_kwargs=s_kwargs, head_kind=head.name, modalities=[sar_card],
                         classes=classes, variant=t_card.variant, tile_size=head.card_tile(tile, rec.tile_size),
                         overlap=min(32, tile // 4), provenance=provenance)
        written = run.finish(card, fit, {"operation": "distillation (optical teacher -> SAR student)",
                                         "teacher": str(Path(teacher).name), "comparison": comparison,
                                         "sar_only_history": sar_history or []})
        return DistillResult(str(run.out), written, card, fit.outcome.history, fit.value, fit.metrics, sar_value,
                             sar_metrics, sar_history)
