"""Two gloo processes through mmlc's torchrun: streamed training where each rank draws its own
windows, and classification of a scene table shared among the ranks (rank 0 writes the mosaic)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_scene_table import make_table

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import json, os, sys
    sys.path[:0] = [{pkg!r}, {tests!r}]
    import torch
    torch.set_num_threads(1)
    import test_training  # registers t_dense
    from mmlc.core.data import streamed_samplers
    from mmlc.core.data.scene_table import read_scene_table
    from mmlc.core.engine.mosaic import classify_many
    from mmlc.core.fitting.training import train

    drawn = []
    plain_item = streamed_samplers.StreamedTileSampler.item

    def recording_item(self, epoch, index):
        drawn.append((epoch, index))
        return plain_item(self, epoch, index)

    streamed_samplers.StreamedTileSampler.item = recording_item
    out, table, info = sys.argv[1:4]
    rank = os.environ["RANK"]
    if sys.argv[4] == "train":
        r = train("t_dense", None, None, out, scenes=read_scene_table(table), epochs=2, tile_size=32, batch_size=4,
                  seed=1, device="cpu", stream=True, baseline=False)
        report = {{"drawn": drawn, "world": r.card.provenance["world_size"]}}
    else:  # a fresh launch: torch's process group cannot be joined again by a process that left it
        folder = os.path.join(info, "classified")
        os.makedirs(folder, exist_ok=True)
        many = classify_many(out, table, folder, device="cpu")
        report = {{"outputs": sorted(many.outputs), "mosaic": many.mosaic}}
    with open(os.path.join(info, sys.argv[4] + rank + ".json"), "w") as f:
        json.dump(report, f)
""")


def launch(script: Path, *args: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "build" / "pkg"))
    proc = subprocess.Popen([sys.executable, "-m", "mmlc.core.torchrun", "--standalone", "--nproc_per_node=2",
                             str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the workers too, not only the launcher
        proc.communicate()
        raise
    assert proc.returncode == 0, stdout[-2000:] + stderr[-4000:]


@pytest.mark.slow
def test_ranks_draw_their_own_windows_and_share_the_scenes(bigearthnet, tmp_path):
    table = make_table(bigearthnet, tmp_path)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(pkg=str(ROOT / "build" / "pkg"), tests=str(ROOT / "tests")))
    info = tmp_path / "info"
    info.mkdir()
    out = tmp_path / "ddp.mmlc"
    launch(script, str(out), str(table), str(info), "train")
    launch(script, str(out), str(table), str(info), "classify")
    ranks = [json.loads((info / f"train{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 for r in ranks)
    for epoch in (0, 1):
        mine = [{i for e, i in r["drawn"] if e == epoch} for r in ranks]
        assert mine[0] and mine[1] and not mine[0] & mine[1]  # no window drawn by both ranks
        assert len(mine[0]) == len(mine[1])
        assert sorted(mine[0] | mine[1]) == list(range(len(mine[0]) * 2))  # together: the whole epoch
    ranks = [json.loads((info / f"classify{r}.json").read_text()) for r in (0, 1)]
    names = [r["outputs"] for r in ranks]
    assert not set(names[0]) & set(names[1]) and len(names[0]) + len(names[1]) == 3
    assert ranks[0]["mosaic"] and ranks[1]["mosaic"] is None
    assert sorted(p.stem for p in (info / "classified").glob("*.tif")) == sorted(names[0] + names[1])
    assert (info / "classified" / "mosaic.vrt").is_file()
