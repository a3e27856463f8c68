"""Tiled inference over an output grid: windows, prefetch, batching, blending, streaming.

One code path per head kind (the model card's ``head_kind``, never the architecture name):

* ``dense``: tiles of ``tile`` x ``tile`` pixels with ``overlap`` pixels shared by neighbours;
  each tile's class probabilities are weighted by a separable cosine ramp over the overlap
  (:func:`ramp_weights`), so blended maps have no seams. Blending softmax probabilities rather
  than logits is a design choice (robust when logit scales differ between tiles); the ramps of
  two neighbours sum to one, and accumulators are normalised anyway.
* ``patch``: every valid pixel is classified from the patch centred on it. Windows are read once
  with a halo large enough for the patches (:func:`patch_halo`), and patches are cut as strided
  views (``Tensor.unfold``) of the window, never one read per pixel: the patch of output pixel
  (r, c) in modality m starts at (ratio*r - anchor, ratio*c - anchor) (registry ``ModalitySpec``).

Memory does not grow with the raster: a background thread (its own GDAL handles, its own
:class:`AlignedReader`) reads and normalises the next windows into a bounded queue while the model
computes, and a :class:`RowAccumulator` keeps only the band of rows that tiles still touch; finished
rows go to a ``sink`` (the output writers) in row order.
"""
from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from .errors import InputError, ModelFileError
from .grid import Grid
from .io import AlignedReader
from .modelfile import ModelCard
from .normalize import apply as normalize_apply
from .progress import NullProgress, Progress, check_cancel

#: A sink receives finished rows in order: (row0, probabilities (K, h, W) float32, valid (h, W));
#: the arrays are views into the accumulator, valid only during the call.
Sink = Callable[[int, np.ndarray, np.ndarray], None]



class BackgroundSink:
    """Runs a sink (argmax, colour lookup, GeoTIFF block writes) on a writer thread, so the
    calling thread only feeds the model. Rows are copied (the accumulator reuses its buffers)
    into a bounded queue of ``depth`` chunks, so memory stays bounded; rows keep their order.
    An error in the writer is raised in the caller at the next call or at :meth:`close`.
    """

    def __init__(self, sink: Sink, depth: int = 2) -> None:
        self._sink = sink
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._work, name="mmlc-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    self._sink(*item)
                except BaseException as e:  # handed to the caller
                    self._error = e

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def __call__(self, row0: int, probs: np.ndarray, valid: np.ndarray) -> None:
        self._raise()
        self._queue.put((row0, probs.copy(), valid.copy()))

    def close(self) -> None:
        """Wait for every queued row to be written; re-raise a writer error."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()


#: Patches per forward in patch mode = batch_size x this (a "batch unit" of patches).
PATCHES_PER_BATCH_UNIT: int = 256
#: Default window side in patch mode when neither the caller nor the card gives one.
DEFAULT_PATCH_WINDOW: int = 64
#: Windows read ahead by the background reader.
PREFETCH: int = 4
#: Rows handed to the sink per call when the accumulator flushes (bounds the temporaries).
FLUSH_ROWS: int = 32


# --- tile geometry ---------------------------------------------------------------------
def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``size`` pixels with ``overlap``.

    The stride is ``tile - overlap``; the last tile is moved back to end at the border (so no
    tile hangs out unless the raster is smaller than one tile, then a single tile at 0 is padded).
    """
    if tile <= overlap:
        raise InputError(f"tile size {tile} must be larger than the overlap {overlap}")
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return starts


def ramp_weights(tile: int, overlap: int, ramp_start: bool, ramp_end: bool) -> np.ndarray:
    """1-D blending weights of a tile: sin^2 ramps over the overlap, 1 inside.

    sin^2 up and cos^2 down over the same ``overlap`` pixels sum to exactly 1 (no seam, no
    bias). Sides at the raster border are not ramped (no neighbour to blend with).
    """
    w = np.ones(tile, np.float32)
    if overlap > 0:
        t = (np.arange(overlap, dtype=np.float64) + 0.5) / overlap
        up = np.sin(t * math.pi / 2) ** 2
        if ramp_start:
            w[:overlap] = up
        if ramp_end:
            w[tile - overlap:] = up[::-1]
    return w


