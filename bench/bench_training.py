"""Training engine benchmarks: sampler throughput and the generic loop's overhead over a bare loop.

Run: ``PYTHONPATH=build/pkg .venv/bin/python bench/bench_training.py``. One result line per
measure. The loop overhead is measured side by side (same batches count, same network) so the
ratio holds on a shared, noisy machine.
"""
from __future__ import annotations

import glob
import tempfile
import time
from pathlib import Path

import torch
from mmlc.core.data.datasets import Scene, load_scene
from mmlc.core.data.prepare import prepare_data, resolve_classes
from mmlc.core.data.samplers import DenseTileSampler, PatchSampler, collate
from mmlc.core.fitting.checkpoint import resume_path_for
from mmlc.core.fitting.loop import LoopConfig, run_loop
from mmlc.models.registry import get_spec

ROOT = Path(__file__).resolve().parent.parent
BEN = ROOT / "resources" / "sample_data" / "bigearthnet"


class _NoValidation:
    def __len__(self) -> int:
        return 0


def main() -> None:
    torch.set_num_threads(2)
    s2 = sorted(glob.glob(str(BEN / "*__s2_10band_10m.tif")))
    scenes = [Scene([p, p.replace("s2_10band_10m", "s1_vv_vh_db")], p.replace("s2_10band_10m", "weak_label_s2rules"))
              for p in s2]
    t = time.perf_counter()
    datas = [load_scene(s, [1, 1]) for s in scenes]
    print(f"load_scenes: {len(datas)} scenes of 120x120 (10+2 bands) in {time.perf_counter() - t:.3f} s")
    classes = resolve_classes(datas, None)
    data = prepare_data(datas, ["optical", "sar"], [1, 1], classes=classes, validation_fraction=0.2, seed=0, tile=64)

    dense = DenseTileSampler(data.scenes, 64, 400, seed=0)
    t = time.perf_counter()
    for i in range(400):
        dense.item(0, i)
    dt = time.perf_counter() - t
    print(f"dense_sampler: {400 / dt:.0f} tiles/s (64x64, 12 bands, class-aware crop + D4 augmentation)")

    patch = PatchSampler(data.scenes, [11, 11], [5, 5], seed=0)
    n = min(20000, len(patch))
    t = time.perf_counter()
    for i in range(n):
        patch.item(0, i)
    dt = time.perf_counter() - t
    print(f"patch_sampler: {n / dt:.0f} patches/s (11x11, 2 modalities, D4 augmentation)")

    # generic loop vs bare loop, HFD-Net ResNet-18 on the SAR bands, tile 64, batch 4, 8 steps
    spec = get_spec("hfdnet")
    sar_only = [type(s)(s.name, [s.arrays[1]], s.target, s.train, s.val, [1]) for s in data.scenes]
    sampler = DenseTileSampler(sar_only, 64, 32, seed=0)
    steps, batch = 8, 4
    batches = [collate([sampler.item(0, b * batch + i) for i in range(batch)]) for b in range(steps)]

    torch.manual_seed(0)
    net = spec.builder(num_classes=len(classes), in_channels=2, encoder="resnet18")
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    net.train()
    net.training_step(*batches[0])[0].backward()  # warm-up
    opt.zero_grad()
    t = time.perf_counter()
    for inputs, target in batches:
        loss, _ = net.training_step(inputs, target)
        loss.backward()
        opt.step()
        opt.zero_grad()
    bare = time.perf_counter() - t

    torch.manual_seed(0)
    net = spec.builder(num_classes=len(classes), in_channels=2, encoder="resnet18")
    cfg = LoopConfig(epochs=1, batch_size=batch, lr=0.01, optimizer="sgd", max_steps_per_epoch=steps, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        rp = resume_path_for(Path(tmp) / "m.mmlc")
        t = time.perf_counter()
        run_loop(net, sampler, _NoValidation(), cfg, classes, torch.device("cpu"), resume_path=rp)
        loop = time.perf_counter() - t
        size = rp.stat().st_size / 1e6 if rp.exists() else 0.0
    print(f"loop_vs_bare: {loop / bare:.2f}x ({loop / steps * 1000:.0f} ms/step generic loop incl. sampling, "
          f"schedule and one resume checkpoint of {size:.0f} MB; {bare / steps * 1000:.0f} ms/step bare "
          f"training_step+SGD; hfdnet resnet18, 4x2x64x64)")
    t = time.perf_counter()
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    with tempfile.TemporaryDirectory() as tmp:
        torch.save({"net": sd, "rng": torch.get_rng_state()}, Path(tmp) / "c.pt")
    print(f"checkpoint_write: {time.perf_counter() - t:.3f} s for {sum(v.numel() for v in sd.values()) / 1e6:.1f} M values")


if __name__ == "__main__":
    main()
