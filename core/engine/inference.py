"""Tiled inference over an output grid: windows, prefetch, batching, blending, streaming.

One code path per head kind (the model card's ``head_kind``, never the architecture name):

* ``dense``: tiles of ``tile`` x ``tile`` pixels, evenly spaced so that neighbours share at least
  ``overlap`` pixels (:func:`tile_starts`); each tile's class probabilities are weighted by a
  separable sin^2 ramp over the pixels it shares with each neighbour (:func:`ramp_weights`), so
  blended maps have no seams. Blending softmax probabilities rather than logits is a design
  choice (robust when logit scales differ between tiles).
* ``patch``: every valid pixel is classified from the patch centred on it. Windows are read once
  with a halo large enough for the patches (:func:`patch_halo`), and patches are cut as strided
  views (``Tensor.unfold``) of the window, never one read per pixel: the patch of output pixel
  (r, c) in modality m starts at (ratio*r - anchor, ratio*c - anchor) (registry ``ModalitySpec``).

Threads share the work so that the model never waits: a reader (:class:`Prefetcher`, its
own GDAL handles) reads, normalises and stacks the next batches of windows; the model runs on
the next batches (:class:`ModelWorkers`: for dense models on a CPU several single-threaded
workers side by side, see :func:`cpu_workers`; otherwise the calling thread); a writer (:class:`BackgroundStage`)
blends the tiles (:class:`TileBlender`), in order, and writes the finished pixels. Memory does not grow with the raster
height: the blender keeps only the strip that the next row of tiles overlaps, and every pixel
leaves as soon as no later tile touches it.
"""
from __future__ import annotations

import contextlib
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from ..data.labels import LabelSource
from ..data.patches import halo_for
from ..errors import InputError, ModelFileError
from ..modelfiles.modelfile import ModelCard
from ..progress import NullProgress, Progress, Steps, check_cancel
from . import heap
from .grid import Grid
from .io import AlignedReader
from .normalize import model_input

#: A sink receives finished rectangles: (row0, col0, probabilities (K, h, w) float32, valid (h, w)).
#: The rectangles are disjoint and together cover the grid once; the arrays are valid only
#: during the call.
Sink = Callable[[int, int, np.ndarray, np.ndarray], None]

#: Patches per forward in patch mode = batch_size x this (a "batch unit" of patches).
PATCHES_PER_BATCH_UNIT: int = 256
#: Default window side in patch mode when neither the caller nor the card gives one.
DEFAULT_PATCH_WINDOW: int = 64
#: Batches read ahead by the background reader.
PREFETCH: int = 2
#: Batches of model output queued for the writer thread.
WRITE_QUEUE: int = 2

#: Most model workers on a CPU (see :func:`cpu_workers`): each holds one batch's activations.
CPU_WORKERS_MAX: int = 4


def cpu_workers(device: Any, threads: int) -> int:
    """Model worker threads for a run on ``device`` with ``threads`` intra-op threads: on a CPU,
    ``min(threads, CPU_WORKERS_MAX)``, each running whole batches with ``threads // workers``
    intra-op threads of its own; 1 on a GPU.

    Design choice (batch parallelism instead of only intra-op parallelism): on the 2-core
    reference machine, 2 workers x 1 thread ran the same forward passes 20 % (asanet-demo),
    12 % (hfdnet-demo) and 25-30 % (the overhead benchmark's net) faster than 1 worker x 2
    threads (docs/benchmarks.md): a thread of an operator's parallel region no longer waits at
    its barrier for the other, nor for a reader or writer thread that took its core.
    """
    return max(1, min(int(threads), CPU_WORKERS_MAX)) if _on_cpu(device) else 1


def _on_cpu(device: Any) -> bool:
    """Whether ``device`` (a torch device or its name) is the CPU."""
    return getattr(device, "type", str(device)) == "cpu"


