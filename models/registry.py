"""The one registry of networks: names -> builders plus what the engine needs to feed them.

The engine (``core/``) never special-cases a network. Everything it needs to know about one is
declared here, through a :class:`ModelSpec`: which modalities it takes (in input order), on
which grid ratio each is read, whether it is a ``dense`` (tile -> logit map) or ``patch``
(centred patches -> one logit vector per pixel) model, how band counts map onto the builder's
keyword arguments, and the training recipe defaults.

Network modules register themselves with :func:`register` at import time; :func:`build_model`
imports them lazily so ``import mmlc.models`` stays cheap. What the engine calls on a built network
is the :class:`Network` protocol (docs/contributing.md, "The contract every network fulfils");
:func:`optimizer_groups` and :func:`epoch_end_logs` call its two hooks on any module.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:  # the registry itself never imports torch (``list_models`` stays cheap)
    from torch import Tensor

#: Label value ignored by every loss and metric (unlabelled pixels). Class indices are 0..K-1.
IGNORE_INDEX: int = 255

HeadKind = Literal["dense", "patch"]


@dataclass(frozen=True)
class ModalitySpec:
    """One input of a network.

    name: short name (``optical``, ``sar``, ``ms``, ``pan``, ``m1``...).
    default_bands: band count used when the caller gives none.
    grid_ratio: pixels of this modality per pixel of input 1 along one axis (PAN for DAS2F: 4).
    patch_size: for ``patch`` models, the patch side in this modality's own pixels.
    patch_anchor: for ``patch`` models, how many of this modality's pixels lie before the
        target pixel's top-left corner, i.e. the patch of target pixel (r, c) starts at
        (grid_ratio*r - patch_anchor, grid_ratio*c - patch_anchor). DAS2F: MS 7, PAN 28.
    fixed_bands: the network only accepts exactly ``default_bands`` bands.
    """

    name: str
    default_bands: int
    grid_ratio: int = 1
    patch_size: int = 0
    patch_anchor: int = 0
    fixed_bands: bool = False


@dataclass(frozen=True)
class Recipe:
    """Training defaults of a network (from its spec); the generic loop reads these."""

    optimizer: Literal["adamw", "sgd", "adam"] = "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.01
    momentum: float = 0.9
    warmup_iters: int = 0
    schedule: Literal["poly", "cosine", "constant", "step"] = "poly"
    poly_power: float = 1.0
    epochs: int = 50
    batch_size: int = 8
    tile_size: int = 256
    #: early stopping: epochs in a row without a better validation score before the run stops
    #: (the best epoch is what is kept either way); None = every epoch runs
    patience: int | None = None
    #: class-balanced sampling: each labelled pixel drawn with weight count(its class) ** -class_balance
    #: (0 = off; core.data.samplers)
    class_balance: float = 0.0
    #: after the run with validation, train a fresh network on every labelled pixel for this many
    #: epochs and keep it (core.fitting.training._refit); None = off
    refit_epochs: int | None = None
    #: the recipe's refit runs only when the label set holds at most this many labelled pixels
    #: (training and validation blocks); None = whatever its size. On a small label set the few
    #: validation blocks pick the epoch badly and the refit costs a fixed few hundred steps; on a
    #: large one the blocks are reliable and the refit would double the training time. An explicit
    #: REFIT_EPOCHS is not limited by it. Design choice, not from the papers (issue 21)
    refit_max_labels: int | None = None
    #: dense heads: optimiser steps an epoch takes at least. An epoch draws about four tiles per
    #: tile-sized area of labelled pixels (core.head_kinds), which is one batch when the labels are a
    #: few hundred points or pixels: the recipe's epochs would then be as many steps, too few to train
    #: from random weights (issue 21). Design choice, not from the papers; 1 = no minimum
    min_batches_per_epoch: int = 1
    #: peak learning rate when the network starts from random weights (no INIT_MODEL) and the caller
    #: gives none; None = ``lr``. For networks whose paper's rate is a fine-tuning rate from
    #: ImageNet weights, which mmlc does not ship (design choice)
    scratch_lr: float | None = None

    def peak_lr(self, from_scratch: bool) -> float:
        """The schedule's peak rate: ``scratch_lr`` for a network starting from random weights when
        the recipe has one, else ``lr``."""
        return float(self.scratch_lr) if from_scratch and self.scratch_lr else float(self.lr)


@dataclass(frozen=True)
class ModelSpec:
    """Everything the engine needs to know about a network."""

    name: str
    builder: Callable[..., Any]
    head_kind: HeadKind
    modalities: tuple[ModalitySpec, ...]
    channel_kwargs: Callable[[Sequence[int]], dict[str, Any]]
    recipe: Recipe = field(default_factory=Recipe)
    variants: tuple[str, ...] = ()
    description: str = ""
    paper: str = ""


_REGISTRY: dict[str, ModelSpec] = {}
_MODULES: dict[str, str] = {
    "asanet": ".asanet",
    "das2f": ".das2f",
    "prsanet": ".prsanet",
    "hfdnet": ".hfdnet",
}

#: The one name table of the variants of each network, the default (the builder's) first. Plain
#: data, so the dialog and the command line read it without importing torch; each network's
#: ``ModelSpec.variants`` lists the same names (tests/test_dialogs.py checks both agree).
_VARIANTS: dict[str, tuple[str, ...]] = {
    "asanet": ("convnextv2_tiny", "convnextv2_atto", "convnextv2_femto", "convnextv2_pico", "convnextv2_nano",
               "convnextv2_base"),
    "das2f": ("nanjing", "xian"),
    "prsanet": (),
    "hfdnet": ("resnet50", "resnet34", "resnet18"),
}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a network to the registry (called by each network module at import time)."""
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    """Return the :class:`ModelSpec` of ``name``, importing its module on first use."""
    key = name.lower()
    if key not in _REGISTRY:
        if key not in _MODULES:
            raise KeyError(f"unknown model {name!r}; known: {', '.join(list_models())}")
        importlib.import_module(_MODULES[key], __package__)
    return _REGISTRY[key]


