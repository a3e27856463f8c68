"""Building the network of a training run from its ModelSpec, and its starting weights.

:func:`resolve_variant` checks VARIANT before any data is read; :func:`build_network` builds the
network for the data's band counts and class count (the keyword arguments go to the model card);
:func:`init_weights` fine-tunes from a model file or loads a pretrained backbone (INIT_MODEL).
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Sequence

from ..errors import InputError, ModelFileError
from ..modelfiles.modelfile import load_model_file
from ..progress import Progress

__all__ = ["variant_kwarg", "resolve_variant", "build_network", "init_weights"]


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


def init_weights(net: Any, init_model: str, architecture: str, progress: Progress) -> dict:
    """Fine-tune from a model file (same architecture) or load a pretrained backbone file.

    Tensors whose shape differs (e.g. the classifier for another number of classes) are skipped
    and reported. A non-model file goes to the network's loader (``load_pretrained``,
    ``load_encoder_weights`` or ``load_backbone_weights``) when it has one. Returns the
    provenance fields of the start.
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


def fine_tune_cards(init_model: str | None, architecture: str, n_modalities: int) -> list | None:
    """The modality cards of INIT_MODEL when it is a readable model file of the same architecture and
    inputs (fine-tuning keeps the original normalisation), else None."""
    if not init_model or not Path(init_model).is_file():
        return None
    try:
        card = load_model_file(init_model, weights=False)[0]
    except ModelFileError:
        return None
    if card.architecture == architecture and len(card.modalities) == n_modalities:
        return card.modalities
    return None
