"""Accuracy metrics of a classification: confusion matrix, OA, AA, kappa, IoU, precision, recall, F1.

Definitions follow the specs' metric sections (``specs/asanet.md`` section 5, ``specs/hfdnet.md``
5.4, ``specs/prsanet.md`` 5.6), which agree with the usual remote-sensing accuracy assessment:

- the confusion matrix has the **reference** on the rows and the **prediction** on the columns;
- OA = trace / N; AA = mean of the per-class recalls (producer's accuracies);
- Cohen's kappa = (p_o - p_e) / (1 - p_e), p_e = sum_k(row_k * col_k) / N^2;
- IoU_k = TP / (TP + FP + FN); F1_k = 2 TP / (2 TP + FP + FN); precision = user's accuracy.

Unlabelled pixels (reference value in ``ignore``, 0 by default) never count. A labelled reference
pixel whose prediction is an ignored value too (the prediction's nodata) is not in the matrix
either; :class:`ConfusionAccumulator` counts it in ``unclassified`` so reports can say so.

Design choices where the specs leave a gap (documented, switchable through the arguments):

- A class absent from both reference and prediction (an all-zero row and column) is excluded
  from every mean (it has no defined IoU/F1 and would otherwise drag the means down or up).
- A per-class value of the form 0/0 is NaN (JSON ``null``). AA and macro recall average over the
  classes that occur in the reference; mIoU and macro F1 over the classes that occur in either
  (a class present in only one of them has IoU = F1 = 0). Macro precision averages over the
  classes that occur in either too, counting a class that was never predicted as precision 0
  (as scikit-learn's ``precision_score(average="macro", zero_division=0)``): leaving such
  classes out would reward a classifier for never predicting a hard class.
- Kappa of a degenerate matrix where p_e = 1 (one class everywhere in both) is 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from ..classes import ClassInfo, default_classes

#: Class values live in 0..65535 (uint16 rasters); a lookup table of this size maps them to indices.
_VALUE_RANGE = 65536


def _as_class_values(a: np.ndarray, what: str) -> np.ndarray:
    """Flatten ``a`` to int64 and check it holds class values in 0..65535."""
    flat = np.asarray(a).reshape(-1)
    if flat.dtype.kind == "f":
        if not np.all(np.isfinite(flat)):
            raise ValueError(f"{what} holds NaN or infinite values; map nodata to 0 first")
        if np.any(flat != np.round(flat)):
            raise ValueError(f"{what} holds non-integer values; a class raster holds integer class values")
    flat = flat.astype(np.int64, copy=False)
    if flat.size and (flat.min() < 0 or flat.max() >= _VALUE_RANGE):
        raise ValueError(f"{what} holds values outside 0..65535; class values must fit in uint16")
    return flat


class ConfusionAccumulator:
    """Streaming confusion matrix: call :meth:`update` once per block, read :attr:`matrix`.

    values: the class values in row/column order. ``None`` discovers them from the data (the
    matrix grows, rows/columns stay sorted by value). With fixed values, a value outside them
    (and outside ``ignore``) raises ValueError, because silently dropping it would bias OA.
    ignore: values meaning "no class" in both reference and prediction (0 = unlabelled/nodata).
    """

    def __init__(self, values: Optional[Sequence[int]] = None, ignore: Iterable[int] = (0,)) -> None:
        self.ignore = sorted({int(v) for v in ignore})
        self._fixed = values is not None
        self._values: list[int] = sorted({int(v) for v in values}) if values is not None else []
        if set(self._values) & set(self.ignore):
            raise ValueError(f"class values {sorted(set(self._values) & set(self.ignore))} are also ignored values")
        self._matrix = np.zeros((len(self._values), len(self._values)), dtype=np.int64)
        self.unclassified = 0  # labelled reference pixels whose prediction is an ignored value
        self._ignored_lut = np.zeros(_VALUE_RANGE, dtype=bool)
        for v in self.ignore:
            if 0 <= v < _VALUE_RANGE:
                self._ignored_lut[v] = True

    @property
    def values(self) -> list[int]:
        return list(self._values)

    @property
    def matrix(self) -> np.ndarray:
        """The (K, K) int64 matrix, rows = reference, columns = prediction (a copy)."""
        return self._matrix.copy()

    @property
    def total(self) -> int:
        """Number of pixels in the matrix (labelled in the reference and classified)."""
        return int(self._matrix.sum())

    def _grow(self, new_values: Iterable[int]) -> None:
        merged = sorted(set(self._values) | {int(v) for v in new_values})
        if merged == self._values:
            return
        pos = np.searchsorted(merged, self._values)
        grown = np.zeros((len(merged), len(merged)), dtype=np.int64)
        grown[np.ix_(pos, pos)] = self._matrix
        self._values, self._matrix = merged, grown

    def update(self, pred: np.ndarray, ref: np.ndarray) -> None:
        """Add the pixels of one block (same shape; any integer or integral float dtype)."""
        if np.shape(pred) != np.shape(ref):
            raise ValueError(f"prediction {np.shape(pred)} and reference {np.shape(ref)} differ in shape")
        p = _as_class_values(pred, "the prediction")
        r = _as_class_values(ref, "the reference")
        labelled = ~self._ignored_lut[r]
        classified = ~self._ignored_lut[p]
        self.unclassified += int(np.count_nonzero(labelled & ~classified))
        keep = labelled & classified
        p, r = p[keep], r[keep]
        if p.size == 0:
            return
        seen = np.flatnonzero(np.bincount(p, minlength=_VALUE_RANGE) + np.bincount(r, minlength=_VALUE_RANGE))
        unknown = np.setdiff1d(seen, self._values)
        if unknown.size:
            if self._fixed:
                raise ValueError(f"class values {unknown.tolist()} are not among the expected {self._values}")
            self._grow(unknown.tolist())
        lut = np.full(_VALUE_RANGE, -1, dtype=np.int64)
        lut[self._values] = np.arange(len(self._values))
        k = len(self._values)
        self._matrix += np.bincount(lut[r] * k + lut[p], minlength=k * k).reshape(k, k)


def confusion_matrix(
    pred: np.ndarray, ref: np.ndarray, values: Sequence[int], ignore: Iterable[int] = (0,)
) -> np.ndarray:
    """(K, K) int64 confusion matrix of one pair of arrays; rows = reference, columns = prediction.

    ``values`` orders the rows/columns (sorted ascending); pixels whose reference or prediction is
    in ``ignore`` are left out. See :class:`ConfusionAccumulator` for the streaming form.
    """
    acc = ConfusionAccumulator(values, ignore)
    acc.update(pred, ref)
    return acc.matrix


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _mean(x: np.ndarray, where: np.ndarray) -> float:
    sel = x[where & np.isfinite(x)]
    return float(sel.mean()) if sel.size else math.nan


def _json_float(x: float) -> Optional[float]:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass
class Metrics:
    """Accuracy figures of one confusion matrix (see the module docstring for the definitions).

    Per-class arrays are aligned with ``classes`` (and with the rows of ``confusion``).
    """

    classes: list[ClassInfo]
    confusion: np.ndarray
    overall_accuracy: float
    average_accuracy: float
    kappa: float
    miou: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    iou: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray  # reference pixels per class (row sums)
    predicted: np.ndarray  # predicted pixels per class (column sums)
    present: np.ndarray  # bool: the class occurs in the reference or the prediction
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_pixels(self) -> int:
        return int(self.confusion.sum())

    @property
    def oa(self) -> float:
        """Short alias of :attr:`overall_accuracy`."""
        return self.overall_accuracy

    @property
    def aa(self) -> float:
        """Short alias of :attr:`average_accuracy`."""
        return self.average_accuracy

    @classmethod
    def from_confusion(cls, cm: np.ndarray, classes: Sequence[ClassInfo] | Sequence[int]) -> "Metrics":
        """Compute every metric from a (K, K) matrix (rows = reference) and its K classes.

        ``classes`` may be ClassInfo objects or bare values (then named ``class N``).
        Raises ValueError on an empty matrix or a size mismatch.
        """
        cm = np.asarray(cm, dtype=np.int64)
        infos = list(classes)
        if infos and not isinstance(infos[0], ClassInfo):
            infos = default_classes([int(v) for v in infos])
        if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(infos):
            raise ValueError(f"confusion matrix of shape {cm.shape} does not fit {len(infos)} classes")
        n = int(cm.sum())
        if n == 0:
            raise ValueError("the confusion matrix is empty: no labelled and classified pixel")
        tp = np.diag(cm).astype(np.float64)
        rows = cm.sum(axis=1).astype(np.float64)
        cols = cm.sum(axis=0).astype(np.float64)
        present = (rows + cols) > 0
        recall = _ratio(tp, rows)
        precision = _ratio(tp, cols)
        iou = _ratio(tp, rows + cols - tp)
        f1 = _ratio(2.0 * tp, rows + cols)
        po = float(tp.sum()) / n
        pe = float((rows * cols).sum()) / (float(n) * float(n))
        kappa = 1.0 if pe >= 1.0 else (po - pe) / (1.0 - pe)
        aa = _mean(recall, rows > 0)
        return cls(
            classes=infos,
            confusion=cm,
            overall_accuracy=po,
            average_accuracy=aa,
            kappa=kappa,
            miou=_mean(iou, present),
            macro_precision=_mean(np.where(cols > 0, precision, 0.0), present),
            macro_recall=aa,
            macro_f1=_mean(f1, present),
            iou=iou,
            precision=precision,
            recall=recall,
            f1=f1,
            support=rows.astype(np.int64),
            predicted=cols.astype(np.int64),
            present=present,
        )

    def summary(self) -> dict[str, float]:
        """The headline figures (OA, AA, kappa, mIoU, macro P/R/F1) as plain floats."""
        return {
            "overall_accuracy": self.overall_accuracy,
            "average_accuracy": self.average_accuracy,
            "kappa": self.kappa,
            "miou": self.miou,
            "macro_precision": self.macro_precision,
            "macro_recall": self.macro_recall,
            "macro_f1": self.macro_f1,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> None): summary, per-class figures, the matrix, pixel count."""
        per_class = []
        for i, c in enumerate(self.classes):
            per_class.append({
                "value": c.value,
                "name": c.name,
                "color": c.color,
                "support": int(self.support[i]),
                "predicted": int(self.predicted[i]),
                "iou": _json_float(self.iou[i]),
                "precision": _json_float(self.precision[i]),
                "recall": _json_float(self.recall[i]),
                "f1": _json_float(self.f1[i]),
            })
        out: dict[str, Any] = {k: _json_float(v) for k, v in self.summary().items()}
        out.update({
            "n_pixels": self.n_pixels,
            "per_class": per_class,
            "confusion": self.confusion.tolist(),
        })
        if self.extra:
            out["extra"] = dict(self.extra)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Metrics":
        """Rebuild from :meth:`to_dict` output (e.g. the metrics stored in a model card)."""
        classes = [ClassInfo(int(c["value"]), str(c["name"]), str(c["color"])) for c in d["per_class"]]
        m = cls.from_confusion(np.asarray(d["confusion"], dtype=np.int64), classes)
        m.extra = dict(d.get("extra", {}))
        return m
