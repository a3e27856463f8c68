"""ASANet inference throughput at 256 x 256 and its efficiency against this machine's GEMM rate.

Measures, side by side in one run (the machine may be shared and noisy, so read the ratios):
* the fp32 matmul rate of this machine (FLOP/s of a square ``torch.mm``), the yardstick;
* eval forward images/s, batch 4, 256 x 256, 3 optical + 1 SAR band, for each backbone asked for
  (default tiny and atto), fp32 NCHW and fp32 channels_last;
* efficiency = (conv + linear MACs x 2 x images/s) / GEMM FLOP/s, MACs from :mod:`mmlc.models.macs`
  (25.85 G per tiny sample with 3 SAR channels; the count here uses the real band counts).
On a CUDA device ``--amp`` adds autocast (bf16 where supported, else fp16); ``--channels-last``
alone restricts the runs to that layout. Prints one line per measure.
Usage: PYTHONPATH=build/pkg python bench/bench_asanet.py [--backbones tiny atto] [--iters 3] [--device auto]
"""
from __future__ import annotations

import argparse
import contextlib
import time

import torch
from mmlc.core.device import autocast_dtype, resolve_device
from mmlc.models import build_model
from mmlc.models.macs import count_macs

SIZE, OPTICAL, SAR, K = 256, 3, 1, 6


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_flops(device: torch.device, n: int = 1536, reps: int = 5) -> float:
    """Best-of-``reps`` fp32 FLOP/s of an n x n matmul (2 n^3 FLOP per product)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.mm(a, b)
    sync(device)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def macs_per_image(backbone: str) -> float:
    with torch.device("meta"):
        model = build_model("asanet", num_classes=K, backbone=backbone, optical_channels=OPTICAL,
                            sar_channels=SAR).eval()
        return count_macs(model, torch.empty(1, OPTICAL, SIZE, SIZE), torch.empty(1, SAR, SIZE, SIZE)).per_sample


def images_per_s(backbone: str, device: torch.device, batch: int, iters: int, channels_last: bool,
                 amp: bool) -> float:
    torch.manual_seed(0)
    model = build_model("asanet", num_classes=K, backbone=backbone, optical_channels=OPTICAL,
                        sar_channels=SAR).eval().to(device)
    xo = torch.randn(batch, OPTICAL, SIZE, SIZE, device=device)
    xs = torch.randn(batch, SAR, SIZE, SIZE, device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        xo, xs = xo.contiguous(memory_format=torch.channels_last), xs.contiguous(memory_format=torch.channels_last)
    dtype = autocast_dtype(device) if amp else None
    ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with torch.inference_mode(), ctx:
        model(xo, xs)  # warm-up (kernel selection, allocator)
        sync(device)
        t = time.perf_counter()
        for _ in range(iters):
            model(xo, xs)
        sync(device)
    return batch * iters / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", nargs="+", default=["tiny", "atto"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    ap.add_argument("--channels-last", action="store_true", help="only the channels_last layout")
    ap.add_argument("--amp", action="store_true", help="autocast on CUDA (ignored on CPU)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    where = f"{device.type}, {torch.get_num_threads()} threads" if device.type == "cpu" else str(device)
    gemm = gemm_flops(device)
    print(f"gemm fp32 [{where}]: {gemm / 1e9:.1f} GFLOP/s")
    layouts = [True] if args.channels_last else [False, True]
    precision = "amp" if args.amp and device.type == "cuda" else "fp32"
    for bb in args.backbones:
        macs = macs_per_image(f"convnextv2_{bb}")
        print(f"asanet[{bb}] conv+linear MACs at {SIZE}x{SIZE} ({OPTICAL}+{SAR} bands): {macs / 1e9:.2f} G")
        for cl in layouts:
            ips = images_per_s(f"convnextv2_{bb}", device, args.batch, args.iters, cl, args.amp)
            eff = macs * 2 * ips / gemm
            layout = "channels_last" if cl else "nchw"
            print(f"asanet[{bb}] eval {precision} {layout} batch {args.batch}: {ips:.2f} images/s, "
                  f"efficiency {eff:.2f} of fp32 GEMM")


if __name__ == "__main__":
    main()
