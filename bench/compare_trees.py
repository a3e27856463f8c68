"""classify() of two checkouts side by side in one run: wall time, CPU time, peak memory, same map.

Two versions of the package cannot live in one process, so every measure is a subprocess of
its own (one warm-up classify, then one timed), run in alternating order (A B, B A, ...) so both
see the same machine; the figures to read are the medians of per-pair ratios B/A. Each run
prints the classified map's checksum (values + georeferencing): a refactoring must give the
same map. Cases: ``toy`` (the overhead benchmark's net, 2048 x 2048, see bench_inference.py),
``light`` (the same net 1 channel wide: reading, blending and writing dominate),
``toy_mask`` (same, cut to an extent and a raster mask with a hole), ``patch`` (the tests'
tiny patch network on the SpaceNet 6 MS + PAN sample), ``asanet`` (asanet-demo, 2048 x 2048
10-band UInt16 + SAR).

Usage (old commit in a temporary worktree, each tree with its build/pkg/mmlc link):
    git worktree add /tmp/old <commit>; mkdir -p /tmp/old/build/pkg; ln -sfn ../.. /tmp/old/build/pkg/mmlc
    python bench/compare_trees.py /tmp/old . toy:7,patch:5,toy_mask:3,asanet:3
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PX, X0, Y0 = 0.5, 590000.0, 5750000.0  # bench_inference.write_raster's grid


def _med(v: list[float]) -> float:
    return sorted(v)[len(v) // 2]


def measure(tree: str, case: str, folder: Path) -> dict:
    """In the subprocess: one warm-up classify on ``tree``'s package, then one timed."""
    sys.path.insert(0, f"{tree}/bench")
    import bench_inference as bi
    import torch
    from mmlc.core.engine.classify import classify
    from mmlc.models.registry import ModalitySpec, ModelSpec, register
    from osgeo import gdal

    register(ModelSpec("bench_fcn", bi.BenchFCN, "dense", (ModalitySpec("optical", 3), ModalitySpec("sar", 2)),
                       lambda b: {"in_channels": list(b)}))
    torch.manual_seed(0)
    kw: dict = dict(tile_size=256, overlap=32, batch_size=4, device="cpu", precision="fp32")
    model: object = folder / "bench.mmlc"
    inputs = [str(folder / "optical.tif"), str(folder / "sar.tif")]
    if case == "light":
        model = folder / "light.mmlc"
    elif case == "toy_mask":
        kw.update(mask=str(folder / "mask.tif"), extent=(X0 + 128 * PX, Y0 - 1920 * PX, X0 + 1920 * PX, Y0 - 128 * PX))
    elif case == "asanet":
        model, inputs = "asanet-demo", [str(folder / "a" / "optical.tif"), str(folder / "a" / "sar.tif")]
    elif case == "patch":
        sys.path.insert(0, f"{tree}/tests")
        import test_inference as ti  # registers the tests' tiny patch network

        sn = Path(tree) / "resources/sample_data/share_alike/spacenet6"
        own = Path(tempfile.mkdtemp(dir=folder))
        ms = sn / "ms1_2m_uint16.tif"
        model = ti.make_patch_model(own / "patch.mmlc")
        inputs = [str(ms), str(ti.exact_pan(sn / "pan1.tif", ms, own / "pan.tif"))]
        kw = dict(device="cpu", precision="fp32")
    elif case != "toy":
        raise SystemExit(f"unknown case {case!r}")
    out = Path(tempfile.mkdtemp(dir=folder)) / "classes.tif"
    classify(model, inputs, str(out), **kw)  # warm-up
    t, c = time.perf_counter(), time.process_time()
    res = classify(model, inputs, str(out), **kw)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    ds = gdal.Open(res.output)
    digest = hashlib.md5(ds.ReadAsArray().tobytes() + repr(ds.GetGeoTransform()).encode()).hexdigest()
    ds = None
    with open("/proc/self/status") as f:
        hwm = next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM"))
    return {"wall": wall, "cpu": cpu, "read": res.read_cpu_seconds, "write": res.write_cpu_seconds,
            "valid": res.valid_pixels, "hwm_mb": hwm / 1024, "map": digest}


