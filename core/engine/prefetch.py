"""The reader of an inference run: windows of the output grid read, normalised and stacked into
batches ahead of the model, on a thread of its own.

Windows are read in the files' own data types straight into their slots of a batch; the
batch is normalised on the reader's thread for a model on a CPU and on the model's side
otherwise (:func:`normalise_in_reader`, :func:`to_model_inputs`). Patch windows carry a halo so
that every pixel's patch lies inside the block read.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from .aligned_inputs import AlignedInputs
from .normalize import model_input
from .pipeline import on_cpu

#: Batches read ahead by the background reader.
PREFETCH: int = 2


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
    return NORMALISE_IN_READER_ON_CPU and on_cpu(device)


class Prefetcher:
    """Read and stack batches of ``group`` windows in a background thread (``threaded``) or, when
    not, on the iterating thread as it asks for them.

    ``inputs`` (:class:`.aligned_inputs.AlignedInputs`, opened and cut by the caller) are read
    on this thread only while it runs (a GDAL handle is used by one thread at a time), with the
    reader's row cache on (windows come in row order, so each input block is decoded once);
    GDAL releases the GIL while reading, so reading overlaps the model's forward pass. Each
    window is copied straight into its slot of the batch in the file's own data type. With
    ``normalise`` (a model on the CPU, :func:`normalise_in_reader`) this thread also normalises
    the batch; otherwise the model's side does (:func:`to_model_inputs`). Either way nodata
    becomes 0 (the training mean): such pixels are masked in the output anyway, and a finite
    value keeps them from poisoning neighbours. The inputs' mask, when there is one
    (:class:`.labels.LabelSource` with ``presence``), is read window by window on the same thread:
    pixels outside it are invalid like nodata (not classified; windows without any pixel inside
    are not run at all). After the last window the reader lets go of its cached rows.
    """

    def __init__(self, inputs: AlignedInputs, cards: Sequence[Any], windows: Sequence[Window], group: int = 1,
                 depth: int = PREFETCH, threaded: bool = True, normalise: bool = False) -> None:
        self.threaded, self.normalise = threaded, normalise
        self.inputs, self.cards = inputs, list(cards)
        self.windows = list(windows)
        self.group = max(int(group), 1)
        self.queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="mmlc-prefetch", daemon=True)
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
        reader, inside, grid, ratios = self.inputs.reader, self.inputs.mask, self.inputs.grid, self.inputs.ratios
        try:
            dtypes = reader.dtypes(native=True)
            for run in self._batches():
                t = time.thread_time()
                w0 = run[0]
                n = len(run)
                arrays = [np.empty((n, c.bands, k * (w0.rows + 2 * w0.halo), k * (w0.cols + 2 * w0.halo)), dt)
                          for c, k, dt in zip(self.cards, ratios, dtypes)]
                masks: list[Optional[np.ndarray]] = [None] * len(arrays)
                valids = []
                for b, win in enumerate(run):
                    got: list = []
                    _, valid = reader.read(win.row0, win.col0, win.rows, win.cols, halo=win.halo,
                                           out=[a[b] for a in arrays], native=True, masks=got)
                    if inside is not None:  # the MASK layer: pixels outside it are not classified
                        valid &= inside.read(grid.window(win.row0, win.col0, win.rows, win.cols)) > 0
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
        finally:
            reader.release_cache()

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
            item = self.queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)
