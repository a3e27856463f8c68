"""``make demo``: run every built-in model through ``qgis_process`` on sample rasters it was not
trained on, write styled outputs to ``demo_output/``, and render each input and result as a PNG
through QGIS's own map rendering (class map with legend, styled from the ``.qml`` sidecar).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .qgis_env import ROOT, run_algorithm

SAMPLES = ROOT / "resources" / "sample_data"
BEN = SAMPLES / "bigearthnet"
SN6 = SAMPLES / "share_alike" / "spacenet6"
HELD_OUT = "S1A_IW_GRDH_1SDV_20170617T064724_29UPU_36_85"  # not used to train the built-in models


@dataclass(frozen=True)
class Demo:
    model: str
    inputs: tuple[Path, ...]
    view: Path          # raster shown as the "input" picture
    view_bands: tuple[int, int, int]
    note: str
    window: int = 0  # classify only a window of this many pixels (0 = everything)


DEMOS = (
    Demo("asanet-demo", (BEN / f"{HELD_OUT}__s2_10band_10m.tif", BEN / f"{HELD_OUT}__s1_vv_vh_db.tif"),
         BEN / f"{HELD_OUT}__s2_10band_10m.tif", (3, 2, 1), "Sentinel-2 (10 bands) + Sentinel-1 VV/VH, Ireland, June 2017"),
    Demo("prsanet-demo", (BEN / f"{HELD_OUT}__s2_10band_10m.tif", BEN / f"{HELD_OUT}__s1_vv_vh_db.tif"),
         BEN / f"{HELD_OUT}__s2_10band_10m.tif", (3, 2, 1), "Sentinel-2 + Sentinel-1 as two modalities"),
    Demo("hfdnet-demo", (BEN / f"{HELD_OUT}__s1_vv_vh_db.tif",),
         BEN / f"{HELD_OUT}__s1_vv_vh_db.tif", (1, 2, 1), "Sentinel-1 VV/VH only (student distilled from S2)"),
    Demo("das2f-demo", (SN6 / "ms2_2m_uint16.tif", SN6 / "pan2.tif"),
         SN6 / "ms2_2m_uint16.tif", (3, 2, 1), "SpaceNet 6: 2 m MS + 0.5 m PAN", window=48),
)


def window_extent(path: Path, size: int) -> str:
    """qgis_process EXTENT of a size x size pixel window at the bottom centre of ``path``
    (quay, boats, buildings and water in the held-out SpaceNet 6 tile).

    Per-pixel DAS2F runs at ~35 ms/pixel on a 2-core CPU (docs/benchmarks.md), so the demo maps a
    96 m x 96 m window (48 x 48 MS pixels) of the held-out tile instead of all 22,500 pixels (about 13 minutes).
    """
    from osgeo import gdal, osr

    ds = gdal.Open(str(path))
    x0, dx, _, y0, _, dy = ds.GetGeoTransform()
    c0, r0 = (ds.RasterXSize - size) // 2, ds.RasterYSize - size
    xmin, xmax = x0 + c0 * dx, x0 + (c0 + size) * dx
    ymax, ymin = y0 + r0 * dy, y0 + (r0 + size) * dy
    srs = osr.SpatialReference(wkt=ds.GetProjection())
    srs.AutoIdentifyEPSG()
    return f"{xmin},{xmax},{ymin},{ymax} [EPSG:{srs.GetAuthorityCode(None)}]"


def main(out_dir: Path = ROOT / "demo_output") -> int:
    import os

    os.environ["GDAL_PAM_ENABLED"] = "NO"  # rendering must not leave .aux.xml files beside the samples
    from qgis.core import QgsApplication, QgsRasterLayer

    from ..core.modelfiles.builtin import list_builtin
    from .render import export_png, rgb_composite

    out_dir.mkdir(parents=True, exist_ok=True)
    profile = ROOT / "build" / "qgis-profile"
    available = set(list_builtin())
    app = QgsApplication([], False)
    app.initQgis()
    written: list[str] = []
    failures = 0
    for demo in DEMOS:
        if demo.model not in available:
            print(f"[skip] {demo.model}: not built (run `make models`)")
            continue
        out = out_dir / f"{demo.model}.tif"
        params = {"MODEL": demo.model, "INPUT_1": str(demo.inputs[0]), "OUTPUT": str(out),
                  "OUTPUT_CONFIDENCE": str(out_dir / f"{demo.model}_confidence.tif")}
        if len(demo.inputs) > 1:
            params["INPUT_2"] = str(demo.inputs[1])
        if demo.window:
            params["EXTENT"] = window_extent(demo.inputs[0], demo.window)
        t0 = time.perf_counter()
        res = run_algorithm("mmlc:classify", params, profile)
        dt = time.perf_counter() - t0
        if res.returncode != 0 or not out.exists():
            failures += 1
            print(f"[fail] {demo.model}: qgis_process exited {res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
            continue
        view = QgsRasterLayer(str(demo.view), "input")
        rgb_composite(view, demo.view_bands)
        result = QgsRasterLayer(str(out), demo.model)
        png_in = export_png(view, out_dir / f"{demo.model}_input.png", f"Input: {demo.note}", legend=False,
                            extent=result.extent())
        result.loadDefaultStyle()  # the .qml sidecar written by the core, as a headless user gets it
        png_out = export_png(result, out_dir / f"{demo.model}.png", f"{demo.model} (qgis_process, {dt:.0f} s)",
                             legend=True)
        written += [str(out), str(out.with_suffix(".qml")), str(png_in), str(png_out)]
        print(f"[ok] {demo.model}: classified in {dt:.1f} s -> {out}")
    pairs = [[out_dir / f"{d.model}_input.png", out_dir / f"{d.model}.png"] for d in DEMOS
             if (out_dir / f"{d.model}.png").exists()]
    if pairs:
        from .render import side_by_side

        written.append(str(side_by_side(pairs, out_dir / "overview.png")))
    app.exitQgis()
    print("\nmmlc demo wrote:")
    for w in written:
        print(f"  {Path(w).relative_to(ROOT) if Path(w).is_relative_to(ROOT) else w}")
    print("Open the PNGs to see inputs and results; load the .tif files in QGIS (styled by their .qml).")
    return 1 if failures or not written else 0


if __name__ == "__main__":
    sys.exit(main())
