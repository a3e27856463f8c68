"""mmlc under ``qgis_process`` against the headless CLI, same data, side by side (issue 21).

For a short PRSANet training on the North Carolina Landsat scene (west half of the labels) and a
classify with every built-in model (plus the NC PRSANet just trained), each case runs
``python -m mmlc ...`` and ``qgis_process run mmlc:...`` alternately (a b, b a, ...) and prints
the median of the per-pair ratios qgis_process / CLI, twice:

* ``command``: wall time of the whole process (what a script calling either one waits for;
  includes QGIS's own start-up, ~2.5 s of CPU more than Python + torch here);
* ``algorithm``: wall time inside the core call (``mmlc.core.api.classify``/``train``), taken by a
  ``sitecustomize`` that this script puts on both processes' PYTHONPATH (nothing in mmlc itself);
  under qgis_process, plus any wait for torch's background import just before it (``ui/warmup.wait``:
  the CLI imports torch inside the call, so the wait belongs to the comparison);
* ``cpu``: CPU seconds of the whole process (all threads) inside that call: less sensitive than
  wall time to the other jobs sharing the cores, so the steadier figure on a loaded machine.

``--before`` adds a third variant, qgis_process with ``MMLC_KEEP_TORCH_BLAS_BINDING=1`` (torch's
BLAS calls left bound to QGIS's OpenBLAS, as before the fix in ``core/runtime/torch_blas.py``).
Both runs of a pair get the same extent (the CLI's ``EXTENT`` is xmin,ymin,xmax,ymax, Processing's
xmin,xmax,ymin,ymax [CRS]; checked: the core call receives the same tuple from both).
``--before-gc`` adds qgis_process as it was in session 6 (``MMLC_KEEP_GC=1``: Python's collector
walks QGIS's whole heap in every full collection during the run, core/runtime/collector.py).
``--before-deepbind`` adds qgis_process as it was in session 7 (``MMLC_TORCH_DEEPBIND=0``: torch's
library loaded the usual way, its symbols looked up through QGIS's global scope first,
core/runtime/torch_preload.py).
``--warm`` adds a CLI and a qgis_process variant whose processes import torch and mmlc's modules
before the core call (the state of a desktop session after its first mmlc run; under qgis_process
every command is a first run), compared with each other.
Cases: training; the NC classification on a 96 x 96 window and on the whole scene (the issue's
own case); each built-in model on its demo patch, and the dense/patch demos also on the patch
tiled into one VRT, 2 x 2 (per-pixel PRSANet) or 16 x 16 (1920 x 1920 px, the dense models):
timing only, where per-pixel work outweighs the fixed costs.
Target: both ratios <= 1.15. Run: ``.venv/bin/python bench/bench_qgis_overhead.py [--repeat 3]
[--only prsanet] [--before] [--before-gc] [--before-deepbind] [--warm]``; on a 2-core machine one run takes 30-60 minutes.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "build" / "pkg"))
SAMPLES = ROOT / "resources" / "sample_data"
NC = SAMPLES / "share_alike" / "nc_landsat"
BEN = SAMPLES / "bigearthnet"
SN6 = SAMPLES / "share_alike" / "spacenet6"
HELD_OUT = "S1A_IW_GRDH_1SDV_20170617T064724_29UPU_36_85"

PROBE = '''
import os, sys, time
if os.environ.get("MMLC_BENCH_WARM"):  # what a desktop session has loaded after its first mmlc run
    if os.environ["MMLC_BENCH_WARM"] == "qgis":  # the desktop's first run preloaded torch's library
        from mmlc.core.runtime.torch_preload import preload_torch
        preload_torch()
    import torch, mmlc.models, mmlc.core.engine.classify, mmlc.core.fitting.training  # noqa: F401
_waited = [0.0, 0.0]  # wall, CPU seconds a QGIS run spent waiting for the torch warm-up (ui/warmup.wait)
def _wrap_wait():
    import mmlc.ui.warmup as warmup  # stdlib only; the CLI never calls it
    fn = warmup.wait
    def timed_wait(*a, **k):
        t, c = time.perf_counter(), time.process_time()
        try:
            return fn(*a, **k)
        finally:
            _waited[0] += time.perf_counter() - t
            _waited[1] += time.process_time() - c
    warmup.wait = timed_wait
def _wrap(name):
    import mmlc.core.api as api
    fn = getattr(api, name)
    def timed(*a, **k):
        t, c = time.perf_counter(), time.process_time()
        try:
            return fn(*a, **k)
        finally:  # a wait for torch just before the call counts as part of it (the CLI imports torch inside)
            sys.stderr.write(f"[mmlc-bench] {name} %.3f cpu %.3f\\n" % (time.perf_counter() - t + _waited[0],
                                                                      time.process_time() - c + _waited[1]))
            sys.stderr.flush()
            _waited[0] = _waited[1] = 0.0
    setattr(api, name, timed)
try:
    _wrap_wait(); _wrap("classify"); _wrap("train")
except Exception as e:  # the bench reports the missing figure
    sys.stderr.write(f"[mmlc-bench] probe failed: {e}\\n")
'''


@dataclass
class Case:
    name: str
    op: str                 # classify | train
    params: dict[str, str]  # Processing ids -> values (paths, numbers)
    extent: tuple[float, float, float, float] | None = None  # xmin, ymin, xmax, ymax in INPUT_1's CRS
    crs: str = ""


def window(path: Path, size: int, bottom: bool = False) -> tuple[tuple[float, float, float, float], str]:
    """A size x size pixel window of ``path`` (centred, or bottom centre) and its EPSG code."""
    from osgeo import gdal, osr

    ds = gdal.Open(str(path))
    x0, dx, _, y0, _, dy = ds.GetGeoTransform()
    c0 = (ds.RasterXSize - size) // 2
    r0 = ds.RasterYSize - size if bottom else (ds.RasterYSize - size) // 2
    srs = osr.SpatialReference(wkt=ds.GetProjection())
    srs.AutoIdentifyEPSG()
    code = srs.GetAuthorityCode(None)
    return (x0 + c0 * dx, y0 + (r0 + size) * dy, x0 + (c0 + size) * dx, y0 + r0 * dy), (f"EPSG:{code}" if code else "")


def tiled_vrt(src: str, times: int, out: Path) -> str:
    """A VRT of ``times`` x ``times`` copies of ``src`` side by side (same CRS, grid continued):
    a bigger raster for timing only; its pixels repeat the source's, so no map read from it means anything."""
    from osgeo import gdal

    ds = gdal.Open(src)
    w, h = ds.RasterXSize, ds.RasterYSize
    x0, dx, rx, y0, ry, dy = ds.GetGeoTransform()
    bands = []
    for b in range(1, ds.RasterCount + 1):
        band = ds.GetRasterBand(b)
        dtype = gdal.GetDataTypeName(band.DataType)
        nodata = band.GetNoDataValue()
        sources = "".join(
            f'<SimpleSource><SourceFilename relativeToVRT="0">{src}</SourceFilename><SourceBand>{b}</SourceBand>'
            f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
            f'<DstRect xOff="{i * w}" yOff="{j * h}" xSize="{w}" ySize="{h}"/></SimpleSource>'
            for j in range(times) for i in range(times))
        nd = f"<NoDataValue>{nodata!r}</NoDataValue>" if nodata is not None else ""
        bands.append(f'<VRTRasterBand dataType="{dtype}" band="{b}">{nd}{sources}</VRTRasterBand>')
    srs = ds.GetProjection().replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    out.write_text(f'<VRTDataset rasterXSize="{w * times}" rasterYSize="{h * times}"><SRS>{srs}</SRS>'
                   f"<GeoTransform>{x0!r}, {dx!r}, {rx!r}, {y0!r}, {ry!r}, {dy!r}</GeoTransform>"
                   + "".join(bands) + "</VRTDataset>\n")
    return str(out)


