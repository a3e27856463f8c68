"""PRSANet: prototype maths by hand, every switch, shapes, parameter counts, registry, and a short
training run on the real North Carolina Landsat labels (spec prsanet.md sections 5.2-5.5)."""
from __future__ import annotations

import copy
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from mmlc.models import IGNORE_INDEX, build_model, get_spec
from mmlc.models.prototypes import (
    PrototypeBank,
    class_means,
    imbalance_factors,
    prototype_entropy,
    prototype_logits,
    rebalance_weights,
    true_class_probability,
)
from mmlc.models.prsanet import ConcatFusion, PlanarEncoder, PRSANet, SemanticGraphFusion, SpectralEncoder


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# --------------------------------------------------------------------------- prototype maths
def test_class_means_and_prototype_classifier_by_hand() -> None:
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]])
    y = torch.tensor([0, 0, 2])
    sums, counts = class_means(z, y, 3)
    assert counts.tolist() == [2.0, 0.0, 1.0]
    assert torch.equal(sums, torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 4.0]]))

    protos = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    logits = prototype_logits(torch.tensor([[0.0, 0.0]]), protos)
    assert torch.allclose(logits, torch.tensor([[-1.0, -3.0]]))
    assert torch.allclose(prototype_logits(torch.tensor([[0.0, 0.0]]), protos, temperature=0.5),
                          torch.tensor([[-2.0, -6.0]]))
    p = true_class_probability(logits, torch.tensor([0]))
    assert p.item() == pytest.approx(sigmoid(2.0), rel=1e-6)            # e^-1 / (e^-1 + e^-3)
    h = prototype_entropy(logits)
    q = sigmoid(2.0)
    assert h.item() == pytest.approx(-(q * math.log(q) + (1 - q) * math.log(1 - q)), rel=1e-5)
    # A class without prototype gets probability exactly 0 and no NaN in the entropy.
    masked = prototype_logits(torch.tensor([[0.0, 0.0]]), protos, torch.tensor([True, False]))
    assert true_class_probability(masked, torch.tensor([0])).item() == 1.0
    assert prototype_entropy(masked).item() == pytest.approx(0.0, abs=1e-7)


def test_imbalance_factors_and_weights_by_hand() -> None:
    kappa = imbalance_factors(torch.tensor([0.8, 0.4]))
    assert kappa.tolist() == pytest.approx([1.0, 0.5])
    assert rebalance_weights(kappa).tolist() == pytest.approx([0.0, 1.0])          # clip(2 - 1)
    kappa = imbalance_factors(torch.tensor([0.6, 0.8, 0.2]))
    assert kappa.tolist() == pytest.approx([0.75, 1.0, 0.25])
    w = rebalance_weights(kappa, alpha=2.0)
    assert w.tolist() == pytest.approx([2.0 / 3.0, 0.0, 2.0])                      # 2*clip(1/3), 0, 2*clip(3)
    assert rebalance_weights(kappa, alpha=0.5, mode="binary").tolist() == [0.5, 0.0, 0.5]
    assert imbalance_factors(torch.zeros(2)).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="continuous"):
        rebalance_weights(kappa, mode="tanh")  # type: ignore[arg-type]


def test_prototype_bank_ema_and_fallback() -> None:
    bank = PrototypeBank(1, 3, 2, momentum=0.2, update="epoch")
    bank.bootstrap([torch.tensor([[1.0, 0.0], [3.0, 1.0]])], torch.tensor([0, 1]))
    assert bank.ready[0].tolist() == [True, True, False]
    assert torch.equal(bank.prototypes[0, :2], torch.tensor([[1.0, 0.0], [3.0, 1.0]]))
    # Epoch mode: observing only accumulates; end_epoch blends c = 0.8*mean + 0.2*old.
    bank.observe([torch.tensor([[3.0, 0.0], [5.0, 0.0], [7.0, 7.0]])], torch.tensor([0, 0, 2]))
    assert torch.equal(bank.prototypes[0, 0], torch.tensor([1.0, 0.0]))
    bank.end_epoch()
    assert bank.prototypes[0, 0].tolist() == pytest.approx([0.8 * 4.0 + 0.2 * 1.0, 0.0])
    assert bank.prototypes[0, 1].tolist() == [3.0, 1.0]            # absent class keeps its prototype
    assert bank.prototypes[0, 2].tolist() == [7.0, 7.0]            # new class: its mean
    assert bank.ready[0].all()
    assert bank.pending == 0                                       # accumulators reset
    # Batch mode blends at once.
    fast = PrototypeBank(1, 1, 1, momentum=0.9, update="batch")
    fast.bootstrap([torch.tensor([[0.0]])], torch.tensor([0]))
    fast.observe([torch.tensor([[10.0]])], torch.tensor([0]))
    assert fast.prototypes[0, 0].item() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        PrototypeBank(1, 1, 1, update="sometimes")  # type: ignore[arg-type]


