"""PRSANet (``mmlc train`` defaults) against a random forest on the North Carolina Landsat labels:
trained on the west half, tested on the east half, in one run (issue 21).

The network is trained by ``core.api.train`` with its defaults on the west half's labelled pixels
(inputs: bands 1-3 and bands 4, 5, 7 as PRSANet's two modalities), then classifies the east half
(``core.api.classify``) and is scored on the east half's labelled pixels. The forest (scikit-learn,
300 trees, the six bands per pixel, normalised as the network sees them) is trained on the same
west-half pixels the network trained on and scored on the same east-half pixels.
Run: ``PYTHONPATH=build/pkg .venv/bin/python bench/bench_baseline.py [--epochs N]``.
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default: PRSANet's recipe)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from mmlc.core import api
    from mmlc.core.assessment.baseline import TREES, pixel_features, sklearn_available
    from mmlc.core.assessment.metrics import Metrics
    from mmlc.core.engine.normalize import apply
    from mmlc.core.modelfiles.modelfile import read_card
    from osgeo import gdal

    with tempfile.TemporaryDirectory(prefix="mmlc-bench-baseline-") as tmpdir:
        tmp = Path(tmpdir)
        m1, m2 = str(tmp / "m1.vrt"), str(tmp / "m2.vrt")
        gdal.BuildVRT(m1, [str(NC / f"lsat7_2000_{b}.tif") for b in (10, 20, 30)], separate=True).FlushCache()
        gdal.BuildVRT(m2, [str(NC / f"lsat7_2000_{b}.tif") for b in (40, 50, 70)], separate=True).FlushCache()
        src = gdal.Open(str(NC / "landsat96_labelled_pixels.tif"))
        labels = src.ReadAsArray()
        nodata = src.GetRasterBand(1).GetNoDataValue()
        half = labels.shape[1] // 2
        west = labels.copy()
        west[:, half:] = nodata
        west_path = str(tmp / "west.tif")
        out = gdal.GetDriverByName("GTiff").CreateCopy(west_path, src)
        out.GetRasterBand(1).WriteArray(west)
        out = None
        east = np.where(np.arange(labels.shape[1])[None, :] >= half, labels, nodata)
        east_mask = (east != nodata) & (east > 0)

        t = time.perf_counter()
        res = api.train("prsanet", [m1, m2], west_path, str(tmp / "p.mmlc"), epochs=args.epochs, seed=args.seed,
                        output_report="", baseline=False)
        train_s = time.perf_counter() - t
        card = read_card(tmp / "p.mmlc")
        values = [c.value for c in card.classes]
        t = time.perf_counter()
        api.classify(str(tmp / "p.mmlc"), [m1, m2], str(tmp / "map.tif"))
        classify_s = time.perf_counter() - t
        pred = gdal.Open(str(tmp / "map.tif")).ReadAsArray()
        ref = east[east_mask].astype(np.int64)
        keep = np.isin(ref, values)
        lut = {v: i for i, v in enumerate(values)}
        ref_i = np.array([lut[v] for v in ref[keep]])
        pred_i = np.array([lut.get(int(v), -1) for v in pred[east_mask][keep]])
        k = len(values)
        ok = pred_i >= 0
        cm = np.bincount(ref_i[ok] * k + pred_i[ok], minlength=k * k).reshape(k, k)
        net = Metrics.from_confusion(cm, card.classes).summary()
        print(f"network prsanet (epochs {res.epochs_run}, train {train_s:.0f} s, classify {classify_s:.0f} s): "
              f"east OA {net['overall_accuracy']:.3f} AA {net['average_accuracy']:.3f} kappa {net['kappa']:.3f} "
              f"mIoU {net['miou']:.3f} on {int(ok.sum())} pixels; west validation-block OA {res.best_metric:.3f}")

        if not sklearn_available():
            print("forest: scikit-learn not installed, skipped")
            return 0
        from sklearn.ensemble import RandomForestClassifier

        arrays = [apply(gdal.Open(p).ReadAsArray().astype(np.float32), mc) for p, mc in zip((m1, m2), card.modalities)]
        feats = pixel_features(arrays, [1, 1])
        west_mask = (west != nodata) & (west > 0) & np.isin(west, values)
        t = time.perf_counter()
        forest = RandomForestClassifier(n_estimators=TREES, random_state=args.seed, n_jobs=-1)
        forest.fit(feats[west_mask], np.array([lut[int(v)] for v in west[west_mask]]))
        fpred = forest.predict(feats[east_mask][keep])
        cm = np.bincount(ref_i * k + fpred, minlength=k * k).reshape(k, k)
        rf = Metrics.from_confusion(cm, card.classes).summary()
        print(f"random forest ({TREES} trees, all {int(west_mask.sum())} west labelled pixels, "
              f"{time.perf_counter() - t:.0f} s): east OA {rf['overall_accuracy']:.3f} AA {rf['average_accuracy']:.3f} "
              f"kappa {rf['kappa']:.3f} mIoU {rf['miou']:.3f} on {len(ref_i)} pixels")
        print(f"network - forest OA: {net['overall_accuracy'] - rf['overall_accuracy']:+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
