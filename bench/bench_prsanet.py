"""PRSANet costs on this machine: inference throughput and the price of its training extras.

Default network (D = 128, graph fusion, two modalities of 10 + 2 bands, 11 x 11 patches, K = 7)
on random inputs. Measures, side by side in one run (the machine is shared and noisy, so read the
ratios rather than the absolute figures):
* eval forward throughput (patches/s), graph fusion and the concat baseline;
* a training step (forward + backward) with the full PRSANet objective (CE + semantic alignment +
  prototype loss + PER, prototype bookkeeping) versus plain CE on the fused logits: the overhead
  ratio of the rebalancing machinery;
* the same for a hyperspectral modality (144 bands, 3-D stem) + LiDAR (1 band).
Prints one line per measure.  Usage: PYTHONPATH=build/pkg python bench/bench_prsanet.py
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from mmlc.models import build_model
from timing import timed_pair  # noqa: E402  (bench/ is on sys.path when run as a script)

BATCH, PATCH, K, REPEAT = 64, 11, 7, 7


def bench(bands: list[int], label: str) -> None:
    torch.manual_seed(0)
    x = [torch.randn(BATCH, b, PATCH, PATCH) for b in bands]
    y = torch.randint(0, K, (BATCH,))
    graph = build_model("prsanet", num_classes=K, modalities=bands)
    concat = build_model("prsanet", num_classes=K, modalities=bands, graph_fusion=False)

    def forward(net: torch.nn.Module) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad():
                return net.eval()(*x)
        return run

    t_graph, t_concat = timed_pair(forward(graph), forward(concat), REPEAT)
    print(f"prsanet[{label}] eval forward graph fusion: {BATCH / t_graph:.0f} patches/s")
    print(f"prsanet[{label}] eval forward concat fusion: {BATCH / t_concat:.0f} patches/s "
          f"(graph/concat time ratio {t_graph / t_concat:.2f})")

    graph.train()

    def full_step() -> None:
        loss, _ = graph.training_step(x, y)
        loss.backward()

    def plain_step() -> None:
        F.cross_entropy(graph(*x), y).backward()

    t_full, t_plain = timed_pair(full_step, plain_step, REPEAT)
    print(f"prsanet[{label}] training step full objective: {BATCH / t_full:.0f} patches/s")
    print(f"prsanet[{label}] training step plain CE: {BATCH / t_plain:.0f} patches/s "
          f"(full/plain time ratio {t_full / t_plain:.2f})")


if __name__ == "__main__":
    torch.set_num_threads(1)  # a shared 2-core machine: two contended threads are slower and noisier
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {BATCH}, patch {PATCH}")
    bench([10, 2], "S2 10 + S1 2 bands")
    bench([144, 1], "HSI 144 + LiDAR 1 band")
