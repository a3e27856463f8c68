"""Benchmark of labels/metrics/evaluate: one result line per measure.

Run: ``PYTHONPATH=build/pkg .venv/bin/python bench/bench_evaluate.py [--size 3000]``.
Synthetic rasters are written to a temporary folder (the NC sample grid's CRS, 28.5 m pixels);
the vector measure uses the shipped NC label polygons.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from mmlc.core.assessment.evaluate import evaluate
from mmlc.core.assessment.metrics import ConfusionAccumulator
from mmlc.core.data.labels import LabelSource
from mmlc.core.engine.grid import Grid
from osgeo import gdal
from timing import best_of

NC = Path(__file__).resolve().parent.parent / "resources" / "sample_data" / "share_alike" / "nc_landsat"




def _raster(path: str, like: Grid, values: np.ndarray) -> str:
    ds = gdal.GetDriverByName("GTiff").Create(path, like.width, like.height, 1, gdal.GDT_Byte, ["TILED=YES"])
    ds.SetGeoTransform(like.transform)
    ds.SetProjection(like.crs_wkt)
    ds.GetRasterBand(1).SetNoDataValue(0)
    ds.GetRasterBand(1).WriteArray(values)
    ds = None
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=3000, help="synthetic raster side in pixels")
    n = ap.parse_args().size
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 11, size=(n, n), dtype=np.uint8)  # 0 = unlabelled, 10 classes
    pred = np.where(rng.random((n, n)) < 0.8, ref, rng.integers(1, 11, size=(n, n), dtype=np.uint8))

    acc = ConfusionAccumulator()
    t = best_of(lambda: acc.update(pred, ref), warmup=False)
    print(f"confusion_accumulator_update: {n * n / t / 1e6:.1f} Mpx/s ({n}x{n} uint8, 10 classes)")

    nc_grid = Grid.from_path(str(NC / "landsat96_labelled_pixels.tif"))
    grid = Grid(nc_grid.crs_wkt, nc_grid.transform, n, n)
    with tempfile.TemporaryDirectory() as tmp:
        pred_p = _raster(str(Path(tmp) / "pred.tif"), grid, pred)
        ref_p = _raster(str(Path(tmp) / "ref.tif"), grid, ref)
        src = LabelSource(ref_p, grid.crs_wkt)
        t_fast = best_of(lambda: src.read(grid), warmup=False)
        src.fast_path = False
        t_warp = best_of(lambda: src.read(grid), warmup=False)
        src.close()
        print(f"label_raster_read_aligned: {n * n / t_fast / 1e6:.1f} Mpx/s")
        print(f"label_raster_read_warped: {n * n / t_warp / 1e6:.1f} Mpx/s (aligned/warped speed-up x{t_warp / t_fast:.1f})")
        t_eval = best_of(lambda: evaluate(pred_p, ref_p), 1, warmup=False)
        print(f"evaluate_raster_vs_raster: {t_eval:.2f} s for {n}x{n} px ({n * n / t_eval / 1e6:.1f} Mpx/s, streamed by 1 Mpx blocks)")
        report = str(Path(tmp) / "r.html")
        t_rep = best_of(lambda: evaluate(pred_p, ref_p, output_report=report, output_table=str(Path(tmp) / "cm.csv")),
                        1, warmup=False)
        print(f"evaluate_with_html_and_csv: {t_rep:.2f} s (report overhead {t_rep - t_eval:+.2f} s)")

    fine = nc_grid.scaled(4)
    with LabelSource(str(NC / "landsat96_polygons.shp"), fine.crs_wkt, "id") as vec:
        t_vec = best_of(lambda: vec.read(fine), warmup=False)
    print(f"vector_polygons_rasterise: {fine.width * fine.height / t_vec / 1e6:.1f} Mpx/s "
          f"(34 NC polygons on a {fine.width}x{fine.height} grid)")


if __name__ == "__main__":
    main()