class ModelWorkers:
    """``workers`` threads that run model steps on consecutive batches at once, results taken in
    submission order (:meth:`submit` returns the oldest step's result once ``workers`` steps are
    in flight, :meth:`drain` the rest), so the writer still gets tiles in row order.

    Each thread gives torch ``threads_each`` intra-op threads; torch's setting is global, so
    :meth:`close` restores the caller's. With ``workers`` 1 the steps run on the calling thread
    and torch's threads are left alone.
    """

    def __init__(self, workers: int, threads_each: int) -> None:
        from collections import deque

        self.workers = max(int(workers), 1)
        self._pending: Any = deque()
        self._pool = None
        self._prev_threads: Optional[int] = None
        if self.workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            import torch

            self._prev_threads = torch.get_num_threads()
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="mmlc-model",
                                            initializer=torch.set_num_threads, initargs=(max(int(threads_each), 1),))

    def submit(self, fn: Callable[[Any], Any], item: Any) -> list[Any]:
        """Start ``fn(item)``; returns the results that are due, oldest first (maybe none)."""
        if self._pool is None:
            return [fn(item)]
        self._pending.append(self._pool.submit(fn, item))
        return [self._pending.popleft().result()] if len(self._pending) >= self.workers else []

    def drain(self) -> list[Any]:
        """The results of the steps still in flight, in submission order."""
        out = []
        while self._pending:
            out.append(self._pending.popleft().result())
        return out

    def close(self) -> None:
        """Drop steps not started, wait for running ones, restore torch's thread count; never raises."""
        if self._pool is not None:
            for f in self._pending:
                f.cancel()
            self._pending.clear()
            self._pool.shutdown(wait=True)
            self._pool = None
            import torch

            torch.set_num_threads(self._prev_threads)


