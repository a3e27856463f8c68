"""A network (``mmlc train`` defaults) against a random forest on the North Carolina Landsat
labels: trained on one half of the scene, tested on the other half, in one run (issue 21).

The network is trained by ``core.api.train`` with its defaults on the training half's labelled
pixels, classifies the test half (``core.api.classify`` with its extent) and is scored on the
test half's labelled pixels. The forest (scikit-learn, 300 trees, the six bands per pixel, normalised as the
network sees them, same seed) is trained on the same training-half pixels and scored on the same
test pixels. Inputs: PRSANet and ASANet take bands 1-3 and bands 4, 5, 7 as their two
modalities; HFD-Net (one input) takes the six bands as one raster.

``--labels points`` trains on the 1000 labelled points of ``landsat96_points.shp`` (an independent
survey: 424 pixels in the west half, 13 of all 883 point pixels coincide with a labelled pixel)
instead of the labelled-pixel raster; the test pixels stay the raster's other half.
``--split`` picks the halves (``west-east``: train west, test east; also ``east-west``,
``north-south``, ``south-north``); ``--seeds 0,1,2`` repeats the pair with other seeds (network
initialisation, sampling and validation split; the forest's seed follows). Each seed prints one
line per model and the differences; the last line summarises them.
Run: ``PYTHONPATH=build/pkg .venv/bin/python bench/bench_baseline.py [--arch prsanet] [--variant V]
[--split west-east] [--labels pixels] [--seeds 0] [--epochs N] [--tile-size N] [--class-balance P]
[--refit-epochs N] [--validation-fraction F]``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "build" / "pkg"))
NC = ROOT / "resources" / "sample_data" / "share_alike" / "nc_landsat"
SPLITS = ("west-east", "east-west", "north-south", "south-north")


def halves(shape: tuple[int, int], split: str) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) boolean masks of the two halves of a (rows, cols) grid."""
    rows, cols = np.indices(shape)
    first = cols < shape[1] // 2 if split in ("west-east", "east-west") else rows < shape[0] // 2
    return (first, ~first) if split in ("west-east", "north-south") else (~first, first)


def inputs_for(arch: str, tmp: Path) -> list[str]:
    from osgeo import gdal

    bands = [(10, 20, 30, 40, 50, 70)] if arch == "hfdnet" else [(10, 20, 30), (40, 50, 70)]
    paths = []
    for i, group in enumerate(bands):
        path = str(tmp / f"m{i + 1}.vrt")
        gdal.BuildVRT(path, [str(NC / f"lsat7_2000_{b}.tif") for b in group], separate=True).FlushCache()
        paths.append(path)
    return paths


def half_extent(ds, half: np.ndarray) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of the pixels of ``half`` on ``ds``'s grid (north-up)."""
    x0, dx, _, y0, _, dy = ds.GetGeoTransform()
    rows, cols = np.nonzero(half)
    return (x0 + cols.min() * dx, y0 + (rows.max() + 1) * dy, x0 + (cols.max() + 1) * dx, y0 + rows.min() * dy)


def points_on_grid(ds) -> np.ndarray:
    """The labelled points (``landsat96_points.shp``, class in field ``id``) burnt into ``ds``'s grid
    (the pixel each point falls in; a later point wins a shared pixel); ``ds``'s nodata elsewhere."""
    from osgeo import gdal

    nodata = ds.GetRasterBand(1).GetNoDataValue()
    grid = gdal.GetDriverByName("MEM").Create("", ds.RasterXSize, ds.RasterYSize, 1, gdal.GDT_Float32)
    grid.SetGeoTransform(ds.GetGeoTransform())
    grid.SetProjection(ds.GetProjection())
    grid.GetRasterBand(1).Fill(nodata)
    gdal.Rasterize(grid, str(NC / "landsat96_points.shp"), attribute="id")
    return grid.ReadAsArray().astype(np.float32)


def on_grid(out, ds) -> np.ndarray:
    """The class map ``out`` (a window of ``ds``'s grid) placed on the whole grid; 0 elsewhere."""
    full = np.zeros((ds.RasterYSize, ds.RasterXSize), np.int64)
    x0, dx, _, y0, _, dy = ds.GetGeoTransform()
    ox, _, _, oy, _, _ = out.GetGeoTransform()
    c0, r0 = int(round((ox - x0) / dx)), int(round((oy - y0) / dy))
    full[r0:r0 + out.RasterYSize, c0:c0 + out.RasterXSize] = out.ReadAsArray()
    return full


def scores(ref: np.ndarray, pred: np.ndarray, classes) -> dict:
    """OA/AA/kappa/mIoU of ``pred`` against ``ref`` (both class indices; -1 in pred: unknown)."""
    from mmlc.core.assessment.metrics import Metrics

    k = len(classes)
    ok = pred >= 0
    cm = np.bincount(ref[ok] * k + pred[ok], minlength=k * k).reshape(k, k)
    return dict(Metrics.from_confusion(cm, classes).summary(), pixels=int(ok.sum()))


