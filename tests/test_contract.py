"""The network contract, checked once for every registered architecture (and its cheap variants).

What the engine relies on (docs/contributing.md, models/registry.py ``Network``): ``forward`` in
eval gives plain logits of the head kind's shape, ``training_step`` a finite scalar loss whose
gradient reaches the parameters and every input plus float logs, ``param_groups`` holds every
trainable parameter exactly once, ``epoch_end`` returns floats, and the weights survive a
safetensors round trip into a freshly built network (what a model file does). Small widths and
tiles on CPU keep each architecture to a few seconds; the inputs are shaped from the ModelSpec
(modalities, grid ratios, patch sizes), as the engine shapes them.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from mmlc.models import IGNORE_INDEX, build_model, get_spec, list_models
from mmlc.models.registry import Network, epoch_end_logs, optimizer_groups
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

NUM_CLASSES = 3
BATCH = 3


@dataclass(frozen=True)
class Small:
    """A cheap configuration of one architecture: builder kwargs and which variants to check.

    variant_kwarg: the builder keyword that selects a ``ModelSpec.variants`` entry (None: none).
    tile: the dense tile side of input 1 (patch models take their spec's patch sizes).
    """

    variant_kwarg: str | None
    variants: tuple[str | None, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    tile: int = 32


#: One entry per registered network; a network added to the registry without one fails below.
SMALL: dict[str, Small] = {
    "asanet": Small("backbone", ("convnextv2_atto",), {"decoder_channels": 16, "aux_channels": 8}),
    "das2f": Small("variant", ("nanjing", "xian"), {"classifier_hidden": 16}),
    "hfdnet": Small("encoder", ("resnet18", "resnet50"), {"channels": 16, "encoder_width": 8}),
    "prsanet": Small(None, (None,), {"embed_dim": 16}),
}

CASES = [(name, variant) for name in list_models() for variant in (SMALL[name].variants if name in SMALL else (None,))]


def case_id(case: tuple[str, str | None]) -> str:
    name, variant = case
    return name if variant is None else f"{name}-{variant}"


def build(name: str, variant: str | None, seed: int) -> nn.Module:
    """The small network ``name`` (``variant``) with default band counts, weights drawn from ``seed``."""
    if name not in SMALL:
        pytest.fail(f"{name!r} is registered but has no small configuration in SMALL (tests/test_contract.py)")
    small, spec = SMALL[name], get_spec(name)
    kwargs = dict(small.kwargs)
    kwargs.update(spec.channel_kwargs([m.default_bands for m in spec.modalities]))
    if variant is not None:
        assert variant in spec.variants, f"{variant!r} is no longer a variant of {name}: {spec.variants}"
        kwargs[small.variant_kwarg] = variant
    torch.manual_seed(seed)
    return build_model(name, num_classes=NUM_CLASSES, **kwargs)


def batch(name: str, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Inputs shaped as the engine feeds ``name`` and an int64 target with one unlabelled sample/row."""
    spec = get_spec(name)
    g = torch.Generator().manual_seed(seed)
    if spec.head_kind == "dense":
        t = SMALL[name].tile
        inputs = [torch.randn(BATCH, m.default_bands, t * m.grid_ratio, t * m.grid_ratio, generator=g)
                  for m in spec.modalities]
        target = torch.randint(0, NUM_CLASSES, (BATCH, t, t), generator=g)
        target[0, : t // 2] = IGNORE_INDEX
    else:
        inputs = [torch.randn(BATCH, m.default_bands, m.patch_size, m.patch_size, generator=g)
                  for m in spec.modalities]
        target = torch.tensor([0, NUM_CLASSES - 1, IGNORE_INDEX])
    return inputs, target


def assert_float_logs(logs: Any, what: str) -> None:
    assert isinstance(logs, dict), f"{what} returned {type(logs).__name__}, not a dict"
    for k, v in logs.items():
        assert isinstance(k, str) and type(v) is float and math.isfinite(v), f"{what}: {k!r} -> {v!r}"


def test_every_registered_network_has_a_small_configuration() -> None:
    assert sorted(SMALL) == list_models()


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_forward_in_eval_gives_logits_of_the_head_kind(case: tuple[str, str | None]) -> None:
    name, variant = case
    net = build(name, variant, seed=0).eval()
    assert isinstance(net, Network)
    inputs, _ = batch(name)
    with torch.no_grad():
        out = net(*inputs)
    assert isinstance(out, torch.Tensor), f"eval forward returned {type(out).__name__}, not plain logits"
    if get_spec(name).head_kind == "dense":
        assert out.shape == (BATCH, NUM_CLASSES, *inputs[0].shape[-2:])
    else:
        assert out.shape == (BATCH, NUM_CLASSES)
    assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_training_step_param_groups_and_epoch_end(case: tuple[str, str | None]) -> None:
    name, variant = case
    net = build(name, variant, seed=0).train()
    inputs, target = batch(name)
    inputs = [x.requires_grad_(True) for x in inputs]
    loss, logs = net.training_step(inputs, target)
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0 and math.isfinite(loss.item())
    assert_float_logs(logs, "training_step")
    loss.backward()
    trainable = {k: p for k, p in net.named_parameters() if p.requires_grad}
    no_grad = [k for k, p in trainable.items() if p.grad is None]
    assert not no_grad, f"parameters outside the loss graph: {no_grad[:5]}"
    assert all(bool(torch.isfinite(p.grad).all()) for p in trainable.values())
    assert any(bool(p.grad.abs().sum() > 0) for p in trainable.values())
    for i, x in enumerate(inputs):  # every modality reaches the loss
        assert x.grad is not None and bool(x.grad.abs().sum() > 0), f"no gradient reaches input {i + 1}"

    groups = net.param_groups(1e-3, 0.01)
    assert isinstance(groups, list) and all(isinstance(g, dict) and "params" in g for g in groups)
    counts = Counter(id(p) for g in groups for p in g["params"])
    assert all(c == 1 for c in counts.values()), "a parameter sits in two groups"
    assert set(counts) == {id(p) for p in trainable.values()}, "groups do not hold exactly the trainable parameters"
    torch.optim.AdamW(optimizer_groups(net, 1e-3, 0.01), lr=1e-3)  # valid optimiser input

    assert_float_logs(net.epoch_end(), "epoch_end")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_state_dict_round_trip_into_a_fresh_network(case: tuple[str, str | None]) -> None:
    """Weights and buffers (BN statistics, prototypes, epoch counters) after a training step and an
    epoch end survive safetensors bytes -> a network built from another seed -> strict load."""
    name, variant = case
    trained = build(name, variant, seed=0).train()
    inputs, target = batch(name, seed=1)
    with torch.no_grad():
        trained.training_step(inputs, target)
    trained.epoch_end()
    trained.eval()
    state = load_safetensors(save_safetensors({k: v.contiguous() for k, v in trained.state_dict().items()}))
    fresh = build(name, variant, seed=1).eval()
    probe, _ = batch(name, seed=2)
    with torch.no_grad():
        want = trained(*probe)
        assert not torch.equal(fresh(*probe), want)  # the two seeds really differ before loading
        fresh.load_state_dict(state, strict=True)
        assert list(fresh.state_dict()) == list(trained.state_dict())
        assert torch.equal(fresh(*probe), want)


def test_engine_helpers_on_networks_and_plain_modules() -> None:
    """``optimizer_groups``/``epoch_end_logs``: the network's own hooks, or the defaults for any module."""
    plain = nn.Linear(3, 2)
    plain.bias.requires_grad_(False)
    groups = optimizer_groups(plain, 0.1, 0.01)
    assert len(groups) == 1 and groups[0]["params"] == [plain.weight]
    assert (groups[0]["lr"], groups[0]["weight_decay"]) == (0.1, 0.01)
    assert epoch_end_logs(plain) == {}
    assert not isinstance(plain, Network)

    net = build("prsanet", None, seed=0).train()
    inputs, target = batch("prsanet")
    with torch.no_grad():
        net.training_step(inputs, target)
    logs = epoch_end_logs(net)
    assert {"epoch_imbalance_m1", "epoch_proto_acc_m2"} <= set(logs) and int(net.epoch) == 1
    assert_float_logs(logs, "epoch_end_logs")

    asanet = build("asanet", "convnextv2_atto", seed=0)
    mine = optimizer_groups(asanet, 1e-4, 0.05)
    assert len(mine) > 1 and {g["name"] for g in mine} == {g["name"] for g in asanet.param_groups(1e-4, 0.05)}
    mine[0]["lr"] = -1.0  # fresh dicts: the caller may edit them
    assert asanet.param_groups(1e-4, 0.05)[0]["lr"] > 0


def test_the_hfd_distiller_is_a_network_that_never_optimises_its_teacher() -> None:
    """The distillation wrapper fulfils the same contract; its groups hold the student and the
    adapters exactly once and no teacher parameter (the teacher is frozen)."""
    from mmlc.models.hfd_distill import HFDDistiller

    teacher, student = build("hfdnet", "resnet18", seed=0), build("hfdnet", "resnet18", seed=1)
    distiller = HFDDistiller(teacher, student)
    assert isinstance(distiller, Network) and distiller.epoch_end() == {}
    held = Counter(id(p) for g in optimizer_groups(distiller, 1e-2, 1e-4) for p in g["params"])
    want = {id(p) for p in [*student.parameters(), *distiller.adapters.parameters()]}
    assert set(held) == want and all(c == 1 for c in held.values())
    assert not held.keys() & {id(p) for p in teacher.parameters()}