def nc_inputs(tmp: Path) -> tuple[str, str, str]:
    """Two 3-band VRTs of the NC scene (bands 1-3, 4, 5, 7) and its labels cut to the west half."""
    from osgeo import gdal

    m1, m2, west = str(tmp / "nc_m1.vrt"), str(tmp / "nc_m2.vrt"), str(tmp / "nc_labels_west.tif")
    gdal.BuildVRT(m1, [str(NC / f"lsat7_2000_{b}.tif") for b in (10, 20, 30)], separate=True).FlushCache()
    gdal.BuildVRT(m2, [str(NC / f"lsat7_2000_{b}.tif") for b in (40, 50, 70)], separate=True).FlushCache()
    src = gdal.Open(str(NC / "landsat96_labelled_pixels.tif"))
    labels = src.ReadAsArray()
    nodata = src.GetRasterBand(1).GetNoDataValue()
    labels[:, labels.shape[1] // 2:] = nodata
    out = gdal.GetDriverByName("GTiff").CreateCopy(west, src)
    out.GetRasterBand(1).WriteArray(labels)
    out = None
    return m1, m2, west


def cli_command(case: Case, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "mmlc", case.op]
    for k, v in case.params.items():
        cmd += [f"--{k}", v]
    if case.extent:
        cmd += ["--EXTENT", ",".join(f"{v:.6f}" for v in case.extent)]
    return cmd + [f"--{'OUTPUT' if case.op == 'classify' else 'OUTPUT_MODEL'}", str(out)]


def qgis_command(case: Case, out: Path) -> list[str]:
    from mmlc.tools.qgis_env import qgis_process_binary

    cmd = [qgis_process_binary(), "run", f"mmlc:{case.op}", "--"] + [f"{k}={v}" for k, v in case.params.items()]
    if case.extent:
        x0, y0, x1, y1 = case.extent
        cmd.append(f"EXTENT={x0:.6f},{x1:.6f},{y0:.6f},{y1:.6f}" + (f" [{case.crs}]" if case.crs else ""))
    return cmd + [f"{'OUTPUT' if case.op == 'classify' else 'OUTPUT_MODEL'}={out}"]


def run_once(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(whole-command wall s, in-algorithm wall s, in-algorithm CPU s) of one run; raises with the output on failure."""
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t
    found = re.findall(r"\[mmlc-bench\] (?:classify|train) ([\d.]+) cpu ([\d.]+)", p.stderr + p.stdout)
    if p.returncode != 0 or not found:
        raise RuntimeError(f"{' '.join(cmd[:4])}... failed ({p.returncode}):\n{(p.stdout + p.stderr)[-2000:]}")
    return wall, float(found[-1][0]), float(found[-1][1])


def median(v: list[float]) -> float:
    s = sorted(v)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def compare(case: Case, variants: dict[str, tuple[list[str], dict]], repeat: int) -> None:
    """Alternate the variants ``repeat`` times (order reversed every other round) and print the
    median per-round ratios of each qgis_process variant to the CLI."""
    names = list(variants)
    times: dict[str, list[tuple[float, float, float]]] = {k: [] for k in names}
    for r in range(repeat):
        for k in (names if r % 2 == 0 else names[::-1]):
            cmd, env = variants[k]
            times[k].append(run_once(cmd, env))
    for k in names[1:]:
        if k == "cli, warm":
            continue
        cli = times["cli, warm" if k.endswith(", warm") else "cli"]
        cmd_r = [q[0] / c[0] for q, c in zip(times[k], cli)]
        alg_r = [q[1] / c[1] for q, c in zip(times[k], cli)]
        cpu_r = [q[2] / c[2] for q, c in zip(times[k], cli)]
        print(f"{case.name}: {k} / {'cli, warm' if k.endswith(', warm') else 'cli'}  command {median(cmd_r):.3f} (pairs {', '.join(f'{x:.2f}' for x in cmd_r)}; "
              f"median {median([t[0] for t in times[k]]):.1f} s vs {median([t[0] for t in cli]):.1f} s)  "
              f"algorithm {median(alg_r):.3f} (pairs {', '.join(f'{x:.2f}' for x in alg_r)}; "
              f"median {median([t[1] for t in times[k]]):.1f} s vs {median([t[1] for t in cli]):.1f} s)  "
              f"cpu {median(cpu_r):.3f} (pairs {', '.join(f'{x:.2f}' for x in cpu_r)}; "
              f"median {median([t[2] for t in times[k]]):.1f} s vs {median([t[2] for t in cli]):.1f} s)", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="rounds per case (each runs every variant once)")
    ap.add_argument("--only", default="", help="run only cases whose name contains this text")
    ap.add_argument("--before", action="store_true", help="also run qgis_process with the BLAS binding left alone")
    ap.add_argument("--warm", action="store_true",
                    help="also run both with torch and mmlc's modules imported before the core call (a desktop "
                         "session's second and later runs); prints 'warm' ratios")
    ap.add_argument("--before-gc", action="store_true",
                    help="also run qgis_process as in session 6: the collector walks QGIS's heap during the run "
                         "(MMLC_KEEP_GC=1)")
    ap.add_argument("--before-deepbind", action="store_true",
                    help="also run qgis_process as in session 7: torch's library loaded without RTLD_DEEPBIND "
                         "(MMLC_TORCH_DEEPBIND=0)")
    args = ap.parse_args()

    from mmlc.core.modelfiles.builtin import list_builtin
    from mmlc.tools.qgis_env import enable_plugin, qgis_process_binary

    try:
        qgis_process_binary()
    except FileNotFoundError as e:
        print(f"skipped: {e}")
        return 0

    with tempfile.TemporaryDirectory(prefix="mmlc-bench-qgis-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "probe").mkdir()
        (tmp / "probe" / "sitecustomize.py").write_text(PROBE)
        qenv = enable_plugin(ROOT / "build" / "qgis-profile")
        qenv["PYTHONPATH"] = os.pathsep.join([str(tmp / "probe"), qenv["PYTHONPATH"]])
        cenv = dict(os.environ, GDAL_PAM_ENABLED="NO",
                    PYTHONPATH=os.pathsep.join([str(tmp / "probe"), str(ROOT / "build" / "pkg")]))
        m1, m2, west = nc_inputs(tmp)
        nc_model = tmp / "nc_prsanet.mmlc"
        train = Case("train prsanet NC west half (2 epochs)", "train",
                     {"ARCHITECTURE": "prsanet", "INPUT_1": m1, "INPUT_2": m2, "LABELS": west, "EPOCHS": "2",
                      "OUTPUT_REPORT": str(tmp / "report.html")})
        cases = [train]
        ext, crs = window(Path(m1), 96)
        cases.append(Case("classify prsanet NC (trained above), 96 x 96 px", "classify",
                          {"MODEL": str(nc_model), "INPUT_1": m1, "INPUT_2": m2}, ext, crs))
        # the issue's own case: the whole NC scene (CLI 56 s vs qgis_process 131 s when it was filed)
        cases.append(Case("classify prsanet NC (trained above), whole scene 489 x 443 px", "classify",
                          {"MODEL": str(nc_model), "INPUT_1": m1, "INPUT_2": m2}))
        ben = (str(BEN / f"{HELD_OUT}__s2_10band_10m.tif"), str(BEN / f"{HELD_OUT}__s1_vv_vh_db.tif"))
        built = set(list_builtin())
        for model, inputs, size, note in (
                ("asanet-demo", ben, 0, "BigEarthNet 120 x 120 px"),
                ("prsanet-demo", ben, 0, "BigEarthNet 120 x 120 px"),
                ("hfdnet-demo", ben[1:], 0, "BigEarthNet SAR 120 x 120 px"),
                ("das2f-demo", (str(SN6 / "ms2_2m_uint16.tif"), str(SN6 / "pan2.tif")), 16, "SpaceNet 6, 16 x 16 px")):
            if model not in built:
                print(f"{model}: not built (make models), skipped")
                continue
            params = {"MODEL": model, **{f"INPUT_{i + 1}": p for i, p in enumerate(inputs)}}
            ext, crs = window(Path(inputs[0]), size, bottom=True) if size else (None, "")
            cases.append(Case(f"classify {model}, {note}", "classify", params, ext, crs))
            # bigger rasters than the 120 x 120 patches, where per-pixel work outweighs the fixed costs
            times = {"asanet-demo": 16, "hfdnet-demo": 16, "prsanet-demo": 2}.get(model)
            if times:
                big = {f"INPUT_{i + 1}": tiled_vrt(p, times, tmp / f"{model}_tiled_{i + 1}.vrt")
                       for i, p in enumerate(inputs)}
                cases.append(Case(f"classify {model}, the patch tiled {times} x {times} "
                                  f"({120 * times} x {120 * times} px, timing only)", "classify",
                                  {"MODEL": model, **big}))
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
              f"{args.repeat} rounds per case", flush=True)
        cases = [c for c in cases if not args.only or args.only in c.name]
        if any(c.params.get("MODEL") == str(nc_model) for c in cases):
            run_once(cli_command(train, nc_model), cenv)  # the NC model that case needs (not timed)
        for case in cases:
            suffix = ".tif" if case.op == "classify" else ".mmlc"
            variants = {"cli": (cli_command(case, tmp / f"cli{suffix}"), cenv),
                        "qgis_process": (qgis_command(case, tmp / f"qgis{suffix}"), qenv)}
            if args.warm:
                variants["cli, warm"] = (cli_command(case, tmp / f"cliwarm{suffix}"), dict(cenv, MMLC_BENCH_WARM="1"))
                variants["qgis_process, warm"] = (qgis_command(case, tmp / f"qgiswarm{suffix}"),
                                                  dict(qenv, MMLC_BENCH_WARM="qgis"))
            if args.before_gc:
                variants["qgis_process, as in session 6"] = (
                    qgis_command(case, tmp / f"gc{suffix}"), dict(qenv, MMLC_KEEP_GC="1"))
            if args.before_deepbind:
                variants["qgis_process, as in session 7"] = (
                    qgis_command(case, tmp / f"deep{suffix}"), dict(qenv, MMLC_TORCH_DEEPBIND="0"))
            if args.before:
                variants["qgis_process, BLAS binding left alone"] = (
                    qgis_command(case, tmp / f"before{suffix}"), dict(qenv, MMLC_KEEP_TORCH_BLAS_BINDING="1"))
            compare(case, variants, args.repeat)
        print(f"load average at end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