def line(m: dict) -> str:
    return (f"OA {m['overall_accuracy']:.3f} AA {m['average_accuracy']:.3f} kappa {m['kappa']:.3f} "
            f"mIoU {m['miou']:.3f} on {m['pixels']} pixels")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="prsanet", choices=("prsanet", "asanet", "hfdnet"))
    ap.add_argument("--variant", default=None, help="the architecture's variant (default: its default)")
    ap.add_argument("--split", default="west-east", choices=SPLITS, help="train half - test half")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds, one network and one forest each")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default: the recipe's)")
    ap.add_argument("--tile-size", type=int, default=None, help="tile size of dense models (default: the recipe's)")
    ap.add_argument("--validation-fraction", type=float, default=0.2,
                    help="share of the training half's labels in validation blocks (0: none, every epoch runs)")
    ap.add_argument("--class-balance", type=float, default=None,
                    help="class-balanced sampling power (default: the recipe's; 0 = off)")
    ap.add_argument("--refit-epochs", type=int, default=None,
                    help="epochs of the refit on every labelled pixel (default: the recipe's; 0 = off)")
    ap.add_argument("--labels", default="pixels", choices=("pixels", "points"),
                    help="training labels: the labelled-pixel raster's training half, or the 1000 labelled "
                         "points (landsat96_points.shp, field id) that fall in it")
    args = ap.parse_args()
    from mmlc.core import api
    from mmlc.core.assessment.baseline import TREES, pixel_features, sklearn_available
    from mmlc.core.engine.normalize import apply
    from mmlc.core.modelfiles.modelfile import read_card
    from osgeo import gdal

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    diffs = []
    with tempfile.TemporaryDirectory(prefix="mmlc-bench-baseline-") as tmpdir:
        tmp = Path(tmpdir)
        inputs = inputs_for(args.arch, tmp)
        src = gdal.Open(str(NC / "landsat96_labelled_pixels.tif"))
        labels = src.ReadAsArray()
        nodata = src.GetRasterBand(1).GetNoDataValue()
        train_half, test_half = halves(labels.shape, args.split)
        source = labels if args.labels == "pixels" else points_on_grid(src)
        train_labels = np.where(train_half & (source != nodata) & (source > 0), source, nodata)
        train_path = str(tmp / "train_labels.tif")
        out = gdal.GetDriverByName("GTiff").CreateCopy(train_path, src)
        out.GetRasterBand(1).WriteArray(train_labels)
        out = None
        labelled = (labels != nodata) & (labels > 0)
        trained = (train_labels != nodata) & (train_labels > 0)
        print(f"{args.arch}{' ' + args.variant if args.variant else ''}, split {args.split}, labels {args.labels}, "
              f"class balance "
              f"{'recipe' if args.class_balance is None else args.class_balance}, refit epochs "
              f"{'recipe' if args.refit_epochs is None else args.refit_epochs}, validation fraction "
              f"{args.validation_fraction}: "
              f"{int(trained.sum())} training / {int((labelled & test_half).sum())} test pixels",
              flush=True)
        for seed in seeds:
            model = tmp / f"net{seed}.mmlc"
            t = time.perf_counter()
            res = api.train(args.arch, inputs, train_path, str(model), variant=args.variant, epochs=args.epochs,
                            tile_size=args.tile_size, seed=seed, output_report="", baseline=False,
                            class_balance=args.class_balance, validation_fraction=args.validation_fraction,
                            refit_epochs=args.refit_epochs)
            train_s = time.perf_counter() - t
            card = read_card(model)
            values = [c.value for c in card.classes]
            lut = {v: i for i, v in enumerate(values)}
            t = time.perf_counter()
            api.classify(str(model), inputs, str(tmp / "map.tif"), extent=half_extent(src, test_half))
            classify_s = time.perf_counter() - t
            pred = on_grid(gdal.Open(str(tmp / "map.tif")), src)
            # pixels where an input is nodata are nodata in the map (classify's contract): both are
            # scored on the pixels the network classified, and the count left out is printed
            candidates = labelled & test_half & np.isin(labels, values)
            test = candidates & np.isin(pred, values)
            if (candidates & ~test).any():
                print(f"seed {seed}: {int((candidates & ~test).sum())} test pixels are nodata in an input "
                      "(no class in the map): left out for both", flush=True)
            ref = np.array([lut[int(v)] for v in labels[test]])
            net = scores(ref, np.array([lut.get(int(v), -1) for v in pred[test]]), card.classes)
            print(f"seed {seed} network {args.arch} (epochs {res.epochs_run}, train {train_s:.0f} s, classify "
                  f"{classify_s:.0f} s): test {line(net)}; validation-block OA {res.best_metric:.3f}", flush=True)
            if not sklearn_available():
                print("forest: scikit-learn not installed, skipped")
                continue
            from sklearn.ensemble import RandomForestClassifier

            arrays = [apply(gdal.Open(p).ReadAsArray().astype(np.float32), mc)
                      for p, mc in zip(inputs, card.modalities)]
            feats = pixel_features(arrays, [1] * len(arrays))
            train = trained & np.isin(train_labels, values)
            t = time.perf_counter()
            forest = RandomForestClassifier(n_estimators=TREES, random_state=seed, n_jobs=-1)
            forest.fit(feats[train], np.array([lut[int(v)] for v in train_labels[train]]))
            rf = scores(ref, forest.predict(feats[test]), card.classes)
            print(f"seed {seed} random forest ({TREES} trees, all {int(train.sum())} training pixels, "
                  f"{time.perf_counter() - t:.0f} s): test {line(rf)}", flush=True)
            diffs.append(net["overall_accuracy"] - rf["overall_accuracy"])
            print(f"seed {seed} network - forest OA: {diffs[-1]:+.3f}", flush=True)
    if diffs:
        print(f"summary {args.arch} {args.split}: network - forest OA over {len(diffs)} seed(s): "
              f"{', '.join(f'{d:+.3f}' for d in diffs)}; mean {np.mean(diffs):+.3f}; network ahead in "
              f"{sum(d > 0 for d in diffs)} of {len(diffs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
