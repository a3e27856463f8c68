"""The training engine on real samples with tiny test-only networks (registered here)."""
from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmlc.core.data.datasets import Scene, load_scene, scenes_from_dataset
from mmlc.core.data.samplers import IGNORE, DenseTileSampler, PatchSampler, PreparedScene, augment, epoch_order
from mmlc.core.data.splits import block_split
from mmlc.core.errors import Cancelled, InputError, OutputError
from mmlc.core.fitting.checkpoint import resume_path_for
from mmlc.core.fitting.schedule import lr_factor
from mmlc.core.fitting.training import train
from mmlc.core.modelfiles.modelfile import load_model_file
from mmlc.core.progress import CallbackProgress
from mmlc.models.registry import IGNORE_INDEX, ModalitySpec, ModelSpec, Recipe, register

ROOT = Path(__file__).resolve().parent.parent


class TinyDense(nn.Module):
    """Two 3x3 conv stems summed, a small conv head: a dense two-modality test network."""

    def __init__(self, num_classes: int, optical_channels: int = 10, sar_channels: int = 2) -> None:
        super().__init__()
        self.a = nn.Conv2d(optical_channels, 8, 3, padding=1)
        self.b = nn.Conv2d(sar_channels, 8, 3, padding=1)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(8, num_classes, 1))

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return self.head(self.a(x) + self.b(s))

    def training_step(self, inputs, target):
        loss = F.cross_entropy(self(*inputs), target, ignore_index=IGNORE_INDEX)
        return loss, {"ce": float(loss.detach())}


class TinyPatch(nn.Module):
    """A one-modality patch classifier (5x5 patches) with an epoch_end hook."""

    def __init__(self, num_classes: int, in_channels: int = 6) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_channels, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 9, num_classes))
        self.epochs_seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, inputs, target):
        return F.cross_entropy(self(inputs[0]), target, ignore_index=IGNORE_INDEX), {}

    def epoch_end(self) -> dict[str, float]:
        self.epochs_seen += 1
        return {"epochs_seen": float(self.epochs_seen)}


register(ModelSpec("t_dense", TinyDense, "dense", (ModalitySpec("optical", 10), ModalitySpec("sar", 2)),
                   lambda b: {"optical_channels": b[0], "sar_channels": b[1]},
                   Recipe(optimizer="adamw", lr=5e-3, epochs=2, batch_size=4, tile_size=64)))
class CountingDense(TinyDense):
    """TinyDense that counts its training steps (one per batch)."""

    steps = 0

    def training_step(self, inputs, target):
        CountingDense.steps += 1
        return super().training_step(inputs, target)


register(ModelSpec("t_dense_sparse", CountingDense, "dense", (ModalitySpec("optical", 10), ModalitySpec("sar", 2)),
                   lambda b: {"optical_channels": b[0], "sar_channels": b[1]},
                   Recipe(optimizer="adamw", lr=1e-3, scratch_lr=2e-2, epochs=2, batch_size=2, tile_size=32,
                          min_batches_per_epoch=3)))
register(ModelSpec("t_patch", TinyPatch, "patch", (ModalitySpec("ms", 6, patch_size=5, patch_anchor=2),),
                   lambda b: {"in_channels": b[0]},
                   Recipe(optimizer="adam", lr=3e-3, epochs=3, batch_size=64, schedule="cosine")))


def ben_scenes(folder: Path, n: int = 4) -> list[Scene]:
    s2 = sorted(glob.glob(str(folder / "*__s2_10band_10m.tif")))[:n]
    return [Scene([p, p.replace("s2_10band_10m", "s1_vv_vh_db")], p.replace("s2_10band_10m", "weak_label_s2rules"))
            for p in s2]


@pytest.fixture(scope="module")
def landsat_stack(nc_landsat: Path, tmp_path_factory) -> str:
    from osgeo import gdal

    out = str(tmp_path_factory.mktemp("nc") / "lsat_stack.vrt")
    bands = [str(nc_landsat / f"lsat7_2000_{b}.tif") for b in (10, 20, 30, 40, 50, 70)]
    gdal.BuildVRT(out, bands, separate=True).FlushCache()
    return out


