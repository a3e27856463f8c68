"""train(): fit a registered network on labelled scenes and write a model file and its report.

:func:`train` is what ``core.api.train``, the Processing algorithm and ``python -m mmlc train``
run. It checks the options against the ModelSpec (before any data is read) and then goes through
one :class:`core.fitting.run.TrainingRun`, supplying what is particular to training:

1. the classes (the class table, else the label values of the scenes), the modality cards (new
   statistics, or INIT_MODEL's when fine-tuning) and the ModelSpec's patch geometry;
2. the sampler and validation of the spec's head kind (``core.head_kinds``), never the
   architecture name;
3. the network (``core.fitting.network``) and its starting weights, trained by the generic loop
   (``core.fitting.loop``) with the ModelSpec's Recipe;
4. the model card, the random-forest baseline beside the network's figures in the report.

A killed run restarted with the same parameters continues from ``<output>.resume.pt``
(``core.fitting.checkpoint``) and ends with the same weights as an uninterrupted run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..classes import ClassInfo, read_class_table
from ..data.datasets import Scene
from ..data.prepare import PreparedData, check_tile_option, record_profile
from ..errors import InputError
from ..head_kinds import head_kind
from ..modelfiles.card_schema import strip_path_kwargs
from ..modelfiles.modelfile import ModelCard
from ..progress import NullProgress, Progress
from .loop import LoopConfig
from .network import build_network, fine_tune_cards, init_weights, resolve_variant
from .run import TrainingRun, fingerprint

__all__ = ["Scene", "TrainResult", "train"]


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


def _scenes_of(spec: Any, inputs: Sequence[str] | None, labels: str | None, label_field: str | None,
               scenes: Sequence[Scene] | None) -> list[Scene]:
    """The training scenes: ``scenes``, else the one scene of ``inputs`` + ``labels``; one input per modality."""
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
            raise InputError(f"{spec.name} takes {n_mod} input(s) ({', '.join(m.name for m in spec.modalities)}); "
                             f"scene {s.name} gives {len(s.inputs)}")
    return scenes


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
    class_balance: float | None = None,
    refit_epochs: int | None = None,
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
    ``patience`` (early stopping; None = the recipe's, 0 = every epoch runs),
    ``class_balance`` (class-balanced sampling power, core.data.samplers; None = the recipe's, 0 = off),
    ``refit_epochs`` (after the run with validation, train a fresh network on every labelled pixel,
    validation blocks included, for this many epochs, at most ``epochs``, and keep that one; None =
    the recipe's, which some networks run only on small label sets, 0 = off; see :func:`refit_plan`
    and :func:`_refit`),
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
    arch, rec, head = spec.name, spec.recipe, head_kind(spec)
    if refit_epochs is not None and int(refit_epochs) < 0:
        raise InputError(f"REFIT_EPOCHS must be >= 0 (0 = off), got {refit_epochs}")
    balance = float(rec.class_balance if class_balance is None else class_balance)
    if not 0.0 <= balance <= 1.0:
        raise InputError(f"CLASS_BALANCE must be in [0, 1] (0 = off, 1 = every class equally often), got {balance}")
    scenes = _scenes_of(spec, inputs, labels, label_field, scenes)
    n_mod = len(spec.modalities)
    variant = resolve_variant(spec, variant)  # options are checked before any data is read
    check_tile_option(tile_size)
    if not 0.0 <= validation_fraction < 0.95:
        raise InputError(f"VALIDATION_FRACTION must be in [0, 0.95), got {validation_fraction}")
    # 0 (or None) means the network's default, in the CLI, Processing and the docs alike
    epochs = int(epochs) if epochs else rec.epochs
    batch_size = int(batch_size) if batch_size else rec.batch_size
    lr = float(learning_rate if learning_rate is not None else rec.peak_lr(from_scratch=not init_model))
    if epochs < 1 or batch_size < 1 or lr <= 0 or accumulate < 1:
        raise InputError("EPOCHS, BATCH_SIZE and accumulate must be >= 1 (0 = the network's default) and "
                         "LEARNING_RATE > 0")
    run_inputs = {**{f"INPUT_{i + 1}": [s.inputs[i] for s in scenes] for i in range(n_mod)},
                  "LABELS": [s.labels for s in scenes], "CLASSES": classes, "INIT_MODEL": init_model}
    with TrainingRun("train", output_model, output_report, run_inputs, device, progress) as run:
        table = read_class_table(classes) if classes else None
        ratios = [m.grid_ratio for m in spec.modalities]
        given = fine_tune_cards(init_model, arch, n_mod)  # fine-tuning keeps the original normalisation
        prepared, run_classes = run.prepare_scenes(
            scenes, head, spec.modalities, names=[m.name for m in spec.modalities], ratios=ratios, table=table,
            tile_size=tile_size, recipe_tile=rec.tile_size, validation_fraction=validation_fraction, seed=seed,
            batch_size=batch_size, stream=stream, to_db=to_db, given_cards=given, scale_range=scale_range,
            class_balance=balance, min_batches=rec.min_batches_per_epoch)
        data, tile, streamed = prepared.data, prepared.tile, prepared.streamed
        for i, (mc, m) in enumerate(zip(data.modality_cards, spec.modalities)):
            mc.patch_size, mc.patch_anchor, mc.grid_ratio = m.patch_size, m.patch_anchor, m.grid_ratio
            if given is None and not streamed:  # fine-tuning keeps the original card, data type and range included
                record_profile(mc, scenes[0].inputs[i], [d.arrays[i] for d in prepared.sources])
        torch.manual_seed(seed)
        net, kwargs = build_network(spec, variant, data.band_counts, len(run_classes), build_kwargs)
        init_info = init_weights(net, init_model, arch, progress) if init_model else {}
        cfg = LoopConfig.from_recipe(
            rec, epochs=epochs, batch_size=batch_size, lr=lr, accumulate=accumulate,
            patience=rec.patience if patience is None else (int(patience) or None),  # 0 = off
            max_steps_per_epoch=max_steps_per_epoch, seed=seed, metric=head.selection_metric, precision=precision,
        )
        run_fp = fingerprint({
            "arch": arch, "kwargs": kwargs, "cfg": cfg.__dict__, "tile": tile, "fraction": validation_fraction,
            "inputs": data.fingerprints, "classes": [c.to_dict() for c in run_classes],
            "world": run.ctx.world_size, "init": init_model, "scale_range": scale_range,
            **({"class_balance": balance} if balance else {}),
            **({"streamed": True} if streamed else {}),
        })
        fit = run.loop(net, prepared, cfg, run_classes, run_fingerprint=run_fp, resume=resume)
        refit, why_not = refit_plan(rec, refit_epochs, epochs, data.n_train + data.n_val)
        refit_info: dict[str, Any] = {}
        if refit > 0 and data.n_val > 0 and not streamed:
            fit, refit_info = _refit(run, prepared, fit, cfg, refit, spec=spec, variant=variant, head=head,
                                     classes=run_classes, build_kwargs=build_kwargs, init_model=init_model,
                                     seed=seed, batch_size=batch_size, scale_range=scale_range,
                                     class_balance=balance)
        elif refit > 0 or why_not:
            progress.info("no refit: " + (why_not or ("windows are read from disk" if streamed
                                                      else "no validation blocks")))
        provenance = run.provenance(
            data, fit, cfg, labels_note, epochs_requested=epochs, batch_size=batch_size, learning_rate=lr,
            validation_fraction=validation_fraction, device=str(run.device), world_size=run.ctx.world_size,
            class_balance=balance, **refit_info,
            **init_info,
        )
        card_tile = head.card_tile(tile, rec.tile_size)
        card = ModelCard(
            architecture=arch, build_kwargs=strip_path_kwargs(kwargs), head_kind=head.name,
            modalities=data.modality_cards, classes=run_classes, variant=variant or "", tile_size=card_tile,
            overlap=min(32, card_tile // 4), provenance=provenance,
        )
        report_extra = {"architecture": arch, "scenes": [s.name for s in scenes],
                        "resumed_from_epoch": fit.outcome.start_epoch}
        forest = (lambda: _forest_baseline(data, run_classes, seed, fit.metrics, progress)) \
            if baseline and not streamed else None
        written = run.finish(card, fit, report_extra, baseline=forest, drop_resume=resume)
        out = fit.outcome
        return TrainResult(str(run.out), written, card, out.history, out.best_epoch, fit.value, cfg.metric,
                           fit.metrics, out.epochs_run, out.start_epoch)


def refit_plan(recipe: Any, asked: int | None, epochs: int, labelled: int) -> tuple[int, str]:
    """Epochs of the refit (0 = none) and, when the recipe's refit is skipped for the label set's
    size, why. ``asked`` is the caller's REFIT_EPOCHS (None = the recipe's), ``epochs`` the run's
    (never more refit epochs than that: EPOCHS 3 asks for a short run, refit included), ``labelled``
    the labelled pixels of the training and validation blocks. The recipe's refit honours its
    ``refit_max_labels``; an explicit REFIT_EPOCHS does not (the analyst asked for it)."""
    if asked is not None:
        return min(epochs, int(asked)), ""
    wanted = min(epochs, int(recipe.refit_epochs or 0))
    limit = recipe.refit_max_labels
    if wanted > 0 and limit is not None and labelled > int(limit):
        return 0, (f"{labelled} labelled pixels, more than the {int(limit)} up to which this network refits by "
                   "default: the validation blocks are large enough to pick the epoch (REFIT_EPOCHS forces one)")
    return wanted, ""


def _refit(run: TrainingRun, prepared: Any, fit: Any, cfg: LoopConfig, epochs: int, *, spec: Any, variant: Any,
           head: Any, classes: list[ClassInfo], build_kwargs: dict | None, init_model: str | None, seed: int,
           batch_size: int, scale_range: Any, class_balance: float) -> tuple[Any, dict]:
    """Train a fresh network on every labelled pixel (validation blocks included) for ``epochs``
    epochs, on the first run's normalised scenes, and return the first run's Fit carrying its weights.

    Why (a design choice for small label sets, not from the papers; issue 21): on the North
    Carolina labels the validation blocks of a few hundred pixels picked PRSANet's epoch badly on
    2 seeds of 3 (validation OA 0.19-0.33, east-half OA 0.45-0.57 against the forest's 0.67), while
    20 epochs on all the west half's labels beat the forest on 3 seeds of 3 (docs/benchmarks.md).
    ASANet and HFD-Net failed the same way there and refit on label sets of up to 100,000 pixels
    (their recipes' ``refit_max_labels``; :func:`refit_plan`). The first run still gives the report
    its validation scores, curves and forest comparison: they estimate the network trained the same
    way on fewer pixels. The kept weights are the refit's."""
    import dataclasses

    import torch

    data = prepared.data
    run.progress.info(f"refit: a fresh network on all {data.n_train + data.n_val} labelled pixels (validation "
                      f"blocks included) for {epochs} epochs; it is the model written, the validation scores "
                      "above estimate it")
    everything = run.with_all_labels(prepared, head, spec.modalities, batch_size=batch_size, seed=seed,
                                     scale_range=scale_range, class_balance=class_balance,
                                     min_batches=spec.recipe.min_batches_per_epoch)
    torch.manual_seed(seed)
    net, _ = build_network(spec, variant, data.band_counts, len(classes), build_kwargs)
    if init_model:
        init_weights(net, init_model, spec.name, run.progress)
    again = run.loop(net, everything, dataclasses.replace(cfg, epochs=epochs, patience=None), classes, resume=False)
    kept = dataclasses.replace(fit.outcome, state=again.outcome.state)
    return dataclasses.replace(fit, outcome=kept), {"refit_epochs": epochs,
                                                    "refit_pixels": int(everything.data.n_train)}
