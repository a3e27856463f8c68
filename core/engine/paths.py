"""The two inference paths, one per head kind (the model card's ``head_kind``, never the
architecture name), and the driver that runs either over its threads.

* ``dense`` (:func:`run_dense`): overlapping tiles (:func:`.tiling.tile_starts`) whose softmax
  probabilities are blended (:class:`.tiling.TileBlender`), finished pixels streamed to the sink.
* ``patch`` (:func:`run_patch`): every valid pixel is classified from the patch centred on it.
  Windows are read once with a halo large enough for the patches (:func:`.tiling.patch_halo`),
  and patches are cut as strided views (``Tensor.unfold``) of the window, never one read per
  pixel: the patch of output pixel (r, c) in modality m starts at (ratio*r - anchor,
  ratio*c - anchor) (registry ``ModalitySpec``).

:func:`_drive` runs a path's per-batch step on the model workers between the reader
(:mod:`.prefetch`) and the writer stage (:mod:`.pipeline`); every pixel leaves as soon as no
later tile touches it, so memory does not grow with the raster height.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from ..errors import ModelFileError
from ..modelfiles.modelfile import ModelCard
from ..progress import Progress, Steps, check_cancel
from . import heap
from .aligned_inputs import AlignedInputs
from .forward import ForwardTicks, Runner
from .pipeline import ModelWorkers, cpu_workers, stage
from .prefetch import Prefetcher, ReadBatch, Window, normalise_in_reader, to_model_inputs
from .tiling import Axis, Sink, TileBlender, patch_halo, tile_starts

#: Share of the bar for loading the network (its modules and weights), before the first batch.
LOADED: float = 0.05


@dataclass
class InferenceStats:
    """What a path did: windows run, valid pixels handed to the sink, its helpers' CPU time."""

    tiles: int = 0
    valid_pixels: int = 0
    read_cpu_s: float = 0.0  # CPU time of the reader thread
    write_cpu_s: float = 0.0  # CPU time of blending + writing (writer thread, or inline)
    workers: int = 1  # model worker threads (batch parallelism on a CPU)


def _check_logits(probs: np.ndarray, expect: tuple[int, ...], card: ModelCard) -> None:
    if probs.shape[1:] != expect:
        raise ModelFileError(
            f"the {card.architecture} network returned shape {tuple(probs.shape)}, expected (batch, "
            f"{', '.join(str(e) for e in expect)}) for a {card.head_kind} model with {card.num_classes} classes"
        )


def run_dense(inputs: AlignedInputs, card: ModelCard, runner: Runner, sink: Sink, tile: int, overlap: int,
              progress: Progress, background: bool = True, workers: Optional[int] = None) -> InferenceStats:
    """Dense path: overlapping tiles, blended probabilities, finished pixels streamed to ``sink``.

    inputs: opened (and cut) by the caller, who closes them; read here on the reader thread.
    runner: the network (built by :meth:`.forward.Runner.start` while the reader fills its first
    batches) and its batch of tiles per forward pass.
    background: read on a reader thread and blend + write on a writer thread
    (:class:`BackgroundStage`) while the model runs, on ``workers`` model threads at once
    (:class:`ModelWorkers`; default :func:`cpu_workers`); False does everything on the calling
    thread.
    """
    import torch

    grid = inputs.grid
    rs, cs = tile_starts(grid.height, tile, overlap), tile_starts(grid.width, tile, overlap)
    windows = [Window(r, c, tile, tile, 0, i, j) for i, r in enumerate(rs) for j, c in enumerate(cs)]
    blender = TileBlender(card.num_classes, Axis.of(grid.height, rs, tile), Axis.of(grid.width, cs, tile), sink)
    stats = InferenceStats(tiles=len(windows))
    steps = Steps(progress, len(windows), "tiles", start=LOADED, end=0.95, begin=False)
    ticks = ForwardTicks(steps)
    pre = Prefetcher(inputs, card.modalities, windows, group=runner.batch, threaded=background,
                     normalise=normalise_in_reader(runner.device))

    def compute(item: ReadBatch) -> tuple:  # on a model worker
        check_cancel(progress)
        keep = item.keep
        probs = None
        if keep:
            with torch.inference_mode():
                xs = to_model_inputs(item, card.modalities, runner.device,
                                     None if len(keep) == len(item.windows) else keep)
            probs, left = ticks.run(len(item.windows), lambda: runner(xs))
            _check_logits(probs, (card.num_classes, tile, tile), card)
            return left, ([(w.i, w.j) for w in item.windows], probs, keep, item.valids)
        return len(item.windows), ([(w.i, w.j) for w in item.windows], probs, keep, item.valids)

    try:
        return _drive(pre, runner, stage(blender.add_batch, background), blender, compute, stats, steps,
                      progress, background, workers, on_ready=ticks.attach)
    finally:
        ticks.detach()