@pytest.fixture(scope="module")
def dense_run(bigearthnet: Path, tmp_path_factory):
    out = tmp_path_factory.mktemp("dense") / "tiny.mmlc"
    prog = CallbackProgress()
    res = train("t_dense", None, None, str(out), scenes=ben_scenes(bigearthnet, 2), epochs=3, tile_size=32,
                batch_size=4, max_steps_per_epoch=4, seed=3, labels_note="weak S2 rule labels", progress=prog)
    return res, out, prog


def test_dense_loss_falls_and_model_file_is_complete(dense_run, bigearthnet):
    res, out, prog = dense_run
    losses = [h["loss"] for h in res.history]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert res.metric_name == "miou" and 0.0 < res.best_metric <= 1.0
    assert res.best_epoch == max(range(1, 4), key=lambda e: res.history[e - 1]["val_miou"])
    card, tensors = load_model_file(out)
    assert card.architecture == "t_dense" and card.head_kind == "dense"
    from osgeo import gdal

    present = set()
    for s in ben_scenes(bigearthnet, 2):
        present |= set(np.unique(gdal.Open(s.labels).ReadAsArray()).tolist()) - {0}
    k = len(present)
    assert [c.value for c in card.classes] == sorted(present) and k >= 3
    assert len({c.color for c in card.classes}) == k
    assert card.build_kwargs == {"optical_channels": 10, "sar_channels": 2, "num_classes": k}
    assert [m.name for m in card.modalities] == ["optical", "sar"] and card.tile_size == 32
    assert card.provenance["labels_note"] == "weak S2 rule labels"
    assert card.provenance["epochs"] == 3 and card.provenance["best_epoch"] == res.best_epoch
    assert len(card.provenance["inputs"]) == 6 and all("sha256_first_mib" in f for f in card.provenance["inputs"])
    assert card.provenance["best_metrics"]["miou"] == pytest.approx(res.best_metric)
    assert tensors["head.1.weight"].shape == (k, 8, 1, 1)
    # normalisation statistics = mean/std of the raw SAR dB values over all training scenes
    sar = [load_scene(s, [1, 1]).arrays[1] for s in ben_scenes(bigearthnet, 2)]
    allv = np.concatenate([a.reshape(2, -1) for a in sar], 1).astype(np.float64)
    assert card.modalities[1].to_db is False  # already in dB: not log-transformed again
    np.testing.assert_allclose(card.modalities[1].mean, allv.mean(1), rtol=1e-5)
    np.testing.assert_allclose(card.modalities[1].std, allv.std(1), rtol=1e-4)
    assert not resume_path_for(out).exists()  # removed once the model file is written
    assert res.report_path and Path(res.report_path).is_file()
    assert prog.fractions[-1] == 1.0 and all(b >= a for a, b in zip(prog.fractions, prog.fractions[1:]))


def test_patch_model_on_nc_landsat_points(landsat_stack, nc_landsat, tmp_path):
    out = tmp_path / "p.mmlc"
    res = train("t_patch", [landsat_stack], str(nc_landsat / "landsat96_points.shp"), str(out),
                label_field="label", epochs=3, max_steps_per_epoch=8, seed=0, output_report=str(tmp_path / "r.html"))
    card = res.card
    assert card.head_kind == "patch" and card.num_classes == 7
    assert card.modalities[0].patch_size == 5 and card.modalities[0].patch_anchor == 2
    assert all(not c.name.startswith("class ") for c in card.classes)  # names from the string field
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert [h["epochs_seen"] for h in res.history] == [1.0, 2.0, 3.0]  # epoch_end reaches the history
    assert res.metric_name == "overall_accuracy" and res.best_metric > 1.0 / 7  # better than chance
    assert card.provenance["validation_pixels"] > 0 and card.provenance["train_pixels"] > 0


