"""Two CPU processes with gloo through torchrun: sharded epochs, all-reduced metrics, rank 0 writes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mmlc.core.fitting.ddp import store_environment, torch_has_libuv

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {pkg!r})
    import torch, torch.nn as nn, torch.nn.functional as F
    torch.set_num_threads(1)
    from mmlc.models.registry import IGNORE_INDEX, ModalitySpec, ModelSpec, Recipe, register
    from mmlc.core.fitting.training import train, Scene

    class DdpNet(nn.Module):
        def __init__(self, num_classes, optical_channels=10, sar_channels=2):
            super().__init__()
            self.a = nn.Conv2d(optical_channels, 8, 3, padding=1)
            self.b = nn.Conv2d(sar_channels, 8, 3, padding=1)
            self.out = nn.Conv2d(8, num_classes, 1)
        def forward(self, x, s):
            return self.out(torch.relu(self.a(x) + self.b(s)))
        def training_step(self, inputs, target):
            return F.cross_entropy(self(*inputs), target, ignore_index=IGNORE_INDEX), {{}}

    register(ModelSpec("t_ddp", DdpNet, "dense", (ModalitySpec("optical", 10), ModalitySpec("sar", 2)),
                       lambda b: {{"optical_channels": b[0], "sar_channels": b[1]}}, Recipe(lr=5e-3)))
    b = {ben!r}
    r = train("t_ddp", [b + "s2_10band_10m.tif", b + "s1_vv_vh_db.tif"], b + "weak_label_s2rules.tif", sys.argv[1],
              epochs=1, batch_size=2, tile_size=32, max_steps_per_epoch=3, device="cpu", seed=0)
    line = " ".join(str(v) for v in ("RANK", os.environ.get("RANK"), "WORLD", r.card.provenance["world_size"],
                    "VALPIX", r.card.provenance["validation_pixels"], "SCORED", r.metrics.n_pixels))
    with open(os.path.join(sys.argv[2], "rank" + os.environ["RANK"] + ".txt"), "w") as f:  # stdout interleaves
        f.write(line)
""")


@pytest.mark.slow
def test_two_process_gloo_training(bigearthnet, tmp_path):
    script = tmp_path / "ddp_run.py"
    ben = str(bigearthnet / "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48__")
    script.write_text(SCRIPT.format(pkg=str(ROOT / "build" / "pkg"), ben=ben))
    out = tmp_path / "out" / "ddp.mmlc"
    out.parent.mkdir()
    info = tmp_path / "ranks"
    info.mkdir()
    # mmlc's torchrun: plain torchrun on a torch with libuv, and it also works on one without (Debian's)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "build" / "pkg"))
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "mmlc.core.torchrun", "--standalone", "--nproc_per_node=2",
                             str(script), str(out), str(info)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the workers too, not only the launcher
        proc.communicate()
        raise
    took = time.time() - t0
    assert proc.returncode == 0, stdout[-2000:] + stderr[-4000:]
    lines = sorted(p.read_text() for p in info.iterdir())
    assert len(lines) == 2 and lines[0].startswith("RANK 0 WORLD 2") and lines[1].startswith("RANK 1 WORLD 2")
    parts = lines[0].split()
    # each rank scored half the validation tiles; the all-reduced matrix holds every validation pixel
    assert int(parts[5]) == int(parts[7]) > 0
    assert lines[0].split("VALPIX")[1] == lines[1].split("VALPIX")[1]
    assert sorted(p.name for p in out.parent.iterdir()) == ["ddp.mmlc", "ddp.mmlc.report.html"]
    assert took < 60


def test_store_environment_matches_this_torch(monkeypatch):
    """USE_LIBUV=0 exactly when this torch has no libuv store, and a user's own setting wins."""
    monkeypatch.delenv("USE_LIBUV", raising=False)
    assert store_environment() == ({} if torch_has_libuv() else {"USE_LIBUV": "0"})
    monkeypatch.setenv("USE_LIBUV", "1")
    assert store_environment() == {}


def test_launcher_store_runs_without_libuv(monkeypatch):
    """mmlc's torchrun gives torch's launcher a store on the classic back end, which every torch has."""
    import importlib

    from mmlc.core.fitting.ddp import _STORE_USERS, stores_without_libuv

    for name in _STORE_USERS:  # undone after the test
        module = importlib.import_module(name)
        monkeypatch.setattr(module, "TCPStore", module.TCPStore)
    cls = stores_without_libuv()
    assert stores_without_libuv() is cls  # idempotent
    for name in _STORE_USERS:
        assert importlib.import_module(name).TCPStore is cls, name
    store = cls("127.0.0.1", 0, 1, True, wait_for_workers=False)
    assert store.libuvBackend is False
    store.set("key", "value")
    assert store.get("key") == b"value"