class BackgroundStage:
    """Runs ``fn(*args)`` for each call on a worker thread, in call order.

    The calling thread hands its arguments over (they must not be reused by the caller); at
    most ``depth`` calls wait in the queue, so memory stays bounded. An error in the worker is
    raised in the caller at the next call or at :meth:`close`; after an error or
    :meth:`cancel` the remaining calls are dropped.
    """

    def __init__(self, fn: Callable[..., None], depth: int = WRITE_QUEUE, name: str = "mmlc-writer") -> None:
        self._fn = fn
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: Optional[BaseException] = None
        self._dropping = False
        self.cpu_s = 0.0  # CPU time the worker spent in ``fn``
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None and not self._dropping:
                t = time.thread_time()
                try:
                    self._fn(*item)
                except BaseException as e:  # handed to the caller
                    self._error = e
                self.cpu_s += time.thread_time() - t

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def __call__(self, *args: Any) -> None:
        self._raise()
        self._queue.put(args)

    def close(self) -> None:
        """Wait for every queued call to finish; re-raise a worker error."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()

    def cancel(self) -> None:
        """Drop the queued calls and stop the worker (after a failure or cancel); never raises."""
        self._dropping = True
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


class InlineStage:
    """The interface of :class:`BackgroundStage`, running ``fn`` on the calling thread."""

    def __init__(self, fn: Callable[..., None]) -> None:
        self._fn = fn
        self.cpu_s = 0.0

    def __call__(self, *args: Any) -> None:
        t = time.thread_time()
        try:
            self._fn(*args)
        finally:
            self.cpu_s += time.thread_time() - t

    def close(self) -> None:
        pass

    def cancel(self) -> None:
        pass


# --- tile geometry ---------------------------------------------------------------------
def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``size`` pixels, evenly spaced.

    As few tiles as possible such that neighbours share at least ``overlap`` pixels
    (``ceil((size - overlap) / (tile - overlap))``), spread evenly from 0 to ``size - tile``
    (design choice: equal overlaps instead of a regular stride with the last tile moved back
    onto the previous one, which would also make the strip kept between tile rows uneven).
    A raster smaller than one tile gets a single (padded) tile at 0.
    """
    if tile <= overlap:
        raise InputError(f"tile size {tile} must be larger than the overlap {overlap}")
    if size <= tile:
        return [0]
    n = -(-(size - overlap) // (tile - overlap))
    span = size - tile
    return [(i * span + (n - 1) // 2) // (n - 1) for i in range(n)]


def ramp_weights(length: int, ramp_in: int, ramp_out: int) -> np.ndarray:
    """1-D blending weights of a tile of ``length``: sin^2 up over its first ``ramp_in`` pixels
    (shared with the previous tile), cos^2 down over its last ``ramp_out`` (shared with the
    next), 1 elsewhere.

    With the ramps over exactly the shared pixels, the weights of two neighbours sum to 1 there
    (sin^2 + cos^2); where three tiles meet (a raster barely larger than two tiles) they do not,
    which :class:`TileBlender` corrects by normalising shared pixels.
    """
    w = np.ones(length, np.float32)
    if ramp_in > 0:
        t = (np.arange(ramp_in, dtype=np.float64) + 0.5) / ramp_in
        w[:ramp_in] *= (np.sin(t * math.pi / 2) ** 2).astype(np.float32)
    if ramp_out > 0:
        t = (np.arange(ramp_out, dtype=np.float64) + 0.5) / ramp_out
        w[length - ramp_out:] *= (np.cos(t * math.pi / 2) ** 2).astype(np.float32)
    return w


def patch_halo(cards: Sequence[Any]) -> int:
    """Halo (output pixels) a window needs so that every pixel's patch lies in the read block
    (:func:`.patches.halo_for` over the modalities)."""
    return max((halo_for(int(m.patch_size), int(m.patch_anchor), int(m.grid_ratio)) for m in cards), default=0)


# --- blending --------------------------------------------------------------------------
@dataclass
class Axis:
    """Tiles along one axis of the grid: starts and extents (clipped to the grid)."""

    starts: list[int]
    sizes: list[int]

    @classmethod
    def of(cls, size: int, starts: Sequence[int], tile: int) -> "Axis":
        return cls(list(starts), [min(tile, size - s) for s in starts])

    def final(self, i: int) -> int:
        """Pixels of tile i (from its start) that no later tile touches."""
        return self.starts[i + 1] - self.starts[i] if i + 1 < len(self.starts) else self.sizes[i]

    def shared_before(self, i: int) -> int:
        """Pixels at the start of tile i shared with tile i - 1."""
        return max(self.starts[i - 1] + self.sizes[i - 1] - self.starts[i], 0) if i > 0 else 0

    def ramp(self, i: int) -> np.ndarray:
        return ramp_weights(self.sizes[i], self.shared_before(i), self.sizes[i] - self.final(i))


class TileBlender:
    """Blends overlapping tiles, given in row-major order, and hands every pixel to ``sink`` as
    soon as no later tile touches it.

    State kept between tiles: the part of the previous tile shared with the current one (a
    tile's width x the overlap) and, across tile rows, the strip shared with the next tile row
    (the overlap x the grid width). A tile's own weighted probabilities are computed only on its
    shared borders; its inside (weight 1, no other tile) goes out as the model produced it.
    Pixels shared by tiles are normalised by their class sum, which is their total weight
    (every tile's probabilities sum to 1), so a tile without a valid pixel (``probs`` None)
    simply contributes nothing.
    """

    def __init__(self, num_classes: int, rows: Axis, cols: Axis, sink: Sink) -> None:
        self.K, self.rows, self.cols, self.sink = num_classes, rows, cols, sink
        self.W = cols.starts[-1] + cols.sizes[-1]  # the grid width: the last tile ends at the border
        self.wr = [rows.ramp(i) for i in range(len(rows.starts))]
        self.wc = [cols.ramp(j) for j in range(len(cols.starts))]
        self.below: Optional[tuple[np.ndarray, np.ndarray]] = None  # strip shared with this tile row
        self._below_next: Optional[tuple[np.ndarray, np.ndarray]] = None
        self.right: Optional[tuple[np.ndarray, np.ndarray]] = None  # part shared with the next tile
        self.valid_pixels = 0

    def add(self, i: int, j: int, probs: Optional[np.ndarray], valid: np.ndarray) -> None:
        """Tile (i, j): ``probs`` (K, >=h, >=w) softmax probabilities (modified in place) or None,
        ``valid`` (>=h, >=w); both are cut to the tile's extent on the grid."""
        h, w = self.rows.sizes[i], self.cols.sizes[j]
        r0, c0 = self.rows.starts[i], self.cols.starts[j]
        ot, fr = self.rows.shared_before(i), self.rows.final(i)
        ol, fc = self.cols.shared_before(j), self.cols.final(j)
        valid = np.array(valid[:h, :w], copy=True)
        p = np.zeros((self.K, h, w), np.float32) if probs is None else probs[:, :h, :w]
        if probs is not None:
            wr, wc = self.wr[i], self.wc[j]
            if ot:
                p[:, :ot] *= wr[:ot, None]
            if fr < h:
                p[:, fr:] *= wr[fr:, None]
            if ol:
                p[:, :, :ol] *= wc[:ol]
            if fc < w:
                p[:, :, fc:] *= wc[fc:]
        if j == 0:
            self.right = None
            self._below_next = (np.empty((self.K, h - fr, self.W), np.float32),
                                np.empty((h - fr, self.W), bool)) if fr < h else None
        if self.right is not None:
            rp, rv = self.right
            p[:, :, :ol] += rp
            valid[:, :ol] |= rv
        if self.below is not None and ot:
            bp, bv = self.below
            p[:, :ot, ol:] += bp[:, :, c0 + ol:c0 + w]
            valid[:ot, ol:] |= bv[:, c0 + ol:c0 + w]
        # shared pixels of the final part: normalise by the total weight (= the class sum)
        fin, fvalid = p[:, :fr, :fc], valid[:fr, :fc]
        for part in (np.s_[:, :min(ot, fr), :], np.s_[:, min(ot, fr):, :min(ol, fc)]):
            q = fin[part]
            if q.size:
                total = q.sum(axis=0)
                fvalid[part[1:]] &= total > 0
                q /= np.maximum(total, 1e-12)
        self.valid_pixels += int(np.count_nonzero(fvalid))
        self.sink(r0, c0, fin, fvalid)
        self.right = (p[:, :, fc:].copy(), valid[:, fc:].copy()) if fc < w else None
        if self._below_next is not None:
            self._below_next[0][:, :, c0:c0 + fc] = p[:, fr:, :fc]
            self._below_next[1][:, c0:c0 + fc] = valid[fr:, :fc]
        if j == len(self.cols.starts) - 1:
            self.below, self._below_next = self._below_next, None

    def add_batch(self, tiles: Sequence[tuple[int, int]], probs: Optional[np.ndarray], keep: Sequence[int],
                  valids: Sequence[np.ndarray]) -> None:
        """Tiles of one forward: ``probs[n]`` belongs to ``tiles[keep[n]]``; the others had no
        valid pixel and were not run."""
        slot = {k: n for n, k in enumerate(keep)}
        for k, (i, j) in enumerate(tiles):
            n = slot.get(k)
            self.add(i, j, None if n is None or probs is None else probs[n], valids[k])


# --- background reading ----------------------------------------------------------------
@dataclass
class Window:
    """A window of the output grid: core (row0, col0, rows, cols) read with ``halo``; tile (i, j)."""

    row0: int
    col0: int
    rows: int
    cols: int
    halo: int = 0
    i: int = 0
    j: int = 0


@dataclass
class ReadBatch:
    """Consecutive windows of one shape as read: one (n, C, h, w) array per input in the file's
    own data type, with its (n, h, w) nodata mask (None: no nodata in the batch), and the
    (rows, cols) validity of each window's core. :func:`to_model_inputs` normalises them."""

    windows: list[Window]
    arrays: list[np.ndarray]
    masks: list[Optional[np.ndarray]]
    valids: list[np.ndarray]
    keep: list[int] = field(default_factory=list)  # windows with at least one valid pixel
    normalised: bool = False  # arrays already normalised float32 with nodata 0 (masks then None)


def to_model_inputs(batch: ReadBatch, cards: Sequence[Any], device: Any, rows: Any = None) -> list[Any]:
    """The batch's arrays as normalised float32 tensors on ``device`` (nodata -> 0), optionally
    only the windows ``rows``. Runs on the model's thread and device (see
    :func:`.normalize.apply_torch`) unless the reader normalised them already."""
    import torch

    from .normalize import apply_torch

    out = []
    for a, m, card in zip(batch.arrays, batch.masks, cards):
        if rows is not None:
            a = a[rows]
            m = None if m is None else m[rows]
        t = torch.from_numpy(a).to(device, non_blocking=True)
        if batch.normalised:
            out.append(t)
            continue
        mt = None if m is None else torch.from_numpy(m).to(device, non_blocking=True)
        out.append(apply_torch(t, card, mt))
    return out


_END = object()

#: Where the reader normalises (numpy, in its thread) instead of the model's thread (torch):
#: on a CPU the model's threads are better left to the model (measured: the same work took
#: 0.03 s in numpy on the reader thread and 0.05 s in torch on the model's, per 21 batches);
#: on a GPU the files' own types travel (1 byte a value for Byte imagery) and normalise there.
NORMALISE_IN_READER_ON_CPU: bool = True


def normalise_in_reader(device: Any) -> bool:
    """Whether the reader thread normalises the batches for a model on ``device``."""
    return NORMALISE_IN_READER_ON_CPU and _on_cpu(device)


class Prefetcher:
    """Read and stack batches of ``group`` windows in a background thread (``threaded``) or, when
    not, on the iterating thread as it asks for them.

    The thread opens its own :class:`AlignedReader` (GDAL handles are not shared across threads)
    with its row cache on (windows come in row order, so each input block is decoded once);
    GDAL releases the GIL while reading, so reading overlaps the model's forward pass. Each
    window is copied straight into its slot of the batch in the file's own data type. With
    ``normalise`` (a model on the CPU, :func:`normalise_in_reader`) this thread also normalises
    the batch; otherwise the model's side does (:func:`to_model_inputs`). Either way nodata
    becomes 0 (the training mean): such pixels are masked in the output anyway, and a finite
    value keeps them from poisoning neighbours. ``mask``: a mask raster or polygon layer
    (:class:`.labels.LabelSource` with ``presence``), read window by window on the same thread:
    pixels outside it are invalid like nodata (not classified; windows without any pixel inside
    are not run at all).
    """

    def __init__(self, paths: Sequence[str], ratios: Sequence[int], grid: Grid, cards: Sequence[Any],
                 windows: Sequence[Window], group: int = 1, depth: int = PREFETCH, threaded: bool = True,
                 normalise: bool = False, mask: Optional[str] = None) -> None:
        self.threaded, self.normalise, self.mask = threaded, normalise, mask
        self.paths, self.ratios, self.grid, self.cards = list(paths), list(ratios), grid, list(cards)
        self.windows = list(windows)
        self.group = max(int(group), 1)
        self.queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="mmlc-prefetch", daemon=True)
        self.wait_s = 0.0
        self.cpu_s = 0.0  # CPU time of the reader thread

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _batches(self) -> Iterator[list[Window]]:
        run: list[Window] = []
        for w in self.windows:
            if run and (len(run) == self.group or (w.rows, w.cols, w.halo) != (run[0].rows, run[0].cols, run[0].halo)):
                yield run
                run = []
            run.append(w)
        if run:
            yield run

    def _read_batches(self) -> Iterator[ReadBatch]:
        """Read the windows batch by batch (on whichever thread iterates)."""
        with contextlib.ExitStack() as stack:
            reader = stack.enter_context(AlignedReader(self.paths, self.ratios, self.grid, row_cache=True))
            inside = None if self.mask is None else stack.enter_context(
                LabelSource(self.mask, self.grid.crs_wkt, presence=True))
            dtypes = reader.dtypes(native=True)
            for run in self._batches():
                t = time.thread_time()
                w0 = run[0]
                n = len(run)
                arrays = [np.empty((n, c.bands, k * (w0.rows + 2 * w0.halo), k * (w0.cols + 2 * w0.halo)), dt)
                          for c, k, dt in zip(self.cards, self.ratios, dtypes)]
                masks: list[Optional[np.ndarray]] = [None] * len(arrays)
                valids = []
                for b, win in enumerate(run):
                    got: list = []
                    _, valid = reader.read(win.row0, win.col0, win.rows, win.cols, halo=win.halo,
                                           out=[a[b] for a in arrays], native=True, masks=got)
                    if inside is not None:  # the MASK layer: pixels outside it are not classified
                        valid &= inside.read(self.grid.window(win.row0, win.col0, win.rows, win.cols)) > 0
                    for m, bad in enumerate(got):
                        if bad is not None:
                            if masks[m] is None:
                                masks[m] = np.zeros((n,) + arrays[m].shape[2:], bool)
                            masks[m][b] = bad
                    valids.append(valid)
                keep = [b for b, v in enumerate(valids) if v.any()]
                if self.normalise:
                    arrays = [model_input(a, c, m) for a, m, c in zip(arrays, masks, self.cards)]
                    masks = [None] * len(arrays)
                self.cpu_s += time.thread_time() - t
                yield ReadBatch(run, arrays, masks, valids, keep, self.normalise)

    def _run(self) -> None:
        try:
            for batch in self._read_batches():
                if self.stop.is_set() or not self._put(batch):
                    return
        except BaseException as e:  # forwarded to the consumer
            self._put(e)
            return
        self._put(_END)

    def start(self) -> None:
        """Start reading (iterating starts it too); a no-op when reading inline."""
        if self.threaded and not self.thread.is_alive() and self.thread.ident is None:
            self.thread.start()

    def __iter__(self) -> Iterator[ReadBatch]:
        if not self.threaded:
            yield from self._read_batches()
            return
        self.start()
        while True:
            t = time.perf_counter()
            item = self.queue.get()
            self.wait_s += time.perf_counter() - t
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)


# --- forward with OOM back-off ---------------------------------------------------------
@dataclass
class Runner:
    """Runs the model on batches on ``device`` (inference mode, channels_last, autocast).

    On a CUDA out-of-memory error the batch is halved and the run continues (down to 1).
    ``model`` may be None with a ``loader`` that builds it: it is then built by :meth:`start`
    or at the first batch, so that building it overlaps the reader's first windows.
    """

    model: Any
    device: Any
    batch: int
    autocast: Any = None  # torch dtype or None
    progress: Progress = field(default_factory=NullProgress)
    loader: Optional[Callable[[], Any]] = None
    forward_s: float = 0.0  # summed over model workers
    _lock: Any = field(default_factory=threading.Lock, repr=False)

    def start(self) -> None:
        """Build the model now if it is still to be built."""
        if self.model is None:  # called by the driver before any worker runs
            if self.loader is None:
                raise ValueError("Runner needs a model or a loader")
            self.model = self.loader()

    def __call__(self, inputs: Sequence[Any]) -> np.ndarray:
        """Softmax probabilities (float32 numpy) for a batch: model-ready tensors (on the device)
        or float32 arrays."""
        import torch

        n = inputs[0].shape[0]
        outs = []
        i = 0
        while i < n:
            b = min(self.batch, n - i)
            try:
                outs.append(self._forward([x[i:i + b] for x in inputs]))
                i += b
            except torch.OutOfMemoryError:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if b <= 1:
                    raise InputError(
                        "the GPU ran out of memory even for one tile/patch batch; use a smaller tile size, "
                        "precision bf16/fp16, or device cpu"
                    ) from None
                self.batch = max(1, self.batch // 2)
                self.progress.warn(f"GPU out of memory: batch size lowered to {self.batch}")
        return outs[0] if len(outs) == 1 else np.concatenate(outs, axis=0)

    def _forward(self, xs: Sequence[Any]) -> np.ndarray:
        import torch

        self.start()
        t0 = time.perf_counter()
        with torch.inference_mode():
            ts = []
            for x in xs:
                t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
                t = t.to(self.device, non_blocking=True)
                if t.ndim == 4 and self.device.type == "cuda":
                    t = t.contiguous(memory_format=torch.channels_last)
                ts.append(t)
            if self.autocast is not None:
                with torch.autocast(self.device.type, dtype=self.autocast):
                    logits = self.model(*ts)
            else:
                logits = self.model(*ts)
            probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
        with self._lock:
            self.forward_s += time.perf_counter() - t0
        return probs


# --- progress inside a forward pass ----------------------------------------------------
#: Share of the bar for loading the network (its modules and weights), before the first batch.
LOADED: float = 0.05


class ForwardTicks:
    """Moves the bar while a batch is inside the network, for rasters of few tiles (one 256 x 256
    tile of ASANet is a few seconds on a CPU: the bar used to jump from 0 to 100).

    A forward hook on each top-level child module of the network (encoders, fusion, decoder...)
    advances a share of the running batch's units as that stage finishes; :meth:`run` returns
    what is left for the hand-over. Shares are per thread (model workers run batches side by
    side) and capped, so a module called twice or a batch retried after a GPU out-of-memory
    error never counts more than its batch. A cancel is honoured there too, between two stages
    of the forward pass, rather than after the whole batch.
    """

    def __init__(self, steps: Steps) -> None:
        self.steps = steps
        self.local = threading.local()
        self.handles: list = []
        self.stages = 0

    def attach(self, model: Any) -> None:
        """Hook the network's stages: its top-level modules and, for its top-level
        ModuleLists/ModuleDicts (a container itself is never called), the blocks of each member
        (ASANet's per-level fusion modules; DAS2F's stage = its MS, PAN and cross blocks, where
        nearly all of its time goes)."""
        import torch

        stages = []
        for child in (model.children() if hasattr(model, "children") else []):
            if isinstance(child, (torch.nn.ModuleList, torch.nn.ModuleDict)):
                for member in child.children():
                    stages += list(member.children()) or [member]
            else:
                stages.append(child)
        self.stages = len(stages)
        self.handles = [m.register_forward_hook(self._tick) for m in stages]

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def _tick(self, *_: Any) -> None:
        rec = getattr(self.local, "rec", None)
        if rec is not None and rec[1] > 0:
            part = min(rec[0], rec[1])
            rec[1] -= part
            self.steps.advance(part, settle=False)
        if rec is not None:
            check_cancel(self.steps.progress)

    def run(self, units: float, forward: Callable[[], Any]) -> tuple[Any, float]:
        """``forward()`` with ticks; (its result, the batch's units not advanced yet)."""
        if not self.stages:
            return forward(), units
        share = units * self.stages / (self.stages + 1)
        rec = [share / self.stages, share]
        self.local.rec = rec
        try:
            out = forward()
        finally:
            self.local.rec = None
        return out, units - (share - rec[1])


# --- the two paths ---------------------------------------------------------------------
@dataclass
class InferenceStats:
    tiles: int = 0
    valid_pixels: int = 0
    wait_s: float = 0.0
    read_cpu_s: float = 0.0  # CPU time of the reader thread
    write_cpu_s: float = 0.0  # CPU time of blending + writing (writer thread, or inline)
    workers: int = 1  # model worker threads (batch parallelism on a CPU)


def _check_logits(probs: np.ndarray, expect: tuple[int, ...], card: ModelCard) -> None:
    if probs.shape[1:] != expect:
        raise ModelFileError(
            f"the {card.architecture} network returned shape {tuple(probs.shape)}, expected (batch, "
            f"{', '.join(str(e) for e in expect)}) for a {card.head_kind} model with {card.num_classes} classes"
        )


def _stage(fn: Callable[..., None], background: bool) -> Any:
    return BackgroundStage(fn) if background else InlineStage(fn)


def run_dense(reader_args: dict, card: ModelCard, runner: Runner, sink: Sink, tile: int, overlap: int,
              progress: Progress, background: bool = True, workers: Optional[int] = None) -> InferenceStats:
    """Dense path: overlapping tiles, blended probabilities, finished pixels streamed to ``sink``.

    background: read on a reader thread and blend + write on a writer thread
    (:class:`BackgroundStage`) while the model runs, on ``workers`` model threads at once
    (:class:`ModelWorkers`; default :func:`cpu_workers`); False does everything on the calling
    thread.
    """
    import torch

    grid: Grid = reader_args["grid"]
    rs, cs = tile_starts(grid.height, tile, overlap), tile_starts(grid.width, tile, overlap)
    windows = [Window(r, c, tile, tile, 0, i, j) for i, r in enumerate(rs) for j, c in enumerate(cs)]
    blender = TileBlender(card.num_classes, Axis.of(grid.height, rs, tile), Axis.of(grid.width, cs, tile), sink)
    stats = InferenceStats(tiles=len(windows))
    steps = Steps(progress, len(windows), "tiles", start=LOADED, end=0.95, begin=False)
    ticks = ForwardTicks(steps)
    pre = Prefetcher(reader_args["paths"], reader_args["ratios"], grid, card.modalities, windows, group=runner.batch,
                     threaded=background, normalise=normalise_in_reader(runner.device), mask=reader_args.get("mask"))

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
        return _drive(pre, runner, _stage(blender.add_batch, background), blender, compute, stats, steps,
                      progress, background, workers, on_ready=ticks.attach)
    finally:
        ticks.detach()


def run_patch(reader_args: dict, card: ModelCard, runner: Runner, sink: Sink, tile: int,
              progress: Progress, background: bool = True, workers: Optional[int] = None) -> InferenceStats:
    """Patch path: every valid pixel classified from its centred patch, cut from window + halo.

    Windows do not overlap, so each goes to ``sink`` whole as soon as its patches are done
    (through the same :class:`TileBlender`, which then has nothing to blend). ``workers``
    defaults to 1 here (torch's intra-op threads on each forward): a worker takes whole windows,
    so a raster of few windows leaves the others idle (measured: das2f-demo on one 64 x 64
    window, 93 s with 1 worker x 2 threads, 132 s with 2 workers x 1).
    """
    import torch

    grid: Grid = reader_args["grid"]
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
    pre = Prefetcher(reader_args["paths"], reader_args["ratios"], grid, card.modalities, windows, threaded=background,
                     normalise=normalise_in_reader(runner.device), mask=reader_args.get("mask"))

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
        return _drive(pre, runner, _stage(blender.add, background), blender, compute, stats, steps,
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
    stats.wait_s, stats.read_cpu_s, stats.write_cpu_s = pre.wait_s, pre.cpu_s, stage.cpu_s
    stats.valid_pixels = blender.valid_pixels
    stats.workers = n
    return stats