def test_real_prsanet_on_nc_landsat_two_modalities(nc_landsat, tmp_path):
    """The real PRSANet (if landed): its CE term falls and its epoch_end logs reach the history."""
    pytest.importorskip("mmlc.models.prsanet")
    from osgeo import gdal

    m1, m2 = str(tmp_path / "m1.vrt"), str(tmp_path / "m2.vrt")
    gdal.BuildVRT(m1, [str(nc_landsat / f"lsat7_2000_{b}.tif") for b in (10, 20, 30)], separate=True).FlushCache()
    gdal.BuildVRT(m2, [str(nc_landsat / f"lsat7_2000_{b}.tif") for b in (40, 50, 70)], separate=True).FlushCache()
    res = train("prsanet", [m1, m2], str(nc_landsat / "landsat96_points.shp"), str(tmp_path / "p.mmlc"),
                label_field="label", epochs=3, batch_size=32, max_steps_per_epoch=5, learning_rate=1e-3,
                output_report="")
    ce = [h["loss_ce"] for h in res.history]
    assert ce[-1] < ce[0]
    assert any(k.startswith("epoch_") for k in res.history[0])  # PRSANet.epoch_end values
    assert res.card.modalities[0].patch_size == 11 and res.card.build_kwargs["num_classes"] == 7
    assert res.best_metric > 1.0 / 7


def test_class_table_and_linear_sar_to_db(bigearthnet, tmp_path):
    from osgeo import gdal

    sc = ben_scenes(bigearthnet, 1)[0]
    src = gdal.Open(sc.inputs[1])
    db = src.ReadAsArray().astype(np.float64)
    lin_path = str(tmp_path / "sar_linear.tif")
    lin = gdal.GetDriverByName("GTiff").CreateCopy(lin_path, src)
    for i in range(2):
        lin.GetRasterBand(i + 1).WriteArray((10.0 ** (db[i] / 10.0)).astype(np.float32))
    lin = None
    table = tmp_path / "classes.csv"
    table.write_text("value,name,colour\n2,dense vegetation,#00aa00\n3,sparse vegetation,aacc00\n")
    prog = CallbackProgress()
    res = train("t_dense", [sc.inputs[0], lin_path], sc.labels, str(tmp_path / "m.mmlc"), classes=str(table),
                epochs=1, tile_size=32, max_steps_per_epoch=1, output_report="", progress=prog)
    card = res.card
    assert [(c.value, c.name, c.color) for c in card.classes] == [(2, "dense vegetation", "#00aa00"),
                                                                 (3, "sparse vegetation", "#aacc00")]
    assert any("not in the class table" in m for m in prog.messages)
    sar = card.modalities[1]
    assert sar.to_db is True  # linear intensity detected and converted once
    np.testing.assert_allclose(sar.mean, db.reshape(2, -1).mean(1), rtol=1e-4)
    np.testing.assert_allclose(sar.std, db.reshape(2, -1).std(1), rtol=1e-3)


