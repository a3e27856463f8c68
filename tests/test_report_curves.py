"""The training report's curves: loss and accuracy on two y axes, other values on their own."""
from __future__ import annotations

from pathlib import Path

from mmlc.core.assessment.reports import curves_figures, split_curves, write_training_report
from mmlc.core.classes import ClassInfo
from mmlc.core.modelfiles.modelfile import ModalityCard, ModelCard

HISTORY = [
    {"epoch": 1.0, "loss": 2.31, "aux_loss": 1.9, "lr": 4e-4, "val_overall_accuracy": 0.41, "val_miou": 0.2,
     "val_kappa": -0.05, "time_s": 38.0},
    {"epoch": 2.0, "loss": 1.52, "aux_loss": 1.2, "lr": 3e-4, "val_overall_accuracy": 0.66, "val_miou": 0.38,
     "val_kappa": 0.41, "time_s": 77.0},
    {"epoch": 3.0, "loss": 0.97, "aux_loss": 0.8, "lr": 1e-4, "val_overall_accuracy": 0.79, "val_miou": 0.52,
     "val_kappa": 0.63, "time_s": 115.0},
]


def test_keys_are_split_by_scale() -> None:
    losses, scores, others = split_curves(HISTORY)
    assert losses == ["loss", "aux_loss"]
    assert scores == ["val_overall_accuracy", "val_miou", "val_kappa"]
    assert others == ["lr", "time_s"]  # seconds and learning rate never share the accuracy axis


def test_loss_and_accuracy_have_separate_y_axes() -> None:
    figures = curves_figures(HISTORY)
    assert [t for t, _ in figures] == ["loss (left axis) and accuracy (right axis)",
                                       "other logged values, one axis each"]
    main = figures[0][1]
    left, right = main.axes
    assert left.get_ylabel() == "loss" and right.get_ylabel().startswith("accuracy")
    assert [line.get_label() for line in left.get_lines()] == ["loss", "aux_loss"]
    assert [line.get_label() for line in right.get_lines()] == ["val_overall_accuracy", "val_miou", "val_kappa"]
    assert right.get_ylim() == (-0.05, 1.0) and left.get_ylim()[1] > 2.3  # each axis keeps its own scale
    assert left.get_shared_x_axes().joined(left, right)  # same epochs
    others = figures[1][1]
    assert [ax.get_ylabel() for ax in others.axes] == ["lr", "time_s"]


def test_report_embeds_both_charts(tmp_path: Path) -> None:
    card = ModelCard("asanet", {"num_classes": 2}, "dense", [ModalityCard("optical", 3)],
                     [ClassInfo(1, "water", "#0000ff"), ClassInfo(2, "land", "#00ff00")])
    text = write_training_report(tmp_path / "r.html", card, HISTORY).read_text()
    assert "alt='loss (left axis) and accuracy (right axis)'" in text
    assert "alt='other logged values, one axis each'" in text
    assert text.count("data:image/png;base64,") == 2
