"""Projects bigger than one scene (issue 19): streamed training memory and speed, classify over a table.

Three measures, each side by side in one run:

1. **Peak RSS of a 1-epoch streamed training, 8192^2 vs 1024^2 two-input scene, same iterations.**
   The 1024^2 scene is written once from the BigEarthNet sample (10-band UInt16 optical, 2-band
   Float32 SAR in dB, the weak labels), tiled from its 120^2 pixels; the 8192^2 scene is a VRT of
   8 x 8 copies of it (nothing more on disk). Each size trains in its own subprocess (peak =
   ``VmHWM``, torch and GDAL included; ``GDAL_CACHEMAX=64``) with the same network, tile, batch
   and number of steps. Target ratio <= 1.3.
2. **Windows per second, streamed vs in-memory training, one small scene (the 1024^2 one).** Both
   paths prepared in one process, the same network trained a batch at a time, alternating paths
   (same items); windows/s = windows / time of the steps (read + forward + backward + update).
   Target >= 0.9.
3. **Classify a table of 8 scenes vs the sum of 8 single runs** (``classify_many`` vs 8 calls of
   ``classify``), the 8 scenes being 4 BigEarthNet samples and the same 4 warped into other CRSs.
   Target total <= 1.1 x the sum.

Usage: PYTHONPATH=build/pkg python bench/bench_scale.py [--steps 40] [--skip-memory] [--net asanet]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BEN = ROOT / "resources" / "sample_data" / "bigearthnet"

CHILD = r"""
import json, sys, time
import torch
torch.set_num_threads(2)
from mmlc.core.data.datasets import Scene
from mmlc.core.fitting.training import train

def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

opt, sar, lab, out, steps, stream, net, variant = sys.argv[1:9]
t = time.perf_counter()
r = train(net, [opt, sar], lab, out, variant=variant or None, epochs=1, batch_size=4, tile_size=128,
          max_steps_per_epoch=int(steps), validation_fraction=0.0, device="cpu", seed=0, baseline=False,
          output_report="", stream={"1": True, "0": False}[stream])
print(json.dumps({"maxrss_mb": peak_rss_mb(), "seconds": time.perf_counter() - t,
                  "epoch_s": r.history[0]["time_s"], "windows": int(steps) * 4}))