def test_block_split_is_spatial_disjoint_and_guarded():
    labelled = np.zeros((100, 100), bool)
    labelled[::3, ::2] = True
    s = block_split(labelled, 0.25, 20, seed=1, guard=3)
    assert not (s.train & s.val).any()
    assert 0.15 < s.val.sum() / labelled.sum() < 0.45
    val_blocks = {(r // 20, c // 20) for r, c in zip(*np.nonzero(s.val))}
    train_blocks = {(r // 20, c // 20) for r, c in zip(*np.nonzero(s.train))}
    assert not val_blocks & train_blocks  # whole blocks, never single pixels
    from scipy import ndimage

    near = ndimage.binary_dilation(s.val, iterations=3)
    assert not (near & s.train).any()
    assert block_split(labelled, 0.0, 20).val.sum() == 0


def test_dense_sampler_aligns_modalities_and_is_class_aware():
    rng = np.random.default_rng(0)
    h = w = 48
    target = np.full((h, w), IGNORE, np.int64)
    target[:, :24] = 0
    target[:, 24:] = 1
    base = rng.normal(size=(1, h, w)).astype(np.float32)
    fine = np.kron(base, np.ones((2, 2), np.float32))  # modality 2 on a 2x finer grid
    scene = PreparedScene("s", [base, fine], target, target != IGNORE, np.zeros((h, w), bool), [1, 2])
    sampler = DenseTileSampler([scene], 16, 100, seed=5)
    plain = DenseTileSampler([scene], 16, 100, seed=5, max_draws=1)
    balanced = 0
    for i in range(100):
        (a, b), lab = sampler.item(0, i)
        assert a.shape == (1, 16, 16) and b.shape == (1, 32, 32) and lab.shape == (16, 16)
        np.testing.assert_array_equal(np.kron(a, np.ones((2, 2), np.float32)), b)
        counts = np.bincount(lab.ravel(), minlength=2)
        balanced += int(counts.min() > 0 and counts.max() / lab.size < 0.75)
    balanced_plain = 0
    for i in range(100):
        lab = plain.item(0, i)[1]
        counts = np.bincount(lab.ravel(), minlength=2)
        balanced_plain += int(counts.min() > 0 and counts.max() / lab.size < 0.75)
    # class-aware cropping (ASANet 4.2): ~1-(1-p)^10 of the crops qualify instead of ~p
    assert balanced >= 60 and balanced > balanced_plain + 30, (balanced, balanced_plain)
    again = sampler.item(0, 7)
    np.testing.assert_array_equal(again[0][0], sampler.item(0, 7)[0][0])  # pure function of (epoch, index)


def test_patch_sampler_geometry_and_reflect101_border():
    h, w = 10, 12
    ms = np.arange(h * w, dtype=np.float32).reshape(1, h, w)
    pan = np.arange(4 * h * 4 * w, dtype=np.float32).reshape(1, 4 * h, 4 * w)
    target = np.zeros((h, w), np.int64)
    scene = PreparedScene("s", [ms, pan], target, np.ones((h, w), bool), np.zeros((h, w), bool), [1, 4])
    sampler = PatchSampler([scene], [6, 24], [2, 8], seed=0, augment=True)
    assert not sampler.do_augment  # 6 != 2*2+1: not centred, so no flips
    idx = {(int(r), int(c)): i for i, (_, r, c) in enumerate(sampler.index)}
    (p_ms, p_pan), lab = sampler.item(0, idx[(0, 0)])
    ref_ms = np.pad(ms[0], 8, mode="reflect")[8 - 2:8 - 2 + 6, 8 - 2:8 - 2 + 6]
    ref_pan = np.pad(pan[0], 20, mode="reflect")[20 - 8:20 - 8 + 24, 20 - 8:20 - 8 + 24]
    np.testing.assert_array_equal(p_ms[0], ref_ms)
    np.testing.assert_array_equal(p_pan[0], ref_pan)
    assert p_ms[0, 2, 2] == ms[0, 0, 0] and p_ms[0, 0, 0] == ms[0, 2, 2]  # reflect-101 (edge not repeated)
    (p_ms, p_pan), _ = sampler.item(0, idx[(5, 7)])
    np.testing.assert_array_equal(p_ms[0], ms[0, 3:9, 5:11])
    np.testing.assert_array_equal(p_pan[0], pan[0, 12:36, 20:44])


def test_augment_is_identical_for_every_modality():
    x = np.random.default_rng(1).normal(size=(2, 8, 8)).astype(np.float32)
    lab = (x[0] > 0).astype(np.int64)
    for seed in range(8):
        (a, b), l2 = augment([x, x.copy()], lab, np.random.default_rng(seed))
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(l2, (a[0] > 0).astype(np.int64))


def test_lr_schedule_and_epoch_sharding():
    assert lr_factor(0, 100, 10, "poly", 1.0) == pytest.approx(1e-6)
    assert lr_factor(5, 100, 10, "poly", 1.0) == pytest.approx(0.5, abs=1e-6)
    assert lr_factor(10, 100, 10, "poly", 1.0) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "poly", 0.9) == pytest.approx(0.5 ** 0.9)
    assert lr_factor(50, 100, 0, "cosine", 1.0) == pytest.approx(0.5)
    assert lr_factor(80, 100, 0, "step", 1.0) == pytest.approx(0.01)
    full = epoch_order(10, 0, 2)
    shards = [epoch_order(10, 0, 2, r, 3) for r in range(3)]
    assert all(len(s) == 4 for s in shards)
    assert set(np.concatenate(shards)) == set(full)
    assert not np.array_equal(epoch_order(10, 0, 1), epoch_order(10, 0, 2))


def test_bad_parameters_raise_typed_errors(bigearthnet, tmp_path):
    sc = ben_scenes(bigearthnet, 1)
    with pytest.raises(InputError, match="unknown model"):
        train("nope", sc[0].inputs, sc[0].labels, str(tmp_path / "m.mmlc"))
    with pytest.raises(InputError, match="takes 2 input"):
        train("t_dense", sc[0].inputs[:1], sc[0].labels, str(tmp_path / "m.mmlc"))
    with pytest.raises(InputError, match="VALIDATION_FRACTION"):
        train("t_dense", sc[0].inputs, sc[0].labels, str(tmp_path / "m.mmlc"), validation_fraction=1.5)
    with pytest.raises(OutputError, match="does not exist"):
        train("t_dense", sc[0].inputs, sc[0].labels, str(tmp_path / "no" / "m.mmlc"))
    with pytest.raises(InputError, match="does not exist"):
        train("t_dense", [sc[0].inputs[0], str(tmp_path / "missing.tif")], sc[0].labels, str(tmp_path / "m.mmlc"))
    with pytest.raises(Cancelled):
        train("t_dense", sc[0].inputs, sc[0].labels, str(tmp_path / "m.mmlc"), tile_size=32, epochs=2,
              progress=CallbackProgress(cancel_after=2))
    assert not (tmp_path / "m.mmlc").exists() and not list(tmp_path.glob("*.html"))


def test_fine_tune_from_model_file_keeps_normalisation(dense_run, bigearthnet, tmp_path):
    res, out, _ = dense_run
    sc = ben_scenes(bigearthnet, 1)
    r2 = train("t_dense", sc[0].inputs, sc[0].labels, str(tmp_path / "ft.mmlc"), init_model=str(out), epochs=1,
               tile_size=32, max_steps_per_epoch=1, learning_rate=1e-9)
    assert r2.card.modalities[1].mean == res.card.modalities[1].mean
    assert r2.card.provenance["init_kind"] == "model_file"
    _, t1 = load_model_file(out)
    _, t2 = load_model_file(tmp_path / "ft.mmlc")
    assert torch.allclose(t1["a.weight"], t2["a.weight"], atol=1e-5)  # lr ~0: starts from, and stays at, the file


def resume_run(out: str, ben: str, sleep: float):
    """The run of the resume test (also used by its subprocesses): 4 short epochs."""
    slow = CallbackProgress(on_fraction=lambda f: time.sleep(sleep))
    return train("t_dense", None, None, out, scenes=ben_scenes(Path(ben), 1), epochs=4, tile_size=32, batch_size=4,
                 max_steps_per_epoch=3, seed=11, progress=slow)


_RESUME_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [{pkg!r}, {tests!r}]
    import test_training  # registers the tiny networks
    from mmlc.core.fitting.training import train, Scene
    from mmlc.core.progress import CallbackProgress
    r = test_training.resume_run(sys.argv[1], {ben!r}, {sleep})
    print("RESUMED_FROM", r.resumed_from_epoch, "EPOCHS", r.epochs_run)
""")


def test_resume_after_kill_9_continues_the_same_run(bigearthnet, tmp_path):
    script = tmp_path / "run.py"
    env = dict(os.environ, PYTHONPATH="")
    kw = dict(pkg=str(ROOT / "build" / "pkg"), tests=str(ROOT / "tests"), ben=str(bigearthnet))
    script.write_text(_RESUME_SCRIPT.format(sleep=0.25, **kw))
    out = tmp_path / "killed.mmlc"
    ck = resume_path_for(out)
    proc = subprocess.Popen([sys.executable, str(script), str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    t0 = time.time()
    while not ck.exists() and proc.poll() is None and time.time() - t0 < 60:
        time.sleep(0.05)
    assert ck.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no checkpoint in 60 s"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = int(torch.load(ck, weights_only=True)["epoch"])
    assert 1 <= done < 4 and not out.exists()
    fast = tmp_path / "fast.py"
    fast.write_text(_RESUME_SCRIPT.format(sleep=0.0, **kw))
    r = subprocess.run([sys.executable, str(fast), str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"RESUMED_FROM {done} EPOCHS 4" in r.stdout
    # the uninterrupted run with the same seed gives the same weights and history
    ref = tmp_path / "ref.mmlc"
    r2 = resume_run(str(ref), str(bigearthnet), 0.0)
    assert r2.resumed_from_epoch == 0 and r2.epochs_run == 4
    c1, t1 = load_model_file(out)
    c2, t2 = load_model_file(ref)
    for k in t1:  # equal up to float rounding (thread scheduling of CPU reductions differs by process)
        torch.testing.assert_close(t1[k], t2[k], rtol=1e-5, atol=1e-6)
    assert c1.provenance["best_metrics"] == pytest.approx(c2.provenance["best_metrics"], abs=1e-3)
    assert c1.provenance["best_epoch"] == c2.provenance["best_epoch"]


def test_dataset_folder_readers(tmp_path, spacenet6):
    root = tmp_path / "WHU"
    for d in ("optical", "sar", "lbl"):
        (root / d).mkdir(parents=True)
        for n in ("A1", "B2"):
            (root / d / f"{n}.tif").write_bytes(b"")
    (root / "train.txt").write_text("A1\n")
    sc = scenes_from_dataset("whu-opt-sar", root, "train")
    assert len(sc) == 1 and sc[0].label_divisor == 10 and sc[0].inputs[0].endswith("optical/A1.tif")
    with pytest.raises(InputError, match="unknown dataset kind"):
        scenes_from_dataset("mnist", root)
    with pytest.raises(InputError, match="not found"):
        scenes_from_dataset("pie-rgb-sar", root)
    x = scenes_from_dataset("xidian", spacenet6 / "xidian_layout_tile1", "train")
    assert x[0].inputs[0].endswith("ms4.tif") and x[0].labels.endswith("train.npy")
    meta = json.loads((spacenet6 / "xidian_layout_tile1" / "labels_info.json").read_text())
    assert meta


def test_recipe_patience_stops_early_and_zero_runs_every_epoch(landsat_stack, nc_landsat, tmp_path):
    """A recipe's early-stopping patience applies when the caller gives none; PATIENCE 0 turns it off.
    A learning rate of 1e-12 leaves the weights as they are, so the validation score never improves
    after epoch 1: with patience 1 the run stops after epoch 2 of 5."""
    import dataclasses

    from mmlc.models.registry import get_spec

    spec = get_spec("t_patch")
    register(dataclasses.replace(spec, name="t_patch_patient", recipe=dataclasses.replace(spec.recipe, patience=1)))
    common = dict(label_field="label", epochs=5, learning_rate=1e-12, max_steps_per_epoch=2, seed=0,
                  output_report="", baseline=False)
    labels = str(nc_landsat / "landsat96_points.shp")
    stopped = train("t_patch_patient", [landsat_stack], labels, str(tmp_path / "a.mmlc"), **common)
    assert stopped.epochs_run == 2 and stopped.best_epoch == 1
    every = train("t_patch_patient", [landsat_stack], labels, str(tmp_path / "b.mmlc"), patience=0, **common)
    assert every.epochs_run == 5
    assert get_spec("prsanet").recipe.patience == 20


def test_class_balance_reaches_the_sampler_and_the_card(landsat_stack, nc_landsat, tmp_path):
    """train(class_balance=P) draws by class weight (the sampler the run built says so), records P
    in the card's provenance, and refuses a power outside [0, 1] before reading any data."""
    from mmlc.core.fitting import run as run_module
    from mmlc.core.modelfiles.modelfile import read_card

    built = []
    original = run_module.TrainingRun.prepare

    def spy(self, *a, **k):
        out = original(self, *a, **k)
        built.append(out.sampler)
        return out

    labels = str(nc_landsat / "landsat96_points.shp")
    common = dict(label_field="label", epochs=1, max_steps_per_epoch=1, seed=0, output_report="", baseline=False)
    run_module.TrainingRun.prepare = spy
    try:
        res = train("t_patch", [landsat_stack], labels, str(tmp_path / "cb.mmlc"), class_balance=1.0, **common)
    finally:
        run_module.TrainingRun.prepare = original
    sampler = built[0]
    drawn = sampler.index[sampler.drawn(0)]
    counts = np.bincount([int(sampler.scenes[si].target[r, c]) for si, r, c in drawn])
    counts = counts[counts > 0]
    assert counts.max() / counts.min() < 2.5  # the points' classes differ up to ~10x in count
    assert read_card(res.model_path).provenance["class_balance"] == 1.0
    with pytest.raises(InputError, match="CLASS_BALANCE"):
        train("t_patch", ["/nonexistent.tif"], labels, str(tmp_path / "x.mmlc"), class_balance=1.5, **common)


def test_refit_trains_a_fresh_network_on_every_labelled_pixel(landsat_stack, nc_landsat, tmp_path):
    """With refit_epochs, the run with validation is followed by a fresh network trained on all
    labelled pixels (validation blocks included) for that many epochs; its weights are the ones
    written, the card says so, and the report's scores are the first run's. 0 turns it off."""
    import torch
    from mmlc.core.modelfiles.modelfile import load_model_file

    labels = str(nc_landsat / "landsat96_points.shp")
    common = dict(label_field="label", epochs=2, max_steps_per_epoch=2, seed=0, output_report="", baseline=False)
    plain = train("t_patch", [landsat_stack], labels, str(tmp_path / "plain.mmlc"), refit_epochs=0, **common)
    refit = train("t_patch", [landsat_stack], labels, str(tmp_path / "refit.mmlc"), refit_epochs=1, **common)
    card, state = load_model_file(refit.model_path)[:2]
    assert card.provenance["refit_epochs"] == 1
    # every labelled pixel: more than the first run trained on (its validation blocks and guard band added)
    assert card.provenance["refit_pixels"] > card.provenance["train_pixels"] == plain.card.provenance["train_pixels"]
    assert "refit_epochs" not in plain.card.provenance
    def scores(history):  # the logged values, without the timings
        return [{k: v for k, v in h.items() if "time" not in k and not k.endswith("_s")} for h in history]

    assert refit.best_metric == plain.best_metric and scores(refit.history) == scores(plain.history)  # same first run
    plain_state = load_model_file(plain.model_path)[1]
    assert any(not torch.equal(state[k], plain_state[k]) for k in state)  # but the weights kept are the refit's
    with pytest.raises(InputError, match="REFIT_EPOCHS"):
        train("t_patch", [landsat_stack], labels, str(tmp_path / "x.mmlc"), refit_epochs=-1, **common)


def test_the_recipes_refit_runs_only_on_label_sets_up_to_its_limit(landsat_stack, nc_landsat, tmp_path):
    """A recipe with refit_max_labels refits a label set of at most that many labelled pixels and
    skips a larger one, saying why in the log; an explicit refit_epochs is not limited (issue 21).
    ASANet and HFD-Net ship such a limit, PRSANet refits whatever the size."""
    import dataclasses

    from mmlc.core.fitting.training import refit_plan
    from mmlc.models.registry import get_spec

    spec = get_spec("t_patch")
    for name, limit in (("t_patch_refit_small", 100), ("t_patch_refit_large", 100_000)):
        register(dataclasses.replace(spec, name=name, recipe=dataclasses.replace(
            spec.recipe, refit_epochs=1, refit_max_labels=limit)))
    labels = str(nc_landsat / "landsat96_points.shp")  # 424 + ~150 labelled pixels: between the two limits
    common = dict(label_field="label", epochs=2, max_steps_per_epoch=2, seed=0, output_report="", baseline=False)
    progress = CallbackProgress()
    skipped = train("t_patch_refit_small", [landsat_stack], labels, str(tmp_path / "s.mmlc"), progress=progress,
                    **common)
    assert "refit_epochs" not in skipped.card.provenance
    assert any(line.startswith("no refit:") and "more than the 100 up to which" in line for line in progress.messages)
    forced = train("t_patch_refit_small", [landsat_stack], labels, str(tmp_path / "f.mmlc"), refit_epochs=1,
                   **common)
    assert forced.card.provenance["refit_epochs"] == 1
    refit = train("t_patch_refit_large", [landsat_stack], labels, str(tmp_path / "l.mmlc"), **common)
    assert refit.card.provenance["refit_epochs"] == 1 and 100 < refit.card.provenance["refit_pixels"] <= 100_000
    # the plan alone: EPOCHS caps it, 0 turns it off, the limit binds only the recipe's own refit
    dense = get_spec("asanet").recipe
    assert (dense.refit_epochs, dense.refit_max_labels) == (50, 100_000)
    assert get_spec("hfdnet").recipe.refit_max_labels == 100_000 and get_spec("prsanet").recipe.refit_max_labels is None
    assert refit_plan(dense, None, 50, 1418) == (50, "") and refit_plan(dense, None, 3, 1418) == (3, "")
    assert refit_plan(dense, None, 50, 100_001)[0] == 0 and refit_plan(dense, 20, 50, 10**7) == (20, "")
    assert refit_plan(dense, 0, 50, 1418) == (0, "") and refit_plan(get_spec("das2f").recipe, None, 30, 10) == (0, "")


def test_sparse_labels_get_the_recipes_minimum_batches_and_scratch_rate(bigearthnet, tmp_path):
    """A dense epoch over a few labelled pixels is min_batches_per_epoch batches, not one; a run
    from random weights uses the recipe's scratch_lr, fine-tuning (INIT_MODEL) its lr (issue 21)."""
    from osgeo import gdal

    sc = ben_scenes(bigearthnet, 1)[0]
    src = gdal.Open(sc.labels)
    full = src.ReadAsArray()
    sparse = np.zeros_like(full)
    sparse[::12, ::12] = full[::12, ::12]  # 100 of 14,400 pixels: far less than one 32 x 32 tile
    labels = str(tmp_path / "sparse_labels.tif")
    out = gdal.GetDriverByName("GTiff").CreateCopy(labels, src)
    out.GetRasterBand(1).WriteArray(sparse)
    out.GetRasterBand(1).SetNoDataValue(0)
    out = None
    common = dict(validation_fraction=0.0, output_report="", baseline=False, resume=False)
    CountingDense.steps = 0
    scratch = train("t_dense_sparse", sc.inputs, labels, str(tmp_path / "a.mmlc"), **common)
    assert CountingDense.steps == 2 * 3  # 2 epochs x 3 batches (without the minimum: 1 batch each)
    assert scratch.card.provenance["learning_rate"] == pytest.approx(2e-2)
    CountingDense.steps = 0
    tuned = train("t_dense_sparse", sc.inputs, labels, str(tmp_path / "b.mmlc"), init_model=scratch.model_path,
                  epochs=1, **common)
    assert CountingDense.steps == 3 and tuned.card.provenance["learning_rate"] == pytest.approx(1e-3)
    assert train("t_dense_sparse", sc.inputs, labels, str(tmp_path / "c.mmlc"), learning_rate=5e-3, epochs=1,
                 **common).card.provenance["learning_rate"] == pytest.approx(5e-3)  # the caller's rate wins