# --------------------------------------------------------- training step on fixed embeddings
S1, S2 = sigmoid(3.0), sigmoid(1.0)     # speed scores of the two modalities below


def fixed_model(z2: list[list[float]] | None = None, **kw) -> tuple[PRSANet, list[torch.Tensor]]:
    """A 2-modality, K=2, D=2 PRSANet whose encoder returns fixed embeddings.

    Prototypes (all sets): class 0 at (0, 0), class 1 at (3, 0). Modality 1 sits on them
    (p(y) = sigmoid(3) for both samples), modality 2 lies in between (p(y) = sigmoid(1)).
    """
    kw = {"sa_weight": 0.0, "per_weight": 0.0, **kw}
    model = PRSANet(num_classes=2, modalities=[1, 1], embed_dim=2, **kw)
    with torch.no_grad():
        model.prototypes.prototypes[:] = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
        model.prototypes.ready[:] = True
    z1 = torch.tensor([[0.0, 0.0], [3.0, 0.0]], requires_grad=True)
    z2t = torch.tensor(z2 or [[1.0, 0.0], [2.0, 0.0]], requires_grad=True)
    zf = torch.tensor([[0.0, 1.0], [1.0, 0.0]])

    def encode(*inputs: torch.Tensor):
        return [], [z1, z2t], zf

    model.encode = encode  # type: ignore[method-assign]
    return model, [z1, z2t]


DUMMY = [torch.zeros(2, 1, 7, 7), torch.zeros(2, 1, 7, 7)]
Y = torch.tensor([0, 1])


def test_training_step_imbalance_and_weights_by_hand() -> None:
    model, (z1, z2) = fixed_model()
    loss, logs = model.training_step(DUMMY, Y)
    kappa2 = S2 / S1
    assert logs["imbalance_m1"] == pytest.approx(1.0)
    assert logs["imbalance_m2"] == pytest.approx(kappa2, rel=1e-5)
    assert logs["weight_m1"] == 0.0                                    # the dominant modality
    assert logs["weight_m2"] == pytest.approx(1.0 / kappa2 - 1.0, rel=1e-5) and logs["weight_m2"] > 0
    assert logs["proto_acc_m1"] == 1.0 and logs["proto_acc_m2"] == 1.0
    assert logs["loss_iip"] == pytest.approx((1.0 / kappa2 - 1.0) * -math.log(S2), rel=1e-5)
    assert "loss" not in logs                                           # the loop logs it itself
    assert loss.item() == pytest.approx(logs["loss_ce"] + logs["loss_iip"], rel=1e-6)
    loss.backward()
    # "Independent": the prototype loss reaches only the slow modality's encoder output.
    assert z1.grad is None or torch.count_nonzero(z1.grad) == 0
    assert torch.count_nonzero(z2.grad) > 0


