"""Peak RSS of classify() on 8192 x 8192 vs 1024 x 1024 (same trivially small model).

Each size runs in its own subprocess and reports its peak resident set (``VmHWM``, includes the
torch/GDAL baseline; not ``ru_maxrss``, which on Linux inherits the parent's peak across
fork+exec and so measured the parent writing the 8192^2 input, ~715 MB, instead of the child). The inputs are written in blocks beforehand by the parent, so the child
only classifies. GDAL's block cache is a bounded, configurable cache, not engine memory: the
children run with ``GDAL_CACHEMAX=64`` (MB) so it cannot mask growth. Target ratio <= 1.2.
Usage: PYTHONPATH=build/pkg python bench/bench_memory.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import torch
from torch import nn
from mmlc.core.classes import default_classes
from mmlc.core.engine.classify import classify
from mmlc.core.modelfiles.modelfile import ModalityCard, ModelCard, save_model_file
from mmlc.models.registry import ModalitySpec, ModelSpec, register
torch.set_num_threads(2)

def peak_rss_mb():
    # VmHWM: this process image's own peak. ru_maxrss is NOT usable here: Linux carries the
    # parent's peak over fork+exec, so the child would report the parent's (input-writing) peak.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

class Pixelwise(nn.Module):
    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_classes, 1)
    def forward(self, x):
        return self.conv(x)

register(ModelSpec("bench_pixelwise", Pixelwise, "dense", (ModalitySpec("optical", 3),),
                   lambda b: {"in_channels": b[0]}))
src, out, writer = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
torch.manual_seed(0)
card = ModelCard("bench_pixelwise", {"in_channels": 3, "num_classes": 4}, "dense",
                 [ModalityCard("optical", 3, mean=[128.0] * 3, std=[50.0] * 3)], default_classes([1, 2, 3, 4]),
                 tile_size=256, overlap=32)
model = save_model_file(out + ".mmlc", card, Pixelwise(3, 4).state_dict())
res = classify(model, [src], out, confidence=out + ".conf.tif", batch_size=4, device="cpu",
               background_writer=writer)
print(json.dumps({"maxrss_mb": peak_rss_mb(), "seconds": res.seconds, "tiles": res.tiles}))
"""


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import numpy as np
    from bench_inference import write_raster  # noqa: E402
    from osgeo import gdal

    def pattern(r: int, n: int, w: int, b: int):
        y, x = np.mgrid[r:r + n, 0:w]
        return ((x * 7 + y * 3 + b * 50) % 251).astype(np.uint8)

    env = dict(os.environ, GDAL_CACHEMAX="64")
    with tempfile.TemporaryDirectory() as tmp:
        srcs = {size: write_raster(Path(tmp) / f"in{size}.tif", 3, gdal.GDT_Byte, size, pattern)
                for size in (1024, 8192)}
        for writer in ("1", "0"):
            tag = "threaded" if writer == "1" else "serial"
            results = {}
            for size, src in srcs.items():
                p = subprocess.run([sys.executable, "-c", CHILD, src, str(Path(tmp) / f"out{size}{writer}.tif"), writer],
                                   capture_output=True, text=True, env=env, check=True)
                results[size] = json.loads(p.stdout.strip().splitlines()[-1])
                print(f"{tag}_peak_rss_{size}_mb: {results[size]['maxrss_mb']:.0f} "
                      f"({results[size]['seconds']:.1f} s, {results[size]['tiles']} tiles)")
            print(f"{tag}_peak_rss_ratio_8192_over_1024: "
                  f"{results[8192]['maxrss_mb'] / results[1024]['maxrss_mb']:.3f} "
                  "(target <= 1.2; model: one 1x1 conv, tile 256, GDAL_CACHEMAX=64 MB)")


if __name__ == "__main__":
    main()