def patch_halo(cards: Sequence[Any]) -> int:
    """Halo (output pixels) a window needs so that every pixel's patch lies in the read block."""
    h = 0
    for m in cards:
        k, a, p = int(m.grid_ratio), int(m.patch_anchor), int(m.patch_size)
        h = max(h, -(-a // k), -(-(p - a) // k) - 1)
    return h


# --- accumulation ----------------------------------------------------------------------
class RowAccumulator:
    """Weighted sums of class probabilities for the band of rows that tiles still touch.

    Rows [row0, row0 + n) of the full width live in one buffer allocated once (grown only if a
    tile reaches further down than any before); :meth:`flush` hands the finished rows to the sink
    in chunks of at most :data:`FLUSH_ROWS` rows, normalised in place, and moves the rest up.

    No weight plane is kept: every tile adds ``weight * probs`` where ``probs`` sums to 1 over the
    classes (softmax), so the per-pixel sum over the classes of the accumulated sums *is* the
    total weight. Normalising by that sum (design choice) saves a full-width float32 plane and
    works for any weights; a pixel that no tile with probabilities reached has sum 0 and is
    reported invalid.
    """

    def __init__(self, num_classes: int, width: int, height: int, rows_hint: int = 0) -> None:
        self.K, self.W, self.H = num_classes, width, height
        self.row0 = 0
        self.n = 0
        self._alloc(max(min(rows_hint, height), 1))

    def _alloc(self, cap: int) -> None:
        sums = np.zeros((self.K, cap, self.W), np.float32)
        valid = np.zeros((cap, self.W), bool)
        if self.n:
            sums[:, :self.n] = self.sums[:, :self.n]
            valid[:self.n] = self.valid[:self.n]
        self.sums, self.valid, self.cap = sums, valid, cap

    def _ensure(self, row_end: int) -> None:
        need = row_end - self.row0
        if need > self.cap:
            self._alloc(need)
        self.n = max(self.n, need)

    def add(self, row0: int, col0: int, probs: Optional[np.ndarray], weight: Optional[np.ndarray],
            valid: np.ndarray) -> None:
        """Add a tile (clipped to the grid). ``probs`` None: a tile with no valid pixel.

        ``probs`` (K, h, w) must sum to 1 over the classes; ``weight`` (h, w) is its blending weight.
        """
        h, w = valid.shape
        r0, r1 = max(row0, 0), min(row0 + h, self.H)
        c0, c1 = max(col0, 0), min(col0 + w, self.W)
        if r1 <= r0 or c1 <= c0:
            return
        if r0 < self.row0:
            raise RuntimeError("tile added above rows already flushed (tiles must come in row order)")
        self._ensure(r1)
        tr, tc = slice(r0 - row0, r1 - row0), slice(c0 - col0, c1 - col0)
        ar, ac = slice(r0 - self.row0, r1 - self.row0), slice(c0, c1)
        self.valid[ar, ac] |= valid[tr, tc]
        if probs is None or weight is None:
            return
        self.sums[:, ar, ac] += probs[:, tr, tc] * weight[tr, tc]

    def flush(self, upto: int, sink: Callable[[int, np.ndarray, np.ndarray], None]) -> int:
        """Pass rows [row0, upto) to ``sink`` (normalised probs, valid), drop them; return valid pixels.

        The rows go out in chunks of at most :data:`FLUSH_ROWS` so that the temporaries of the
        normalisation and of the sink stay small whatever the raster width.
        """
        k = min(upto - self.row0, self.n)
        if k <= 0:
            return 0
        nvalid = 0
        step = max(1, min(FLUSH_ROWS, k))
        for a in range(0, k, step):
            b = min(a + step, k)
            probs = self.sums[:, a:b]
            total = probs.sum(axis=0)
            valid = self.valid[a:b]
            valid &= total > 0
            np.maximum(total, 1e-12, out=total)
            probs /= total
            nvalid += int(np.count_nonzero(valid))
            sink(self.row0 + a, probs, valid)
        rest = self.n - k
        move = min(k, FLUSH_ROWS)  # move the unfinished rows up in disjoint chunks: no temporary copy
        for a in range(0, rest, move):
            b = min(a + move, rest)
            for c in range(self.K):
                self.sums[c, a:b] = self.sums[c, k + a:k + b]
            self.valid[a:b] = self.valid[k + a:k + b]
        self.sums[:, rest:self.n] = 0
        self.valid[rest:self.n] = False
        self.row0, self.n = upto, rest
        return nvalid


# --- background reading ----------------------------------------------------------------
@dataclass
class Window:
    """A window of the output grid: core (row0, col0, rows, cols) read with ``halo``."""

    row0: int
    col0: int
    rows: int
    cols: int
    halo: int = 0


@dataclass
class ReadWindow:
    window: Window
    arrays: list[np.ndarray]  # normalised, NaN replaced by 0
    valid: np.ndarray


_END = object()


class Prefetcher:
    """Read + normalise windows in a background thread into a bounded queue.

    The thread opens its own :class:`AlignedReader` (GDAL handles are not shared across threads);
    GDAL releases the GIL while reading, so reading overlaps the model's forward pass. At each new
    tile row it drops its inputs' blocks from GDAL's block cache
    (:meth:`AlignedReader.release_cache`): otherwise the cache keeps every block read until it
    reaches ``GDAL_CACHEMAX`` (by default 5 % of the RAM), i.e. it grows with the raster. A block
    shared by two tile rows is then decoded twice, a small price next to the forward pass.
    NaN (nodata) is replaced by 0 after normalisation, i.e. by the training mean: such pixels are
    masked in the output anyway, and a finite value keeps them from poisoning neighbours.
    """

    def __init__(self, paths: Sequence[str], ratios: Sequence[int], grid: Grid, cards: Sequence[Any],
                 windows: Sequence[Window], depth: int = PREFETCH) -> None:
        self.paths, self.ratios, self.grid, self.cards = list(paths), list(ratios), grid, list(cards)
        self.windows = list(windows)
        self.queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="mmlc-prefetch", daemon=True)
        self.wait_s = 0.0

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            with AlignedReader(self.paths, self.ratios, self.grid) as reader:
                row = None
                for win in self.windows:
                    if self.stop.is_set():
                        return
                    if row is not None and win.row0 != row:
                        reader.release_cache()  # a new tile row: the blocks above are not needed again
                    row = win.row0
                    arrays, valid = reader.read(win.row0, win.col0, win.rows, win.cols, halo=win.halo)
                    normed = []
                    for a, card in zip(arrays, self.cards):
                        n = normalize_apply(a, card)
                        np.nan_to_num(n, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
                        normed.append(n)
                    if not self._put(ReadWindow(win, normed, valid)):
                        return
        except BaseException as e:  # forwarded to the consumer
            self._put(e)
            return
        self._put(_END)

    def __iter__(self) -> Iterator[ReadWindow]:
        self.thread.start()
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
    """

    model: Any
    device: Any
    batch: int
    autocast: Any = None  # torch dtype or None
    progress: Progress = field(default_factory=NullProgress)
    forward_s: float = 0.0

    def __call__(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """Softmax probabilities (float32 numpy) for a batch of stacked inputs."""
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
        return np.concatenate(outs, axis=0)

    def _forward(self, xs: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        t0 = time.perf_counter()
        with torch.inference_mode():
            ts = []
            for x in xs:
                t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device, non_blocking=True)
                if t.ndim == 4 and self.device.type == "cuda":
                    t = t.contiguous(memory_format=torch.channels_last)
                ts.append(t)
            if self.autocast is not None:
                with torch.autocast(self.device.type, dtype=self.autocast):
                    logits = self.model(*ts)
            else:
                logits = self.model(*ts)
            probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
        self.forward_s += time.perf_counter() - t0
        return probs


# --- the two paths ---------------------------------------------------------------------
@dataclass
class InferenceStats:
    tiles: int = 0
    valid_pixels: int = 0
    forward_s: float = 0.0
    wait_s: float = 0.0
    final_batch: int = 0


def _check_logits(probs: np.ndarray, expect: tuple[int, ...], card: ModelCard) -> None:
    if probs.shape[1:] != expect:
        raise ModelFileError(
            f"the {card.architecture} network returned shape {tuple(probs.shape)}, expected (batch, "
            f"{', '.join(str(e) for e in expect)}) for a {card.head_kind} model with {card.num_classes} classes"
        )


def run_dense(reader_args: dict, card: ModelCard, runner: Runner, sink: Sink, tile: int, overlap: int,
              progress: Progress) -> InferenceStats:
    """Dense path: overlapping tiles, blended probabilities, rows streamed to ``sink``."""
    grid: Grid = reader_args["grid"]
    rs, cs = tile_starts(grid.height, tile, overlap), tile_starts(grid.width, tile, overlap)
    windows = [Window(r, c, tile, tile) for r in rs for c in cs]
    wr = {r: ramp_weights(tile, overlap, i > 0, i < len(rs) - 1) for i, r in enumerate(rs)}
    wc = {c: ramp_weights(tile, overlap, i > 0, i < len(cs) - 1) for i, c in enumerate(cs)}
    acc = RowAccumulator(card.num_classes, grid.width, grid.height, tile)
    stats = InferenceStats(tiles=len(windows))
    pre = Prefetcher(reader_args["paths"], reader_args["ratios"], grid, card.modalities, windows)
    pending: list[ReadWindow] = []
    done = 0

    def run_batch(next_row: int) -> None:
        nonlocal done
        check_cancel(progress)
        todo = [p for p in pending if p.valid.any()]
        probs = runner([np.stack([p.arrays[m] for p in todo]) for m in range(len(card.modalities))]) if todo else None
        if probs is not None:
            _check_logits(probs, (card.num_classes, tile, tile), card)
        j = 0
        for p in pending:
            w = p.window
            stats.valid_pixels += acc.flush(w.row0, sink)  # rows above this tile are final
            if p.valid.any():
                acc.add(w.row0, w.col0, probs[j], np.outer(wr[w.row0], wc[w.col0]), p.valid)
                j += 1
            else:
                acc.add(w.row0, w.col0, None, None, p.valid)
        done += len(pending)
        pending.clear()
        stats.valid_pixels += acc.flush(next_row, sink)
        progress.set_fraction(done / len(windows))

    try:
        for i, item in enumerate(pre):
            pending.append(item)
            if len(pending) >= runner.batch or i == len(windows) - 1:
                nxt = windows[i + 1].row0 if i + 1 < len(windows) else grid.height
                run_batch(nxt)
    finally:
        pre.close()
    stats.wait_s = pre.wait_s
    return stats


def run_patch(reader_args: dict, card: ModelCard, runner: Runner, sink: Sink, tile: int,
              progress: Progress) -> InferenceStats:
    """Patch path: every valid pixel classified from its centred patch, cut from window + halo."""
    import torch

    grid: Grid = reader_args["grid"]
    for m in card.modalities:
        if m.patch_size <= 0:
            raise ModelFileError(f"the model card of this patch model gives no patch size for modality {m.name!r}")
    halo = patch_halo(card.modalities)
    rs = list(range(0, grid.height, tile))
    cs = list(range(0, grid.width, tile))
    windows = [Window(r, c, min(tile, grid.height - r), min(tile, grid.width - c), halo) for r in rs for c in cs]
    acc = RowAccumulator(card.num_classes, grid.width, grid.height, tile)
    stats = InferenceStats(tiles=len(windows))
    pre = Prefetcher(reader_args["paths"], reader_args["ratios"], grid, card.modalities, windows)
    try:
        for i, item in enumerate(pre):
            w = item.window
            ri, ci = np.nonzero(item.valid)
            probs = None
            if ri.size:
                views = []
                for a, m in zip(item.arrays, card.modalities):
                    k, p, anc = m.grid_ratio, m.patch_size, m.patch_anchor
                    off = k * halo - anc
                    t = torch.from_numpy(a)[:, off:, off:]
                    views.append(t.unfold(1, p, k).unfold(2, p, k))  # (C, nR, nC, p, p)
                ri_t, ci_t = torch.from_numpy(ri), torch.from_numpy(ci)
                probs = np.zeros((card.num_classes, w.rows, w.cols), np.float32)
                s = 0
                while s < ri.size:
                    check_cancel(progress)
                    chunk = runner.batch  # patches per forward (may be lowered on CUDA OOM)
                    sel_r, sel_c = ri_t[s:s + chunk], ci_t[s:s + chunk]
                    batch = [v[:, sel_r, sel_c].permute(1, 0, 2, 3).contiguous().numpy() for v in views]
                    out = runner(batch)
                    _check_logits(out, (card.num_classes,), card)
                    probs[:, ri[s:s + chunk], ci[s:s + chunk]] = out.T
                    s += chunk
            acc.add(w.row0, w.col0, probs, np.ones((w.rows, w.cols), np.float32), item.valid)
            nxt = windows[i + 1].row0 if i + 1 < len(windows) else grid.height
            stats.valid_pixels += acc.flush(nxt, sink)
            progress.set_fraction((i + 1) / len(windows))
            check_cancel(progress)
    finally:
        pre.close()
    stats.wait_s = pre.wait_s
    return stats