"""


def tile_sample(folder: Path, side: int = 1024) -> tuple[str, str, str]:
    """The 1024^2 scene: each BigEarthNet sample file tiled to ``side`` pixels, same grid origin."""
    from osgeo import gdal

    s2 = sorted(glob.glob(str(BEN / "*33UUP_87_48__s2_10band_10m.tif")))[0]
    out = []
    for src in (s2, s2.replace("s2_10band_10m", "s1_vv_vh_db"), s2.replace("s2_10band_10m", "weak_label_s2rules")):
        ds = gdal.Open(src)
        a = ds.ReadAsArray()
        a = a[None] if a.ndim == 2 else a
        reps = -(-side // a.shape[-1])
        big = np.tile(a, (1, reps, reps))[:, :side, :side]
        dst = folder / Path(src).name.replace(".tif", f"_{side}.tif")
        drv = gdal.GetDriverByName("GTiff")
        o = drv.Create(str(dst), side, side, big.shape[0], ds.GetRasterBand(1).DataType,
                       options=["TILED=YES", "COMPRESS=DEFLATE"])
        o.SetGeoTransform(ds.GetGeoTransform())
        o.SetProjection(ds.GetProjection())
        for b in range(big.shape[0]):
            o.GetRasterBand(b + 1).WriteArray(big[b])
            nd = ds.GetRasterBand(b + 1).GetNoDataValue()
            if nd is not None:
                o.GetRasterBand(b + 1).SetNoDataValue(nd)
        o = None
        out.append(str(dst))
    return out[0], out[1], out[2]


def big_vrt(path: str, k: int = 8) -> str:
    """A VRT of k x k copies of ``path`` side by side (shifted geotransforms): a k-times wider scene."""
    from osgeo import gdal

    ds = gdal.Open(path)
    gt = ds.GetGeoTransform()
    w, h = ds.RasterXSize, ds.RasterYSize
    parts = []
    folder = Path(path).parent / "parts"
    folder.mkdir(exist_ok=True)
    for i in range(k):
        for j in range(k):
            p = folder / f"{Path(path).stem}_{i}_{j}.vrt"
            v = gdal.Translate(str(p), ds, format="VRT")
            v.SetGeoTransform((gt[0] + j * w * gt[1], gt[1], 0.0, gt[3] + i * h * gt[5], 0.0, gt[5]))
            v = None
            parts.append(str(p))
    out = str(Path(path).with_name(Path(path).stem + f"_x{k}.vrt"))
    gdal.BuildVRT(out, parts).FlushCache()
    return out


def run_child(args: list[str]) -> dict:
    env = dict(os.environ, GDAL_CACHEMAX="64", OMP_NUM_THREADS="2",
               PYTHONPATH=str(ROOT / "build" / "pkg") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def measure_memory(folder: Path, scene: tuple[str, str, str], steps: int, net: str, variant: str) -> None:
    big = tuple(big_vrt(p) for p in scene)
    small = run_child([*scene, str(folder / "small.mmlc"), str(steps), "1", net, variant])
    large = run_child([*big, str(folder / "large.mmlc"), str(steps), "1", net, variant])
    print(f"memory: peak RSS streamed 1-epoch training, {steps} steps of 4 x 128^2: 1024^2 {small['maxrss_mb']:.0f} MB "
          f"({small['seconds']:.1f} s), 8192^2 {large['maxrss_mb']:.0f} MB ({large['seconds']:.1f} s): "
          f"ratio {large['maxrss_mb'] / small['maxrss_mb']:.3f} (target <= 1.3)")


def measure_speed(scene: tuple[str, str, str], steps: int, net: str, variant: str) -> None:
    """In one process: both paths prepared on the same scene, the same network trained one batch
    at a time, alternating in-memory and streamed batches (same items); per path the time of
    reading the batch's windows and of the whole step (read + forward + backward + update)."""
    import torch
    from mmlc.core.data import streamed_prepare, streamed_samplers, windows
    from mmlc.core.data.datasets import Scene, load_scene
    from mmlc.core.data.prepare import prepare_data, resolve_classes
    from mmlc.core.data.samplers import DenseTileSampler, collate
    from mmlc.core.fitting.network import build_network
    from mmlc.models.registry import get_spec

    torch.set_num_threads(2)
    sc = Scene(list(scene[:2]), scene[2])
    datas = [load_scene(sc, [1, 1])]
    classes = resolve_classes(datas, None)
    mem = prepare_data(datas, ["optical", "sar"], [1, 1], classes=classes, validation_fraction=0.0, seed=0,
                       tile=128)
    st = streamed_prepare.prepare_streamed(windows.open_scenes([sc], [1, 1]), ["optical", "sar"], [1, 1], table=None,
                                  validation_fraction=0.0, seed=0, tile=128, given_cards=mem.modality_cards)
    n = 4 * (steps + 1)
    samplers = {"in-memory": DenseTileSampler(mem.scenes, 128, n, seed=0),
                "streamed": streamed_samplers.StreamedTileSampler(st.scenes, 128, n, seed=0)}
    torch.manual_seed(0)
    model, _ = build_network(get_spec(net), variant, mem.band_counts, len(classes), None)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), 1e-5)
    read = {k: 0.0 for k in samplers}
    total = {k: 0.0 for k in samplers}

    def step(name: str, i: int) -> None:
        t0 = time.perf_counter()
        inputs, target = collate([samplers[name].item(0, 4 * i + j) for j in range(4)])
        t1 = time.perf_counter()
        loss, _ = model.training_step(inputs, target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i > 0:  # step 0 warms both paths up
            read[name] += t1 - t0
            total[name] += time.perf_counter() - t0

    for i in range(steps + 1):
        for name in (("in-memory", "streamed") if i % 2 == 0 else ("streamed", "in-memory")):
            step(name, i)
    w = 4 * steps
    rate = {k: w / total[k] for k in samplers}
    print(f"speed: training windows/s on the 1024^2 scene ({net} {variant}, batch 4 x 128^2, {steps} steps per path, "
          f"alternating): in-memory {rate['in-memory']:.2f}, streamed {rate['streamed']:.2f}: ratio "
          f"{rate['streamed'] / rate['in-memory']:.3f} (target >= 0.9); reading the windows alone: in-memory "
          f"{1000 * read['in-memory'] / w:.1f} ms, streamed {1000 * read['streamed'] / w:.1f} ms a window")


def measure_many(folder: Path) -> None:
    from mmlc.core import api
    from mmlc.core.engine.mosaic import classify_many
    from osgeo import gdal

    s2 = sorted(glob.glob(str(BEN / "*__s2_10band_10m.tif")))[:4]
    rows = ["name,input_1,input_2"]
    for i, p in enumerate(s2):
        sar = p.replace("s2_10band_10m", "s1_vv_vh_db")
        rows.append(f"s{i},{p},{sar}")
        w = [str(folder / f"w{i}_{k}.tif") for k in (0, 1)]
        for src, dst in zip((p, sar), w):
            gdal.Warp(dst, src, dstSRS="EPSG:3035", resampleAlg="bilinear").FlushCache()
        rows.append(f"w{i},{w[0]},{w[1]}")
    table = folder / "eight.csv"
    table.write_text("\n".join(rows) + "\n")
    scenes = [r.split(",") for r in rows[1:]]
    one = folder / "single"
    many = folder / "many"
    one.mkdir()
    many.mkdir()
    api.classify("asanet-demo", scenes[0][1:], str(one / "warm.tif"), device="cpu")  # caches warm
    t = time.perf_counter()
    for name, a, b in scenes:
        api.classify("asanet-demo", [a, b], str(one / f"{name}.tif"), device="cpu")
    singles = time.perf_counter() - t
    t = time.perf_counter()
    classify_many("asanet-demo", str(table), str(many), device="cpu")
    total = time.perf_counter() - t
    print(f"many: classify a table of 8 scenes (asanet-demo, 4 BigEarthNet 120^2 + the same in EPSG:3035): "
          f"{total:.2f} s incl. the VRT mosaic vs {singles:.2f} s for 8 single runs: ratio {total / singles:.3f} "
          "(target <= 1.1)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--net", default="asanet")
    ap.add_argument("--variant", default="convnextv2_atto")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-many", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        scene = tile_sample(folder)
        if not a.skip_memory:
            measure_memory(folder, scene, a.steps, a.net, a.variant)
        if not a.skip_speed:
            measure_speed(scene, a.steps, a.net, a.variant)
        if not a.skip_many:
            measure_many(folder)


if __name__ == "__main__":
    main()
