"""HFD-Net costs on this machine: SAR inference speed, the HFAM alignment and the HFDM overhead.

Random inputs, K = 4, student of 2 SAR bands, teacher of 10 optical bands, spec width 256.
Measures, side by side in one run (the machine is shared and noisy, so read the ratios rather
than the absolute figures):
* eval forward of the deployed student (resnet18 / resnet50 encoders) on a 256 x 256 tile, in
  megapixels per second, with and without the flow alignment (``align=False`` ablation);
* one training step (forward + backward) of the student alone versus one distillation step
  (frozen teacher forward + student + adapters + feature and logit losses): the HFDM overhead.
Prints one line per measure.  Usage: PYTHONPATH=build/pkg python bench/bench_hfdnet.py
"""
from __future__ import annotations

from typing import Callable

import torch
from mmlc.models import build_model
from mmlc.models.hfd_distill import HFDDistiller
from timing import timed_pair  # noqa: E402  (bench/ is on sys.path when run as a script)

K, TILE, REPEAT = 4, 256, 5


def bench_inference(encoder: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 2, TILE, TILE)
    nets = {align: build_model("hfdnet", num_classes=K, in_channels=2, encoder=encoder, align=align).eval()
            for align in (True, False)}

    def run(net: torch.nn.Module) -> Callable[[], object]:
        def go() -> object:
            with torch.no_grad():
                return net(x)
        return go

    t_al, t_plain = timed_pair(run(nets[True]), run(nets[False]), REPEAT)
    mpx = TILE * TILE / 1e6
    print(f"hfdnet[{encoder}] eval forward {TILE}x{TILE} SAR tile: {mpx / t_al:.3f} Mpx/s ({t_al * 1e3:.0f} ms)")
    print(f"hfdnet[{encoder}] HFAM flow alignment cost: aligned/unaligned forward time ratio "
          f"{t_al / t_plain:.2f}")


def bench_distillation(encoder: str, batch: int = 2, size: int = 128) -> None:
    torch.manual_seed(0)
    teacher = build_model("hfdnet", num_classes=K, in_channels=10, encoder=encoder)
    student = build_model("hfdnet", num_classes=K, in_channels=2, encoder=encoder)
    distiller = HFDDistiller(teacher, student).train()
    x_opt, x_sar = torch.randn(batch, 10, size, size), torch.randn(batch, 2, size, size)
    y = torch.randint(0, K, (batch, size, size))

    def student_step() -> None:
        loss, _ = student.training_step([x_sar], y)
        loss.backward()

    def distil_step() -> None:
        loss, _ = distiller.training_step([x_opt, x_sar], y)
        loss.backward()

    t_s, t_d = timed_pair(student_step, distil_step, REPEAT)
    print(f"hfdnet[{encoder}] train step student alone, batch {batch} x {size}^2: {t_s * 1e3:.0f} ms")
    print(f"hfdnet[{encoder}] distillation step (teacher + student + HFDM losses): {t_d * 1e3:.0f} ms "
          f"(distil/student time ratio {t_d / t_s:.2f})")


if __name__ == "__main__":
    torch.set_num_threads(1)  # one intra-op thread: stable figures on a shared 2-core machine
    print(f"hfdnet bench: torch {torch.__version__}, {torch.get_num_threads()} thread, CPU")
    for enc in ("resnet18", "resnet50"):
        bench_inference(enc)
    bench_distillation("resnet18")