def list_models() -> list[str]:
    """Names of all networks the registry knows (without importing torch)."""
    return sorted(_MODULES)


def list_architectures() -> tuple[str, ...]:
    """The built-in networks in declaration order: the dialog's ARCHITECTURE dropdown lists them
    so (Processing models saved with an index rely on the order; :func:`list_models` sorts)."""
    return tuple(_MODULES)


def list_variants(name: str) -> tuple[str, ...]:
    """The variants of network ``name``, default first (empty: no variants), without importing
    torch for the built-in networks; a network registered at run time answers from its spec."""
    key = name.lower()
    if key in _VARIANTS:
        return _VARIANTS[key]
    if key in _REGISTRY:
        return tuple(_REGISTRY[key].variants)
    raise KeyError(f"unknown model {name!r}; known: {', '.join(list_models())}")


def build_model(name: str, **kwargs: Any) -> Any:
    """Build network ``name`` with builder keyword arguments (``num_classes=...`` etc.)."""
    return get_spec(name).builder(**kwargs)


# -- the network contract: what the engine calls on a built network ------------------------------

@runtime_checkable
class StatesParamGroups(Protocol):
    """A module that says how its parameters are optimised (LR scales, no-decay groups)."""

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Optimiser groups (``params`` plus optional ``lr``/``weight_decay``/...) that together hold
        every trainable parameter exactly once."""
        ...


@runtime_checkable
class ReportsEpochEnd(Protocol):
    """A module with a hook at the end of every training epoch."""

    def epoch_end(self) -> dict[str, float]:
        """Scalar logs of the finished epoch (they go to the training history and the report)."""
        ...


@runtime_checkable
class Network(StatesParamGroups, ReportsEpochEnd, Protocol):
    """The contract every registered network fulfils (an ``nn.Module`` with these methods).

    ``forward(*inputs)``: one normalised float tensor per modality, in the ModelSpec's order; in
    ``eval()`` mode it returns plain logits, ``(B, K, H, W)`` at input 1's size (dense) or
    ``(B, K)`` (patch). ``training_step(inputs, target)``: the loss to back-propagate and scalar
    logs; ``target`` is ``(B, H, W)`` or ``(B,)`` int64 with :data:`IGNORE_INDEX` where unlabelled.
    ``param_groups`` and ``epoch_end`` default to one group of all trainable parameters and ``{}``
    (:class:`.network.NetworkModule`). Checked for every registry entry by tests/test_contract.py.
    """

    def forward(self, *inputs: Tensor) -> Any:
        ...

    def training_step(self, inputs: Sequence[Tensor], target: Tensor) -> tuple[Tensor, dict[str, float]]:
        ...


def single_param_group(net: Any, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """One optimiser group of every trainable parameter (the default of :class:`StatesParamGroups`)."""
    return [{"params": [p for p in net.parameters() if p.requires_grad], "lr": lr, "weight_decay": weight_decay}]


def optimizer_groups(net: Any, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """The optimiser groups of ``net``: its own ``param_groups`` when it states them, else one group
    of all trainable parameters (modules outside the registry: test doubles, wrappers). Each group
    is a fresh dict, so the caller may add keys without touching the network's."""
    if isinstance(net, StatesParamGroups):
        return [dict(g) for g in net.param_groups(lr, weight_decay)]
    return single_param_group(net, lr, weight_decay)


def epoch_end_logs(net: Any) -> dict[str, float]:
    """Run ``net``'s end-of-epoch hook (if it has one) and return its logs as floats."""
    if not isinstance(net, ReportsEpochEnd):
        return {}
    return {str(k): float(v) for k, v in (net.epoch_end() or {}).items()}
