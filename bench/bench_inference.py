"""Overhead of tiled classify() over the bare model forward, on a 2048 x 2048 two-input raster.

Inputs: synthetic tiled GeoTIFFs written to a temp folder (optical: 3-band Byte; SAR: 2-band
Float32 dB with a NaN strip), on the same UTM grid. Model: a small fully-convolutional net
(4 conv3x3 layers, 16 channels: forward-dominated like a real segmentation net, but cheap
enough for a 2-core CPU). The bare forward runs the same number of tiles at the same batch size
on pre-built tensors; the ratio total/forward is the engine's overhead (target <= 1.10). On a
CPU the engine runs batches on several model workers at once (``pipeline.cpu_workers``): the
script also times the bare forward in that same scheme, so the engine's own cost (reading,
blending, writing) is reported apart from the gain of the scheme itself.
``--model asanet-demo`` runs the shipped ASANet instead (ConvNeXt-V2 atto twins + UPerNet 64,
2.45 GMAC per 256 x 256 tile vs 0.50 for the toy net) on a 10-band UInt16 optical + 2-band SAR
raster; ``--width 64`` makes the toy net 7.45 GMAC per tile.
Prints one line per measure.
Usage: PYTHONPATH=build/pkg python bench/bench_inference.py [--repeat 9] [--width 16] [--model asanet-demo]
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from mmlc.core.classes import default_classes
from mmlc.core.engine.classify import classify
from mmlc.core.engine.pipeline import ModelWorkers, cpu_workers
from mmlc.core.engine.tiling import tile_starts
from mmlc.core.modelfiles.builtin import resolve_model
from mmlc.core.modelfiles.modelfile import ModalityCard, ModelCard, build_from_file, save_model_file
from mmlc.models.registry import ModalitySpec, ModelSpec, register
from osgeo import gdal, osr
from timing import timed_ratio
from torch import nn

SIZE, TILE, OVERLAP, BATCH = 2048, 256, 32, 4
#: conv width of the benchmark net; ``--width 64`` gives a forward pass ~16x heavier (closer to a
#: real segmentation network), where the engine's fixed costs matter less.
REPEAT = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 9
MODEL = sys.argv[sys.argv.index("--model") + 1] if "--model" in sys.argv else None
WIDTH = int(sys.argv[sys.argv.index("--width") + 1]) if "--width" in sys.argv else 16


class BenchFCN(nn.Module):
    def __init__(self, in_channels: list[int], num_classes: int, width: int = WIDTH) -> None:
        super().__init__()
        c = sum(in_channels)
        layers: list[nn.Module] = []
        for _ in range(4):
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU()]
            c = width
        self.body = nn.Sequential(*layers, nn.Conv2d(width, num_classes, 1))

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat(xs, 1))


def write_raster(path: Path, bands: int, dtype: int, size: int, fill) -> str:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32631)
    ds = gdal.GetDriverByName("GTiff").Create(str(path), size, size, bands, dtype,
                                              ["TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER"])
    ds.SetGeoTransform((590000.0, 0.5, 0.0, 5750000.0, 0.0, -0.5))
    ds.SetProjection(srs.ExportToWkt())
    step = 1024
    for r in range(0, size, step):
        n = min(step, size - r)
        for b in range(bands):
            ds.GetRasterBand(b + 1).WriteArray(fill(r, n, size, b), 0, r)
    ds = None
    return str(path)


def make_inputs(folder: Path, size: int, optical_bands: int = 3) -> list[str]:
    """Optical (3-band Byte, or ``optical_bands`` UInt16 reflectances x 10^4 when more than 3)
    and SAR (2-band Float32 dB with a NaN strip) on the same UTM grid."""
    def optical(r: int, n: int, w: int, b: int) -> np.ndarray:
        y, x = np.mgrid[r:r + n, 0:w]
        v = (np.sin(x / 37.0 + b) + np.cos(y / 23.0)) * 60 + 128
        return v.astype(np.uint8) if optical_bands <= 3 else (v * 12).astype(np.uint16)

    def sar(r: int, n: int, w: int, b: int) -> np.ndarray:
        y, x = np.mgrid[r:r + n, 0:w]
        a = (np.sin((x + y) / 51.0 + b) * 6 - 12).astype(np.float32)
        a[(y < w // 16)] = np.nan
        return a

    return [write_raster(folder / "optical.tif", optical_bands,
                         gdal.GDT_Byte if optical_bands <= 3 else gdal.GDT_UInt16, size, optical),
            write_raster(folder / "sar.tif", 2, gdal.GDT_Float32, size, sar)]


def main() -> None:
    torch.manual_seed(0)
    register(ModelSpec("bench_fcn", BenchFCN, "dense", (ModalitySpec("optical", 3), ModalitySpec("sar", 2)),
                       lambda b: {"in_channels": list(b)}))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        if MODEL:
            model = resolve_model(MODEL)
            card, net = build_from_file(model, torch.device("cpu"))
            bands = [m.bands for m in card.modalities]
            what = f"{MODEL} ({card.architecture})"
        else:
            bands = [3, 2]
            net = BenchFCN(bands, 4).eval()
            card = ModelCard("bench_fcn", {"in_channels": bands, "num_classes": 4}, "dense",
                             [ModalityCard("optical", 3, mean=[128.0] * 3, std=[50.0] * 3),
                              ModalityCard("sar", 2, mean=[-12.0] * 2, std=[5.0] * 2)],
                             default_classes([1, 2, 3, 4]), tile_size=TILE, overlap=OVERLAP)
            model = save_model_file(d / "bench.mmlc", card, net.state_dict())
            what = f"BenchFCN 4x conv3x3 width {WIDTH}"
        inputs = make_inputs(d, SIZE, bands[0])
        n_tiles = len(tile_starts(SIZE, TILE, OVERLAP)) ** 2
        # bare forward: same tiles, same batch, tensors built beforehand
        xs = [torch.randn(BATCH, b, TILE, TILE) for b in bands]

        def forward_batch(i: int) -> tuple[int, None]:
            """Softmax probabilities of the batch of tiles starting at tile ``i``."""
            with torch.inference_mode():
                b = min(BATCH, n_tiles - i)
                torch.softmax(net(*[x[:b] for x in xs]), 1)
            return 1, None

        def bare_forward() -> None:
            for i in range(0, n_tiles, BATCH):
                forward_batch(i)

        threads = torch.get_num_threads()
        workers = cpu_workers(torch.device("cpu"), threads)

        def bare_forward_workers() -> None:
            """The same forward passes in the engine's CPU scheme: ``workers`` threads at once,
            each with ``threads // workers`` intra-op threads (no reading, blending or writing)."""
            pool = ModelWorkers(workers, threads // workers)
            try:
                for i in range(0, n_tiles, BATCH):
                    pool.submit(forward_batch, i)
                pool.drain()
            finally:
                pool.close()

        runs = []

        def run_classify() -> None:
            runs.append(classify(model, inputs, str(d / "classes.tif"), tile_size=TILE, overlap=OVERLAP,
                                 batch_size=BATCH, device="cpu", precision="fp32"))

        bare, total, ratio = timed_ratio(bare_forward, run_classify, repeat=REPEAT)
        bare_w, total_w, ratio_w = timed_ratio(bare_forward_workers, run_classify, repeat=REPEAT)
        assert torch.get_num_threads() == threads  # the workers gave torch's setting back
        res = sorted(runs[1:], key=lambda r: r.seconds)[len(runs[1:]) // 2]
        print(f"machine: {sys.platform}, torch threads {torch.get_num_threads()}, model {what}, raster {SIZE}x{SIZE} two inputs, tile {TILE} overlap {OVERLAP} batch {BATCH}")
        print(f"tiles: {res.tiles} (bare forward on {n_tiles})")
        print(f"bare_forward_s: {bare:.2f}")
        print(f"repeats: {REPEAT} pairs in alternating order after one warm-up each (medians)")
        print(f"classify_total_s: {total:.2f}")
        print(f"classify_forward_s: {res.forward_seconds:.2f}")
        print(f"classify_reader_thread_cpu_s: {res.read_cpu_seconds:.2f}")
        print(f"classify_blend_write_cpu_s: {res.write_cpu_seconds:.2f}")
        print(f"classify_pixels_per_s: {res.pixels_per_s:.0f}")
        print(f"overhead_ratio_total_over_bare_forward: {ratio:.3f} (median of per-pair ratios; target <= 1.10)")
        print(f"model_workers: {res.model_workers} x {threads // res.model_workers} intra-op thread(s)")
        print(f"bare_forward_same_workers_s: {bare_w:.2f} (classify in those pairs: {total_w:.2f})")
        print(f"overhead_ratio_total_over_bare_forward_same_workers: {ratio_w:.3f} (the engine's own cost)")


if __name__ == "__main__":
    main()