def test_switches_change_the_loss_as_documented() -> None:
    kappa2 = S2 / S1
    _, binary = fixed_model(weight_mode="binary", alpha=0.5)[0].training_step(DUMMY, Y)
    assert binary["weight_m2"] == 0.5 and binary["weight_m1"] == 0.0
    assert binary["loss_iip"] == pytest.approx(0.5 * -math.log(S2), rel=1e-5)

    _, off = fixed_model(rebalance=False)[0].training_step(DUMMY, Y)
    assert off["loss_iip"] == 0.0 and off["weight_m2"] == 0.0
    assert off["imbalance_m2"] == pytest.approx(kappa2, rel=1e-5)       # still measured and logged

    late, _ = fixed_model(rebalance_epochs=1)
    late.epoch.fill_(1)                                                 # past the rebalancing window
    assert late.training_step(DUMMY, Y)[1]["loss_iip"] == 0.0

    _, per = fixed_model(per_weight=0.01)[0].training_step(DUMMY, Y)
    entropy_m1 = -(S1 * math.log(S1) + (1 - S1) * math.log(1 - S1))      # only the dominant one
    assert per["loss_per"] == pytest.approx(-0.01 * entropy_m1, rel=1e-5)
    per_late, _ = fixed_model(per_weight=0.01, per_epochs=1)
    per_late.epoch.fill_(1)
    assert per_late.training_step(DUMMY, Y)[1]["loss_per"] == 0.0

    fused_model, _ = fixed_model(prototype_target="fused")
    with torch.no_grad():
        fused_model.prototypes.prototypes[2] = torch.tensor([[1.0, 0.0], [4.0, 0.0]])
    fused = fused_model.training_step(DUMMY, Y)[1]
    ce_fused = -(math.log(sigmoid(3.0)) + math.log(sigmoid(-1.0))) / 2  # d = (0, 3) and (1, 2) to (1,0), (4,0)
    assert fused["loss_iip"] == pytest.approx((1.0 / kappa2 - 1.0) * ce_fused, rel=1e-5)
    assert fused["imbalance_m2"] == pytest.approx(kappa2, rel=1e-5)     # speed still on own prototypes

    sa_loss, sa = fixed_model(sa_weight=0.5)[0].training_step(DUMMY, Y)
    assert sa["loss_sa"] > 0
    assert sa_loss.item() == pytest.approx(sa["loss_ce"] + 0.5 * sa["loss_sa"] + sa["loss_iip"], rel=1e-6)


def test_epoch_end_aggregates_samples_updates_prototypes_and_resets() -> None:
    model, _ = fixed_model()
    model.training_step(DUMMY, Y)
    swapped, _ = fixed_model(z2=[[2.0, 0.0], [1.0, 0.0]])              # modality 2 now wrong twice
    model.encode = swapped.encode  # type: ignore[method-assign]
    model.training_step(DUMMY, Y)
    out = model.epoch_end()
    s2 = (2 * S2 + 2 * sigmoid(-1.0)) / 4                               # = 0.5
    assert out["epoch_score_m1"] == pytest.approx(S1, rel=1e-5)
    assert out["epoch_score_m2"] == pytest.approx(s2, rel=1e-5)
    assert out["epoch_imbalance_m1"] == pytest.approx(1.0)
    assert out["epoch_imbalance_m2"] == pytest.approx(s2 / S1, rel=1e-5)
    assert out["epoch_proto_acc_m1"] == 1.0 and out["epoch_proto_acc_m2"] == 0.5
    assert int(model.epoch) == 1
    # Epoch-mode prototypes: m2 class means (1.5, 0) for both classes, blended 0.8/0.2 with the old.
    assert model.prototypes.prototypes[1].flatten().tolist() == pytest.approx([1.2, 0.0, 1.8, 0.0])
    assert model.prototypes.prototypes[0].flatten().tolist() == pytest.approx([0.0, 0.0, 3.0, 0.0])
    empty = model.epoch_end()                                           # accumulators were reset
    assert empty["epoch_score_m1"] == 0.0 and int(model.epoch) == 2


def test_batch_prototype_update_moves_prototypes_inside_the_step() -> None:
    model, _ = fixed_model(prototype_update="batch")
    model.training_step(DUMMY, Y)
    # momentum 0.9 on the old: class 0 of m2 = 0.1*(1, 0) + 0.9*(0, 0).
    assert model.prototypes.prototypes[1, 0].tolist() == pytest.approx([0.1, 0.0])
    epoch_model, _ = fixed_model()
    epoch_model.training_step(DUMMY, Y)
    assert epoch_model.prototypes.prototypes[1, 0].tolist() == [0.0, 0.0]


# ------------------------------------------------------------------------ real network
def small(**kw) -> PRSANet:
    torch.manual_seed(0)
    return build_model("prsanet", num_classes=5, modalities=kw.pop("modalities", [4, 2]), embed_dim=16, **kw)


