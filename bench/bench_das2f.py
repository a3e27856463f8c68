"""DAS2F benchmarks: selective-scan forms, and per-pixel classification of the shipped MS/PAN tile.

Prints one line per measure (``name: value unit  [notes]``). Run from the repository root:

    PYTHONPATH=build/pkg .venv/bin/python bench/bench_das2f.py [--pixels 2048] [--variant nanjing] [--threads 1]

1. Selective scan at L = 256 (the cross-modal call's shape: dim 512 = 2 modalities x 4 directions
   x 64, N = 24, 8 groups): sequential reference vs chunked / streaming / associative, forward
   (and forward + backward), with the speed-up over the sequential form.
2. Scene classification of ``xidian_layout_tile1`` (150 x 150 MS, 600 x 600 PAN) on a fixed random
   subset of pixels (the whole 22,500-pixel scene takes minutes on a shared 2-core CPU; the rate is
   extrapolated to it): the batched patch mode (:class:`mmlc.core.data.xidian.PatchCutter`, one gather
   per batch) against a reference-style pipeline (a torch Dataset cropping each pixel's two patches
   in ``__getitem__``, DataLoader batches of 64), and the share of patch cutting vs the bare forward.
3. The bare model at the benchmark batch: eval forward and one training step (ms per pixel, and
   the fraction of the fp32 GEMM rate, a training step counted as 3x the forward FLOPs).
4. MACs per pixel (``models/macs.py`` for conv/linear + the einsum projections and the scan
   counted analytically) and the fraction of this machine's fp32 GEMM rate the model reaches.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from mmlc.core.data.xidian import PatchCutter, minmax_normalise, read_xidian
from mmlc.models import build_model
from mmlc.models.das2f import D_MODEL, D_STATE, DT_RANK, N_DIRECTIONS, VARIANT_STAGES
from mmlc.models.selective_scan import (
    selective_scan_associative,
    selective_scan_chunked,
    selective_scan_sequential,
    selective_scan_streaming,
)
from timing import best_of

TILE = Path(__file__).resolve().parent.parent / "resources/sample_data/share_alike/spacenet6/xidian_layout_tile1"


def scan_inputs(b: int, d: int = 512, L: int = 256, n: int = D_STATE, g: int = 8, grad: bool = False):
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(b, d, L, generator=gen, requires_grad=grad)
    delta = torch.randn(b, d, L, generator=gen) * 0.5
    A = -torch.exp(torch.rand(d, n, generator=gen) * 3.2)
    B, C = torch.randn(b, g, n, L, generator=gen), torch.randn(b, g, n, L, generator=gen)
    return u, delta, A, B, C, torch.randn(d, generator=gen), torch.randn(d, generator=gen) * 0.5 - 3


def bench_scan() -> None:
    forms = {"sequential": selective_scan_sequential, "chunked": selective_scan_chunked,
             "streaming": selective_scan_streaming, "associative": selective_scan_associative}
    for b in (1, 8):
        args = scan_inputs(b)
        with torch.inference_mode():
            t = {k: best_of(lambda f=f: f(*args, delta_softplus=True)) for k, f in forms.items()
                 if not (k == "associative" and b > 1)}
        for k, v in t.items():
            ratio = "" if k == "sequential" else f"  ({t['sequential'] / v:.2f}x vs sequential)"
            print(f"scan_fwd_L256_d512_b{b}_{k}: {v * 1e3:.1f} ms{ratio}", flush=True)
    args = scan_inputs(2, grad=True)
    t = {k: best_of(lambda f=f: f(*args, delta_softplus=True).square().sum().backward(), 2)
         for k, f in forms.items() if k != "associative"}
    for k, v in t.items():
        ratio = "" if k == "sequential" else f"  ({t['sequential'] / v:.2f}x vs sequential)"
        print(f"scan_fwd_bwd_L256_d512_b2_{k}: {v * 1e3:.1f} ms{ratio}", flush=True)


class ReferenceStyleDataset(torch.utils.data.Dataset):
    """The pipeline of the Xidian reference repos: pad once, crop one pixel's patches per item."""

    def __init__(self, ms: np.ndarray, pan: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
        self.ms = np.pad(ms, ((0, 0), (7, 8), (7, 8)), mode="reflect")
        self.pan = np.pad(pan, ((0, 0), (28, 32), (28, 32)), mode="reflect")
        self.rows, self.cols = rows, cols

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        r, c = int(self.rows[i]), int(self.cols[i])
        return (torch.from_numpy(np.ascontiguousarray(self.ms[:, r:r + 16, c:c + 16])),
                torch.from_numpy(np.ascontiguousarray(self.pan[:, 4 * r:4 * r + 64, 4 * c:4 * c + 64])))


def analytic_macs(variant: str) -> tuple[int, int]:
    """(einsum projection MACs, scan multiply-adds) per pixel: not nn.Linear, so not hooked by count_macs."""
    L = 16 * 16
    per_branch_proj = N_DIRECTIONS * L * D_MODEL * (DT_RANK + 2 * D_STATE) + N_DIRECTIONS * L * DT_RANK * D_MODEL
    per_branch_scan = N_DIRECTIONS * D_MODEL * L * D_STATE * 3  # h = dA*h + dBu (2), y += C*h (1); exp not counted
    branches = VARIANT_STAGES[variant] * 4  # 2 SPVM + 2 cross branches per stage
    return branches * per_branch_proj, branches * per_branch_scan


def bench_scene(n_pixels: int, variant: str, batch: int) -> None:
    scene = read_xidian(TILE)
    ms, pan = minmax_normalise(scene.ms), minmax_normalise(scene.pan)
    h, w = ms.shape[-2:]
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(h * w, size=min(n_pixels, h * w), replace=False))
    rows, cols = idx // w, idx % w
    torch.manual_seed(0)
    model = build_model("das2f", num_classes=3, variant=variant).eval()

    def batched() -> tuple[float, float, np.ndarray]:
        t_cut = t_fwd = 0.0
        out = []
        t0 = time.perf_counter()
        cutter = PatchCutter(ms, pan)
        t_cut += time.perf_counter() - t0
        with torch.inference_mode():
            for s in range(0, len(rows), batch):
                t0 = time.perf_counter()
                m, p = cutter.cut(rows[s:s + batch], cols[s:s + batch])
                mt, pt = torch.from_numpy(m), torch.from_numpy(p)
                t1 = time.perf_counter()
                out.append(model(mt, pt).argmax(1).numpy())
                t_fwd += time.perf_counter() - t1
                t_cut += t1 - t0
        return t_cut, t_fwd, np.concatenate(out)

    def reference() -> tuple[float, np.ndarray]:
        t0 = time.perf_counter()
        loader = torch.utils.data.DataLoader(ReferenceStyleDataset(ms, pan, rows, cols), batch_size=64, shuffle=False)
        out = []
        with torch.inference_mode():
            for m, p in loader:
                out.append(model(m, p).argmax(1).numpy())
        return time.perf_counter() - t0, np.concatenate(out)

    def data_only() -> tuple[float, float]:
        """Patches delivered per second by each data path alone (no forward): what matters where
        the forward is cheap (a GPU), unlike on this CPU where the forward is ~40 ms a pixel."""
        t0 = time.perf_counter()
        cutter = PatchCutter(ms, pan)
        for s in range(0, len(rows), batch):
            m, p = cutter.cut(rows[s:s + batch], cols[s:s + batch])
            torch.from_numpy(m), torch.from_numpy(p)
        t_b = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in torch.utils.data.DataLoader(ReferenceStyleDataset(ms, pan, rows, cols), batch_size=64, shuffle=False):
            pass
        return t_b, time.perf_counter() - t0

    n = len(rows)
    d_b, d_r = min(data_only() for _ in range(3))
    print(f"data_path_only_batched_patches_per_s: {n / d_b:.0f}  (reference-style Dataset + DataLoader(64): "
          f"{n / d_r:.0f}; {d_r / d_b:.1f}x)")
    with torch.inference_mode():
        model(*map(torch.from_numpy, PatchCutter(ms, pan).cut(rows[:8], cols[:8])))  # warm-up
    t_cut, t_fwd, pred_b = batched()
    t_ref, pred_r = reference()
    t_b = t_cut + t_fwd
    print(f"scene_subset_pixels: {n}  (of {h * w}; variant {variant}; torch threads {torch.get_num_threads()})")
    print(f"scene_batched_b{batch}_px_per_s: {n / t_b:.1f} px/s  (full scene extrapolated {h * w / (n / t_b) / 60:.1f} min)")
    print(f"scene_reference_style_b64_px_per_s: {n / t_ref:.1f} px/s  (full scene extrapolated {h * w / (n / t_ref) / 60:.1f} min)")
    print(f"scene_batched_speedup_vs_reference_style: {t_ref / t_b:.2f}x")
    print(f"scene_patch_cut_share_of_forward: {100 * t_cut / t_fwd:.2f} %  (cut {t_cut * 1e3:.0f} ms, forward {t_fwd:.1f} s)")
    print(f"scene_predictions_identical: {bool(np.array_equal(pred_b, pred_r))}")

    macs = None
    try:
        from mmlc.models.macs import count_macs

        with torch.inference_mode():
            macs = count_macs(model, torch.zeros(1, 4, 16, 16), torch.zeros(1, 1, 64, 64)).per_sample
        how = "models/macs.py (conv+linear)"
    except ImportError:
        how = "unavailable"
    proj, scan = analytic_macs(variant)
    if macs is not None:
        total = macs + proj + scan
        print(f"macs_per_pixel_conv_linear: {macs / 1e6:.1f} M  ({how})")
        print(f"macs_per_pixel_einsum_projections: {proj / 1e6:.1f} M  (analytic)")
        print(f"macs_per_pixel_scan: {scan / 1e6:.1f} M  (analytic, 3 multiply-adds per state element)")
        print(f"macs_per_pixel_total: {total / 1e6:.1f} M")
        a = torch.randn(1024, 1024)
        t = best_of(lambda: a @ a, 5)
        gemm = 2 * 1024 ** 3 / t
        model_rate = 2 * total * n / t_fwd
        print(f"fp32_gemm_rate_1024: {gemm / 1e9:.1f} GFLOP/s")
        print(f"model_rate_batched: {model_rate / 1e9:.2f} GFLOP/s  ({100 * model_rate / gemm:.1f} % of GEMM rate)")


