"""What a model needs and where it came from, as rich text for the model chooser's info panel.

Built from the model card alone (:mod:`core.modelfiles.cardinfo`, no PyTorch): architecture and variant,
the inputs in order with their band names, data type and resolution, the classes with their
colours, and the training provenance (date, data, labels note, validation scores).
"""
from __future__ import annotations

import html
import os
from typing import Any, Optional, Sequence

INPUT_PARAMS = ("Input 1", "Input 2", "Input 3", "Input 4")
_HEADS = {"dense": "segmentation (tiles)", "patch": "per-pixel (a patch around every pixel)"}
_SCORES = (("overall_accuracy", "OA"), ("miou", "mIoU"), ("kappa", "kappa"))


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _breakable(text: str) -> str:
    """Escaped text that may wrap after ``_``, ``.``, ``/`` (file names are long single words)."""
    out = _e(text)
    for ch in ("_", ".", "/"):
        out = out.replace(ch, ch + "\u200b")
    return out


def _swatch(color: str) -> str:
    return f"<span style='background-color:{_e(color)}'>&nbsp;&nbsp;&nbsp;&nbsp;</span>"


def _expected(card: Any, i: int) -> dict:
    exp = (card.provenance or {}).get("expected_inputs") or []
    return exp[i] if i < len(exp) and isinstance(exp[i], dict) else {}


def input_lines(card: Any) -> list[str]:
    """One rich-text line per input: which dialog input, modality, bands in order, type, size."""
    lines = []
    for i, m in enumerate(card.modalities):
        where = INPUT_PARAMS[i] if i < len(INPUT_PARAMS) else f"Input {i + 1}"
        if m.band_names:
            bands = f"{m.bands} band{'s' if m.bands != 1 else ''} in this order: <b>{_e(', '.join(m.band_names))}</b>"
        else:
            bands = f"{m.bands} band{'s' if m.bands != 1 else ''} (names not recorded: the training data's order)"
        extra = []
        exp = _expected(card, i)
        if exp.get("data_type"):
            extra.append(_e(exp["data_type"]))
        if exp.get("pixel_size_m"):
            extra.append(f"{float(exp['pixel_size_m']):g} m pixels")
        if m.grid_ratio > 1:
            extra.append(f"{m.grid_ratio}x finer than Input 1")
        if m.to_db:
            extra.append("linear intensity (converted to dB by the model)")
        text = f"<b>{where}</b> – {_e(m.name)}: {bands}"
        if extra:
            text += f"; {'; '.join(extra)}"
        if exp.get("description"):
            text += f" – <i>{_e(exp['description'])}</i>"
        lines.append(text)
    return lines


def card_html(card: Any, source: str = "") -> str:
    """The info panel's rich text for ``card`` (a ``core.modelfiles.modelfile.ModelCard``)."""
    variant = f" ({_e(card.variant)})" if card.variant else ""
    head = _HEADS.get(card.head_kind, _e(card.head_kind))
    parts = [f"<b>{_e(card.architecture)}</b>{variant} · {head}"]
    if source:
        parts[0] += f" · <span style='color:#666'>{_e(source)}</span>"
    parts.append("<br>".join(input_lines(card)))
    classes = " &nbsp; ".join(f"{_swatch(c.color)}&nbsp;{_e(c.value)} {_e(c.name)}" for c in card.classes)
    parts.append(f"<b>Classes</b>: {classes}")
    parts.append(provenance_text(card.provenance or {}))
    return "<p style='margin:0'>" + "</p><p style='margin:4px 0 0 0'>".join(p for p in parts if p) + "</p>"


def provenance_text(prov: dict) -> str:
    """Date, epochs, training data, validation scores and the labels note, when recorded."""
    bits = []
    if prov.get("date"):
        bits.append(f"trained {_e(str(prov['date'])[:10])}")
    if prov.get("epochs"):
        bits.append(f"{_e(prov['epochs'])} epochs")
    inputs = [d for d in (prov.get("inputs") or []) if isinstance(d, dict) and d.get("path")]
    if inputs and not prov.get("labels_note"):  # the note describes the data in words
        names = sorted({os.path.basename(str(d["path"])) for d in inputs})
        shown = ", ".join(names[:2]) + (f" and {len(names) - 2} more" if len(names) > 2 else "")
        bits.append(f"on {_breakable(shown)}")
    scores = prov.get("best_metrics") or {}
    vals = [f"{label} {float(scores[k]):.2f}" for k, label in _SCORES if isinstance(scores.get(k), (int, float))]
    if vals:
        bits.append("validation " + ", ".join(vals))
    text = "<b>Training</b>: " + "; ".join(bits) if bits else ""
    if prov.get("labels_note"):
        text += ("<br>" if text else "") + f"<i>{_e(prov['labels_note'])}</i>"
    return f"<span style='font-size:small'>{text}</span>" if text else ""


def band_check(card: Any, band_counts: Sequence[Optional[int]]) -> list[str]:
    """Plain-text problems of the chosen inputs vs the card: missing inputs, wrong band counts,
    inputs the model does not take. ``band_counts[i]`` is None for an input left empty."""
    problems = []
    for i, m in enumerate(card.modalities):
        n = band_counts[i] if i < len(band_counts) else None
        where = INPUT_PARAMS[i] if i < len(INPUT_PARAMS) else f"Input {i + 1}"
        if n is None:
            problems.append(f"{where} ({m.name}, {m.bands} bands) is empty: the model needs it")
        elif n != m.bands:
            order = f" ({', '.join(m.band_names)})" if m.band_names else ""
            problems.append(f"{where} has {n} band{'s' if n != 1 else ''} but the model's {m.name} input "
                            f"needs {m.bands}{order}")
    for i in range(len(card.modalities), len(band_counts)):
        if band_counts[i] is not None:
            problems.append(f"{INPUT_PARAMS[i]} is set but this model takes {len(card.modalities)} input(s): "
                            "leave it empty")
    return problems