def test_shapes_two_and_three_modalities_with_spectral_stem() -> None:
    m2 = small().eval()
    assert all(isinstance(e, PlanarEncoder) for e in m2.encoders)
    with torch.no_grad():
        assert m2(torch.randn(3, 4, 11, 11), torch.randn(3, 2, 11, 11)).shape == (3, 5)
        assert m2(torch.randn(2, 4, 7, 7), torch.randn(2, 2, 7, 7)).shape == (2, 5)   # 1 token each
    m3 = small(modalities=[30, 1, 2]).eval()
    assert isinstance(m3.encoders[0], SpectralEncoder) and isinstance(m3.encoders[1], PlanarEncoder)
    x = [torch.randn(2, 30, 9, 9), torch.randn(2, 1, 9, 9), torch.randn(2, 2, 9, 9)]
    with torch.no_grad():
        tokens, emb, fused = m3.encode(*x)
        logits = m3(*x)
    assert [t.shape for t in tokens] == [(2, 9, 16)] * 3          # 9 x 9 patch -> 3 x 3 tokens
    assert [e.shape for e in emb] == [(2, 16)] * 3 and fused.shape == (2, 16)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    m3.train()
    loss, logs = m3.training_step(x, torch.tensor([0, 3]))
    loss.backward()
    assert m3.encoders[0].stem[0].weight.grad is not None
    assert {"imbalance_m3", "weight_m3", "proto_acc_m3", "fused_acc"} <= set(logs)
    assert small(modalities=[30, 2], spectral_stem_min_bands=64).encoders[0].__class__ is PlanarEncoder


def test_bad_inputs_raise_clear_errors() -> None:
    m = small().eval()
    with pytest.raises(ValueError, match="2 modalities"):
        m(torch.randn(1, 4, 11, 11))
    with pytest.raises(ValueError, match="band count"):
        m(torch.randn(1, 3, 11, 11), torch.randn(1, 2, 11, 11))
    with pytest.raises(ValueError, match="at least 7"):
        m(torch.randn(1, 4, 5, 5), torch.randn(1, 2, 5, 5))
    with pytest.raises(ValueError, match="same batch and patch size"):
        m(torch.randn(1, 4, 11, 11), torch.randn(1, 2, 9, 9))
    with pytest.raises(ValueError, match="class indices"):
        m.training_step([torch.randn(2, 4, 7, 7), torch.randn(2, 2, 7, 7)], torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="at least 2 modalities"):
        PRSANet(num_classes=3, modalities=[4])
    with pytest.raises(ValueError, match="at least 13"):
        PRSANet(num_classes=3, modalities=[4, 2], spectral_stem_min_bands=8)


def test_ignore_index_is_excluded_from_every_term() -> None:
    base = small().eval()                  # eval: BatchNorm uses running stats, batch-independent
    x = [torch.randn(4, 4, 9, 9), torch.randn(4, 2, 9, 9)]
    y = torch.tensor([0, 1, 2, 1])
    loss_a, logs_a = copy.deepcopy(base).training_step([t[:3] for t in x], y[:3])
    y_ign = y.clone()
    y_ign[3] = IGNORE_INDEX
    loss_b, logs_b = copy.deepcopy(base).training_step(x, y_ign)
    assert loss_b.item() == pytest.approx(loss_a.item(), rel=1e-5)
    assert logs_b["imbalance_m2"] == pytest.approx(logs_a["imbalance_m2"], rel=1e-5)
    none = copy.deepcopy(base)
    loss_c, logs_c = none.training_step(x, torch.full((4,), IGNORE_INDEX))
    loss_c.backward()
    assert loss_c.item() == 0.0 and logs_c["weight_m1"] == 0.0 and not none.prototypes.ready.any()