def bench_model(variant: str, batch: int) -> None:
    """Bare model: eval forward (inference mode) and one training step (forward, backward, Adam) per pixel."""
    torch.manual_seed(0)
    model = build_model("das2f", num_classes=11, variant=variant)
    ms, pan = torch.randn(batch, 4, 16, 16), torch.randn(batch, 1, 64, 64)
    target = torch.randint(0, 11, (batch,))
    model.eval()
    with torch.inference_mode():
        t_eval = best_of(lambda: model(ms, pan), 2)
    model.train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def step() -> None:
        loss, _ = model.training_step((ms, pan), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    t_train = best_of(step, 1)
    from mmlc.models.macs import count_macs

    with torch.inference_mode():
        macs = count_macs(model, torch.zeros(1, 4, 16, 16), torch.zeros(1, 1, 64, 64)).per_sample
    total = macs + sum(analytic_macs(variant))
    a = torch.randn(1024, 1024)
    gemm = 2 * 1024 ** 3 / best_of(lambda: a @ a, 5)
    for name, t, flops in (("eval", t_eval, 2 * total), ("train_step", t_train, 6 * total)):
        rate = flops * batch / t
        print(f"model_{name}_b{batch}_ms_per_px: {t * 1e3 / batch:.2f} ms/px  "
              f"({100 * rate / gemm:.1f} % of GEMM rate; {'3x' if name != 'eval' else '1x'} forward FLOPs)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pixels", type=int, default=2048, help="scene pixels to classify (subset, extrapolated)")
    ap.add_argument("--variant", default="nanjing", choices=sorted(VARIANT_STAGES))
    ap.add_argument("--batch", type=int, default=64,
                    help="batched-mode batch (64: on CPU a larger batch pushes the scan state out of L2)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (1: on a shared 2-core machine, 2 threads spin-wait on each other)")
    ap.add_argument("--skip-scan", action="store_true")
    ap.add_argument("--skip-model", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.skip_scan:
        bench_scan()
    if not args.skip_model:
        bench_model(args.variant, args.batch)
    bench_scene(args.pixels, args.variant, args.batch)


if __name__ == "__main__":
    main()