def run_patch(inputs: AlignedInputs, card: ModelCard, runner: Runner, sink: Sink, tile: int,
              progress: Progress, background: bool = True, workers: Optional[int] = None) -> InferenceStats:
    """Patch path: every valid pixel classified from its centred patch, cut from window + halo.

    inputs and runner as in :func:`run_dense` (the runner's batch counts patches here).
    Windows do not overlap, so each goes to ``sink`` whole as soon as its patches are done
    (through the same :class:`TileBlender`, which then has nothing to blend). ``workers``
    defaults to 1 here (torch's intra-op threads on each forward): a worker takes whole windows,
    so a raster of few windows leaves the others idle (measured: das2f-demo on one 64 x 64
    window, 93 s with 1 worker x 2 threads, 132 s with 2 workers x 1).
    """
    import torch

    grid = inputs.grid
    for m in card.modalities:
        if m.patch_size <= 0:
            raise ModelFileError(f"the model card of this patch model gives no patch size for modality {m.name!r}")
    halo = patch_halo(card.modalities)
    rs = list(range(0, grid.height, tile))
    cs = list(range(0, grid.width, tile))
    windows = [Window(r, c, min(tile, grid.height - r), min(tile, grid.width - c), halo, i, j)
               for i, r in enumerate(rs) for j, c in enumerate(cs)]
    blender = TileBlender(card.num_classes, Axis.of(grid.height, rs, tile), Axis.of(grid.width, cs, tile), sink)
    stats = InferenceStats(tiles=len(windows))
    steps = Steps(progress, grid.width * grid.height, "pixels", start=LOADED, end=0.95, begin=False)  # moves per patch batch, not per window
    ticks = ForwardTicks(steps)  # and inside each batch's forward pass
    pre = Prefetcher(inputs, card.modalities, windows, threaded=background,
                     normalise=normalise_in_reader(runner.device))

    def compute(item: ReadBatch) -> tuple:  # on a model worker
        w, valid = item.windows[0], item.valids[0]
        ri, ci = np.nonzero(valid)
        units = float(w.rows * w.cols)  # this window's share of the bar, handed out per patch batch
        probs = None
        if ri.size:
            probs = np.zeros((card.num_classes, w.rows, w.cols), np.float32)
            with torch.inference_mode():
                views = []
                for t, m in zip(to_model_inputs(item, card.modalities, runner.device), card.modalities):
                    k, p, anc = m.grid_ratio, m.patch_size, m.patch_anchor
                    off = k * halo - anc
                    views.append(t[0, :, off:, off:].unfold(1, p, k).unfold(2, p, k))  # (C, nR, nC, p, p)
                ri_t = torch.from_numpy(ri).to(runner.device)
                ci_t = torch.from_numpy(ci).to(runner.device)
                s = 0
                while s < ri.size:
                    check_cancel(progress)
                    chunk = runner.batch  # patches per forward (may be lowered on CUDA OOM)
                    sel_r, sel_c = ri_t[s:s + chunk], ci_t[s:s + chunk]
                    batch = [v[:, sel_r, sel_c].permute(1, 0, 2, 3).contiguous() for v in views]
                    part = w.rows * w.cols * min(chunk, ri.size - s) / ri.size
                    out, left = ticks.run(part, lambda: runner(batch))
                    _check_logits(out, (card.num_classes,), card)
                    probs[:, ri[s:s + chunk], ci[s:s + chunk]] = out.T
                    steps.advance(left)
                    units -= part
                    s += chunk
        check_cancel(progress)
        return max(units, 0.0), (w.i, w.j, probs, valid)

    try:
        return _drive(pre, runner, stage(blender.add, background), blender, compute, stats, steps,
                      progress, background, 1 if workers is None else workers, on_ready=ticks.attach)
    finally:
        ticks.detach()


def _drive(pre: Prefetcher, runner: Runner, stage: Any, blender: TileBlender,
           compute: Callable[[ReadBatch], tuple[float, tuple]],
           stats: InferenceStats, steps: Steps, progress: Progress, background: bool,
           workers: Optional[int], on_ready: Optional[Callable[[Any], None]] = None) -> InferenceStats:
    """Run ``compute`` (read batch -> (progress units done and not yet reported to ``steps``, the
    stage's arguments)) on every batch the reader delivers,
    on the model workers, and hand the results to ``stage`` in order; start and stop all threads
    together.

    The network is built while the reader fills its first batches. On success the writer is
    drained (its errors raised); on any error or cancel the steps not started are dropped, the
    writer drops what is queued and stops, and the reader stops in every case, so no thread
    outlives the run (and torch's thread count is the caller's again). The bar stands at 0 while
    the network loads and at ``steps.start`` once it has (``on_ready`` gets the network then).
    """
    import torch

    threads = torch.get_num_threads()
    n = 1 if not background else (cpu_workers(runner.device, threads) if workers is None else max(int(workers), 1))
    pool = None
    trim = heap.Trimmer()

    def hand_over(results: list) -> None:
        for units, args in results:
            stage(*args)
            trim()  # free pages scattered over the threads' arenas go back when they pile up
            steps.advance(units)

    try:
        progress.set_fraction(0.0)
        pre.start()
        t0 = time.perf_counter()
        runner.start()
        progress.info(f"network ready in {time.perf_counter() - t0:.1f} s")
        if on_ready is not None:
            on_ready(runner.model)
        steps.begin()
        pool = ModelWorkers(n, threads // n)
        for item in pre:
            hand_over(pool.submit(compute, item))
        hand_over(pool.drain())
        stage.close()
    except BaseException:
        stage.cancel()
        raise
    finally:  # the workers stop (steps not started dropped) before the reader
        if pool is not None:
            pool.close()
        pre.close()
    stats.read_cpu_s, stats.write_cpu_s = pre.cpu_s, stage.cpu_s
    stats.valid_pixels = blender.valid_pixels
    stats.workers = n
    return stats
