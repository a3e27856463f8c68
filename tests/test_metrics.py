"""core/assessment/metrics.py against a confusion matrix computed by hand."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from mmlc.core.assessment.metrics import ConfusionAccumulator, Metrics, confusion_matrix
from mmlc.core.classes import ClassInfo

# Hand-made matrix, rows = reference, columns = prediction, classes 1, 2, 3:
#            p1  p2  p3 | row
#   r1        5   1   0 |  6
#   r2        2   3   1 |  6
#   r3        0   0   4 |  4
#   col       7   4   5 | N = 16, trace = 12
# OA = 12/16 = 0.75
# recall = 5/6, 3/6, 4/4 -> AA = (5/6 + 1/2 + 1)/3 = 7/9
# precision = 5/7, 3/4, 4/5
# p_e = (6*7 + 6*4 + 4*5)/16^2 = 86/256; kappa = (192/256 - 86/256)/(170/256) = 106/170 = 53/85
# IoU = 5/(6+7-5) = 5/8, 3/(6+4-3) = 3/7, 4/(4+5-4) = 4/5 -> mIoU = (5/8 + 3/7 + 4/5)/3 = 519/840
# F1 = 2TP/(row+col) = 10/13, 6/10, 8/9 -> macro F1 = (10/13 + 3/5 + 8/9)/3
HAND = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])


def _pairs_from(cm: np.ndarray, values: list[int]) -> tuple[np.ndarray, np.ndarray]:
    ref, pred = [], []
    for i, r in enumerate(values):
        for j, p in enumerate(values):
            ref += [r] * int(cm[i, j])
            pred += [p] * int(cm[i, j])
    return np.array(pred), np.array(ref)


def test_confusion_matrix_from_pixels_ignores_unlabelled_and_nodata():
    pred, ref = _pairs_from(HAND, [1, 2, 3])
    # 5 unlabelled reference pixels (0) with arbitrary predictions, 3 labelled pixels predicted 0 (nodata)
    pred = np.concatenate([pred, [1, 2, 3, 1, 2], [0, 0, 0]]).astype(np.uint8)
    ref = np.concatenate([ref, [0, 0, 0, 0, 0], [1, 3, 3]]).astype(np.uint16)
    rng = np.random.default_rng(0)
    order = rng.permutation(pred.size)
    pred, ref = pred[order].reshape(4, 6), ref[order].reshape(4, 6)
    cm = confusion_matrix(pred, ref, [1, 2, 3])
    np.testing.assert_array_equal(cm, HAND)
    acc = ConfusionAccumulator()  # discovers the values, streamed in 3 blocks
    for rows in (slice(0, 1), slice(1, 3), slice(3, 4)):
        acc.update(pred[rows], ref[rows])
    np.testing.assert_array_equal(acc.matrix, HAND)
    assert acc.values == [1, 2, 3]
    assert acc.unclassified == 3
    assert acc.total == 16


def test_custom_ignore_value_and_unknown_value():
    pred = np.array([1, 2, 2, 255])
    ref = np.array([1, 2, 255, 2])
    cm = confusion_matrix(pred, ref, [1, 2], ignore=(255,))
    np.testing.assert_array_equal(cm, [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="not among the expected"):
        confusion_matrix(np.array([1, 7]), np.array([1, 1]), [1, 2])
    with pytest.raises(ValueError, match="non-integer"):
        confusion_matrix(np.array([1.5]), np.array([1]), [1])


def test_metrics_match_the_hand_computation():
    classes = [ClassInfo(1, "water", "#0000ff"), ClassInfo(2, "forest", "#00ff00"), ClassInfo(3, "urban", "#ff0000")]
    m = Metrics.from_confusion(HAND, classes)
    assert m.overall_accuracy == pytest.approx(0.75) and m.oa == m.overall_accuracy
    assert m.aa == m.average_accuracy
    assert m.average_accuracy == pytest.approx(7 / 9)
    assert m.kappa == pytest.approx(53 / 85)
    np.testing.assert_allclose(m.recall, [5 / 6, 1 / 2, 1])
    np.testing.assert_allclose(m.precision, [5 / 7, 3 / 4, 4 / 5])
    np.testing.assert_allclose(m.iou, [5 / 8, 3 / 7, 4 / 5])
    assert m.miou == pytest.approx(519 / 840)
    np.testing.assert_allclose(m.f1, [10 / 13, 6 / 10, 8 / 9])
    assert m.macro_f1 == pytest.approx((10 / 13 + 3 / 5 + 8 / 9) / 3)
    assert m.macro_precision == pytest.approx((5 / 7 + 3 / 4 + 4 / 5) / 3)
    np.testing.assert_array_equal(m.support, [6, 6, 4])
    np.testing.assert_array_equal(m.predicted, [7, 4, 5])
    assert m.n_pixels == 16


def test_absent_class_is_excluded_from_means_and_nan_is_null_in_json():
    # class 4 absent from both: same means as the 3-class matrix, NaN per-class values
    cm4 = np.zeros((4, 4), dtype=np.int64)
    cm4[:3, :3] = HAND
    m = Metrics.from_confusion(cm4, [1, 2, 3, 4])
    assert m.miou == pytest.approx(519 / 840)
    assert m.average_accuracy == pytest.approx(7 / 9)
    assert m.kappa == pytest.approx(53 / 85)
    assert math.isnan(m.iou[3]) and math.isnan(m.recall[3])
    d = json.loads(json.dumps(m.to_dict()))
    assert d["per_class"][3]["iou"] is None
    assert d["per_class"][0]["name"] == "class 1"
    assert d["miou"] == pytest.approx(519 / 840)
    back = Metrics.from_dict(d)
    np.testing.assert_array_equal(back.confusion, cm4)
    assert back.kappa == pytest.approx(m.kappa)


def test_class_only_predicted_counts_zero_in_miou_not_in_aa():
    # reference has only class 1; half of it is predicted as class 2:
    # recall_1 = 1/2, class 2 has no reference pixel -> AA = 1/2 (over reference classes)
    # IoU_1 = 2/(4+2-2) = 1/2, IoU_2 = 0/(0+2-0) = 0 -> mIoU = 1/4 ; p_e = (4*2 + 0*2)/16 = 1/2 ; kappa = 0
    cm = np.array([[2, 2], [0, 0]])
    m = Metrics.from_confusion(cm, [1, 2])
    assert m.average_accuracy == pytest.approx(0.5)
    assert m.miou == pytest.approx(0.25)
    assert m.kappa == pytest.approx(0.0)
    # a single class everywhere, all correct: degenerate p_e = 1, kappa defined as 1
    assert Metrics.from_confusion(np.array([[9]]), [1]).kappa == 1.0


def test_empty_or_mismatched_matrix_is_refused():
    with pytest.raises(ValueError, match="empty"):
        Metrics.from_confusion(np.zeros((2, 2)), [1, 2])
    with pytest.raises(ValueError, match="does not fit"):
        Metrics.from_confusion(HAND, [1, 2])