def test_graph_and_semantic_alignment_switches() -> None:
    graph, concat = small(), small(graph_fusion=False)
    assert isinstance(graph.fusion, SemanticGraphFusion) and isinstance(concat.fusion, ConcatFusion)
    assert "class_nodes" in dict(concat.named_parameters())          # still anchors L_SA
    x = [torch.randn(4, 4, 9, 9), torch.randn(4, 2, 9, 9)]
    y = torch.tensor([0, 1, 2, 3])
    # The graph's fused feature depends on the class nodes; the concat fusion does not.
    graph.eval()
    with torch.no_grad():
        before = graph(*x)
        graph.fusion.class_nodes.add_(1.0)
        assert not torch.allclose(graph(*x), before)
        before = concat.eval()(*x)
        concat.class_nodes.add_(1.0)
        assert torch.equal(concat(*x), before)
    a = graph.fusion.layers[0].adjacency(torch.randn(2, 5, 16))
    assert torch.allclose(a.sum(-1), torch.ones(2, 5), atol=1e-6)     # row-stochastic graph
    loss_sa, with_sa = small().training_step(x, y)
    loss_no, no_sa = small(sa_weight=0.0).training_step(x, y)
    assert with_sa["loss_sa"] > 0 and no_sa["loss_sa"] == 0.0
    assert loss_sa.item() == pytest.approx(loss_no.item() + 0.5 * with_sa["loss_sa"], rel=1e-5)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_exact_parameter_counts() -> None:
    """Spec 5.2/5.3 layer shapes: Houston2013-like HSI 144 bands + LiDAR 1 band, K=15, D=128."""
    d, k = 128, 15
    spectral = (1 * 8 * 7 * 9 + 16) + (8 * 16 * 5 * 9 + 32) + (16 * 32 * 3 * 9 + 64) + (32 * 132 * d * 9 + 2 * d)
    planar = (1 * 32 * 9 + 64) + (32 * 64 * 9 + 128) + (64 * d * 9 + 2 * d)
    graph = k * d + 2 * (3 * d * d + 2 * d)
    head = d * k + k
    assert spectral + planar + graph + head == 5_082_071
    model = build_model("prsanet", num_classes=k, modalities=[144, 1])
    assert n_params(model.encoders[0]) == spectral and n_params(model.encoders[1]) == planar
    assert n_params(model.fusion) == graph
    assert n_params(model) == 5_082_071
    # Concat baseline, 4 + 2 bands, K=7, D=32: encoders + Linear(2D, D) + class nodes + head.
    concat = build_model("prsanet", num_classes=7, modalities=[4, 2], embed_dim=32, graph_fusion=False)
    assert n_params(concat) == (38_272 + 37_696) + (64 * 32 + 32) + 7 * 32 + (32 * 7 + 7) == 78_503


def test_registry_spec_and_state_round_trip() -> None:
    spec = get_spec("prsanet")
    assert spec.head_kind == "patch" and spec.builder is PRSANet
    assert [(m.name, m.grid_ratio, m.patch_size, m.patch_anchor) for m in spec.modalities] == \
        [("m1", 1, 11, 5), ("m2", 1, 11, 5)]
    assert spec.channel_kwargs([4, 2, 3]) == {"modalities": [4, 2, 3]}
    with pytest.raises(ValueError, match="at least 2"):
        spec.channel_kwargs([4])
    assert (spec.recipe.optimizer, spec.recipe.lr, spec.recipe.weight_decay, spec.recipe.schedule,
            spec.recipe.epochs, spec.recipe.batch_size) == ("adam", 5e-4, 1e-4, "cosine", 200, 64)
    # Weights + prototypes survive a safetensors round trip (what a model file stores).
    from safetensors.torch import load, save
    model = small()
    x = [torch.randn(4, 4, 9, 9), torch.randn(4, 2, 9, 9)]
    model.training_step(x, torch.tensor([0, 1, 2, 3]))
    model.epoch_end()
    state = model.state_dict()
    # Only the prototypes and the epoch counter are state; epoch accumulators are no buffers (DDP
    # broadcasts buffers from rank 0 before every forward and would wipe each rank's sums).
    assert {k for k in state if not k.startswith(("encoders.", "fusion.", "head."))} == \
        {"epoch", "prototypes.prototypes", "prototypes.ready"}
    blob = save({k: v.contiguous() for k, v in state.items()})
    clone = small()
    clone.load_state_dict(load(io.BytesIO(blob).getvalue()), strict=True)
    assert clone.prototypes.ready.sum() == model.prototypes.ready.sum() and int(clone.epoch) == 1
    with torch.no_grad():
        assert torch.equal(clone.eval()(*x), model.eval()(*x))


