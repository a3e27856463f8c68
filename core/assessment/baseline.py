"""A per-pixel random forest beside every trained network: does the network earn its cost?

The forest (scikit-learn's ``RandomForestClassifier``, what dzetsaka and SCP give an analyst in
one click) is trained on the *same* training pixels as the network and scored on the *same*
validation blocks (:class:`.samplers.PreparedScene` ``train`` / ``val`` masks). Its features are
the input bands at each pixel of input 1's grid, normalised as the network sees them; an input on
a finer grid (PAN at ratio r) is averaged over the r x r pixels under each grid pixel.

scikit-learn is optional at run time: without it :func:`forest_baseline` returns a result whose
``note`` says so, and the report prints that note instead of figures.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

#: Trees in the forest (the issue's comparison used 300; the time grows linearly).
TREES: int = 300
#: At most this many training pixels go to the forest (a random subset beyond it), so large
#: dense label rasters do not make the baseline slower than the network.
MAX_TRAIN_PIXELS: int = 20_000


@dataclass
class BaselineResult:
    """The forest's validation metrics (None when it could not run, see ``note``)."""

    name: str
    metrics: Any = None  # core.assessment.metrics.Metrics on the validation pixels
    train_pixels: int = 0
    seconds: float = 0.0
    note: str = ""

    def summary_line(self) -> str:
        if self.metrics is None:
            return f"baseline ({self.name}): {self.note}"
        s = self.metrics.summary()
        return (f"baseline {self.name}: OA {s['overall_accuracy']:.4f} AA {s['average_accuracy']:.4f} "
                f"kappa {s['kappa']:.4f} mIoU {s['miou']:.4f} ({self.train_pixels} training pixels, "
                f"{self.seconds:.1f} s)")


def pixel_features(arrays: Sequence[np.ndarray], ratios: Sequence[int]) -> np.ndarray:
    """(H, W, F) float32 features: every band of every input on input 1's grid (finer inputs
    averaged over the ratio x ratio pixels under each grid pixel), NaN as 0."""
    feats = []
    for a, r in zip(arrays, ratios):
        r = int(r)
        c, h, w = a.shape[0], a.shape[1] // r, a.shape[2] // r
        x = a[:, :h * r, :w * r].astype(np.float32, copy=False)
        if r > 1:
            x = x.reshape(c, h, r, w, r).mean(axis=(2, 4))
        feats.append(x)
    out = np.concatenate(feats, axis=0).transpose(1, 2, 0)
    return np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)


def sklearn_available() -> bool:
    try:
        import sklearn.ensemble  # noqa: F401
    except ImportError:
        return False
    return True


def forest_baseline(scenes: Sequence[Any], classes: Sequence[Any], seed: int = 0, trees: int = TREES,
                    max_train: int = MAX_TRAIN_PIXELS) -> BaselineResult:
    """Train a random forest on the scenes' training pixels and score it on their validation
    pixels (``scenes``: :class:`.samplers.PreparedScene`; ``target`` holds class indices)."""
    name = f"random forest ({trees} trees, per-pixel bands)"
    if not sklearn_available():
        return BaselineResult(name, note="scikit-learn is not installed in this Python, so no random-forest "
                                         "baseline was computed (pip install scikit-learn to get one)")
    from sklearn.ensemble import RandomForestClassifier

    from .metrics import Metrics

    xs_tr, ys_tr, xs_va, ys_va = [], [], [], []
    for s in scenes:
        f = pixel_features(s.arrays, s.ratios)
        h, w = f.shape[:2]
        tgt = s.target[:h, :w]
        for mask, xs, ys in ((s.train[:h, :w], xs_tr, ys_tr), (s.val[:h, :w], xs_va, ys_va)):
            xs.append(f[mask])
            ys.append(tgt[mask])
    x_tr, y_tr = np.concatenate(xs_tr), np.concatenate(ys_tr)
    x_va, y_va = np.concatenate(xs_va), np.concatenate(ys_va)
    if len(y_tr) == 0 or len(y_va) == 0:
        return BaselineResult(name, note="no training or no validation pixels: nothing to compare")
    if len(y_tr) > max_train:
        keep = np.random.default_rng(seed).choice(len(y_tr), max_train, replace=False)
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    t = time.perf_counter()
    forest = RandomForestClassifier(n_estimators=trees, random_state=seed, n_jobs=-1)
    forest.fit(x_tr, y_tr)
    pred = forest.predict(x_va)
    k = len(classes)
    cm = np.bincount(y_va.astype(np.int64) * k + pred.astype(np.int64), minlength=k * k).reshape(k, k)
    return BaselineResult(name, Metrics.from_confusion(cm, list(classes)), int(len(y_tr)),
                          time.perf_counter() - t)


def comparison_rows(network: Optional[Any], baseline: BaselineResult) -> list[tuple[str, dict]]:
    """(label, summary dict) for the network and the forest, for tables and logs."""
    rows = []
    if network is not None:
        rows.append(("network", network.summary()))
    if baseline.metrics is not None:
        rows.append((baseline.name, baseline.metrics.summary()))
    return rows