def run_child(tree: str, case: str, folder: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=f"{os.path.abspath(tree)}/build/pkg", QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, __file__, "--child", os.path.abspath(tree), case, str(folder)],  # nosec B603: this script, fixed arguments
                         env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{tree} {case}: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_data(tree: str, folder: Path) -> None:
    """The toy model file, the 2048 x 2048 inputs (3-band Byte and 10-band UInt16 optical, SAR)
    and a mask raster at 4x the pixel size over the middle with a hole."""
    sys.path.insert(0, f"{tree}/bench")
    sys.path.insert(0, f"{tree}/build/pkg")
    import bench_inference as bi
    import numpy as np
    import torch
    from mmlc.core.classes import default_classes
    from mmlc.core.modelfiles.modelfile import ModalityCard, ModelCard, save_model_file
    from osgeo import gdal, osr

    torch.manual_seed(0)
    net = bi.BenchFCN([3, 2], 4).eval()
    card = ModelCard("bench_fcn", {"in_channels": [3, 2], "num_classes": 4}, "dense",
                     [ModalityCard("optical", 3, mean=[128.0] * 3, std=[50.0] * 3),
                      ModalityCard("sar", 2, mean=[-12.0] * 2, std=[5.0] * 2)],
                     default_classes([1, 2, 3, 4]), tile_size=256, overlap=32)
    save_model_file(folder / "bench.mmlc", card, net.state_dict())
    light = bi.BenchFCN([3, 2], 4, width=1).eval()  # next to no forward: the engine's own costs
    card.build_kwargs["width"] = 1
    save_model_file(folder / "light.mmlc", card, light.state_dict())
    bi.make_inputs(folder, 2048)
    (folder / "a").mkdir()
    bi.make_inputs(folder / "a", 2048, 10)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32631)
    ds = gdal.GetDriverByName("GTiff").Create(str(folder / "mask.tif"), 400, 400, 1, gdal.GDT_Byte)
    ds.SetGeoTransform((X0 + 224 * PX, 4 * PX, 0.0, Y0 - 224 * PX, 0.0, -4 * PX))
    ds.SetProjection(srs.ExportToWkt())
    m = np.ones((400, 400), np.uint8)
    m[150:250, 150:250] = 0
    ds.GetRasterBand(1).WriteArray(m)
    ds = None


def main(a: str, b: str, cases: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_data(b, folder)
        print(f"A = {a}\nB = {b}")
        for spec in cases.split(","):
            case, pairs = spec.split(":")[0], int(spec.split(":")[1])
            rows: dict[str, list[dict]] = {"A": [], "B": []}
            wall, cpu = [], []
            for k in range(pairs):
                got = {}
                for side in ("A", "B") if k % 2 == 0 else ("B", "A"):
                    got[side] = run_child(a if side == "A" else b, case, folder)
                    rows[side].append(got[side])
                wall.append(got["B"]["wall"] / got["A"]["wall"])
                cpu.append(got["B"]["cpu"] / got["A"]["cpu"])
                print(f"{case} pair {k + 1}: wall A {got['A']['wall']:.2f} s B {got['B']['wall']:.2f} s; "
                      f"CPU A {got['A']['cpu']:.2f} s B {got['B']['cpu']:.2f} s; peak RSS A {got['A']['hwm_mb']:.0f} MB "
                      f"B {got['B']['hwm_mb']:.0f} MB; same map: {got['A']['map'] == got['B']['map']}", flush=True)
            for side in "AB":
                r = rows[side]
                print(f"{case} {side}: medians wall {_med([x['wall'] for x in r]):.2f} s, CPU {_med([x['cpu'] for x in r]):.2f} s, "
                      f"reader CPU {_med([x['read'] for x in r]):.2f} s, blend+write CPU {_med([x['write'] for x in r]):.2f} s, "
                      f"peak RSS {_med([x['hwm_mb'] for x in r]):.0f} MB")
            print(f"{case}: B/A median of per-pair ratios: wall {_med(wall):.3f} ({', '.join(f'{x:.3f}' for x in wall)}), "
                  f"CPU {_med(cpu):.3f} ({', '.join(f'{x:.3f}' for x in cpu)})", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "--child":
        print(json.dumps(measure(sys.argv[2], sys.argv[3], Path(sys.argv[4]))))
    else:
        main(sys.argv[1], sys.argv[2], sys.argv[3])