# ------------------------------------------------------------- real data: NC Landsat labels
def _landsat_patches(folder: Path, patch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Normalised 6-band patches around the labelled pixels, labels 0..6, and their rows/cols."""
    from osgeo import gdal

    bands = []
    for b in (10, 20, 30, 40, 50, 70):
        ds = gdal.Open(str(folder / f"lsat7_2000_{b}.tif"))        # keep: a band outlives no dataset
        band = ds.GetRasterBand(1)
        a = band.ReadAsArray().astype(np.float32)
        a[a == band.GetNoDataValue()] = np.nan
        bands.append(a)
    img = np.stack(bands)
    img = (img - np.nanmean(img, axis=(1, 2), keepdims=True)) / np.nanstd(img, axis=(1, 2), keepdims=True)
    img = np.nan_to_num(img, nan=0.0)
    lab = gdal.Open(str(folder / "landsat96_labelled_pixels.tif")).ReadAsArray()
    rows, cols = np.nonzero(lab != -99999)
    r = patch // 2
    padded = np.pad(img, ((0, 0), (r, r), (r, r)), mode="reflect")   # reflect-101, as the engine
    idx = np.arange(patch)
    x = padded[:, rows[:, None, None] + idx[None, :, None], cols[:, None, None] + idx[None, None, :]]
    return x.transpose(1, 0, 2, 3), lab[rows, cols].astype(np.int64) - 1, rows, cols


def test_short_training_on_nc_landsat_beats_majority(nc_landsat: Path) -> None:
    from scipy import ndimage

    patch, block = 11, 40
    x, y, rows, cols = _landsat_patches(nc_landsat, patch)
    assert x.shape == (2872, 6, patch, patch) and set(np.unique(y)) == set(range(7))
    # Spatially disjoint split: 40 x 40 px blocks on a diagonal pattern are held out; training
    # pixels whose patch would reach into a held-out block are dropped too.
    br, bc = np.indices((443, 489))
    held_block = ((br // block) * 3 + (bc // block) * 2) % 4 == 0
    test = held_block[rows, cols]
    train = ~ndimage.binary_dilation(held_block, iterations=patch // 2)[rows, cols]
    assert not (test & train).any() and test.sum() > 400 and train.sum() > 1500
    majority = np.bincount(y[test]).max() / test.sum()

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = build_model("prsanet", num_classes=7, modalities=[4, 2], embed_dim=32)
    xt, yt = torch.from_numpy(x[train]), torch.from_numpy(y[train])
    epochs, batch = 3, 64
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, pct_start=0.2,
                                                total_steps=epochs * math.ceil(len(yt) / batch))
    history = []
    for _ in range(epochs):
        model.train()
        fused_acc = []
        for idx in torch.randperm(len(yt), generator=gen).split(batch):
            xb = xt[idx]
            loss, logs = model.training_step([xb[:, :4], xb[:, 4:]], yt[idx])   # VNIR 1-4 | SWIR 5, 7
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            fused_acc.append(logs["fused_acc"])
        history.append({**model.epoch_end(), "fused_acc": float(np.mean(fused_acc))})
    for e, h in enumerate(history):
        print(f"epoch {e}: imbalance m1 {h['epoch_imbalance_m1']:.3f} m2 {h['epoch_imbalance_m2']:.3f} | "
              f"proto acc m1 {h['epoch_proto_acc_m1']:.3f} m2 {h['epoch_proto_acc_m2']:.3f} | "
              f"fused acc {h['fused_acc']:.3f}")
    model.eval()
    xe = torch.from_numpy(x[test])
    with torch.no_grad():
        pred = model(xe[:, :4], xe[:, 4:]).argmax(1).numpy()
    oa = float((pred == y[test]).mean())
    print(f"held-out OA {oa:.3f} (majority {majority:.3f}, {test.sum()} px)")
    assert all(max(h["epoch_imbalance_m1"], h["epoch_imbalance_m2"]) == pytest.approx(1.0) for h in history)
    assert history[-1]["epoch_proto_acc_m1"] > 0.6 and history[-1]["epoch_proto_acc_m2"] > 0.6
    assert oa > majority + 0.3
