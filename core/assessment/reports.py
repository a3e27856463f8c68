"""Self-contained HTML reports of an evaluation or a training run.

One file, portable: the CSS is inline and the plots (confusion-matrix heat map, loss and metric
curves) are PNGs embedded as base64 ``data:`` URIs, so the report can be mailed, moved or
attached to a model file without a companion folder (design choice of issue 8: embedding was
chosen over a ``<name>_files/`` folder because a single file is also a single atomic write).

matplotlib is imported lazily with the Agg backend (through ``Figure`` + ``FigureCanvasAgg``, no
pyplot global state, safe inside QGIS); when it is missing the report is written without plots.
Every text that comes from users (class names, paths, history keys) is HTML-escaped.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from ..classes import ClassInfo
from ..errors import OutputError
from .metrics import Metrics

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:70em;color:#222;
padding:0 1em}
h1{font-size:1.6em;border-bottom:2px solid #1f78b4;padding-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}th,td{border:1px solid #ccc;padding:.25em .6em}
th{background:#f0f4f8;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.sw{display:inline-block;width:1em;height:1em;border:1px solid #555;vertical-align:middle;margin-right:.4em}
.muted{color:#777;font-size:.9em}img{max-width:100%;height:auto;border:1px solid #ddd;margin:.4em 0}
.scroll{overflow-x:auto}
"""


# --- small HTML helpers ---------------------------------------------------------------------------
def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    try:
        f = float(x)
    except (TypeError, ValueError):
        return _e(x)
    if not math.isfinite(f):
        return "–"
    return f"{f:.{digits}f}"


def _pct(x: Optional[float]) -> str:
    return "–" if x is None or not math.isfinite(float(x)) else f"{100.0 * float(x):.2f} %"


def _swatch(color: str) -> str:
    return f'<span class="sw" style="background:{_e(color)}"></span>'


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric_from: int = 1) -> str:
    """Table from already-escaped cell HTML; columns from ``numeric_from`` are right-aligned."""
    out = ["<div class='scroll'><table><tr>", *(f"<th>{h}</th>" for h in header), "</tr>"]
    for row in rows:
        out.append("<tr>")
        for j, cell in enumerate(row):
            out.append(f"<td class='n'>{cell}</td>" if j >= numeric_from else f"<td>{cell}</td>")
        out.append("</tr>")
    out.append("</table></div>")
    return "".join(out)


def _kv_table(items: Mapping[str, Any]) -> str:
    rows = []
    for k, v in items.items():
        if isinstance(v, (dict, list, tuple)):
            cell = f"<code>{_e(json.dumps(v, default=str, sort_keys=True))}</code>"
        elif isinstance(v, float):
            cell = _num(v)
        else:
            cell = _e(v)
        rows.append((_e(k), cell))
    return _table(["", ""], rows, numeric_from=2) if rows else "<p class='muted'>none</p>"


def _img(png: Optional[bytes], alt: str) -> str:
    if png is None:
        return f"<p class='muted'>({_e(alt)}: plot not available, matplotlib is not installed)</p>"
    return f"<img alt='{_e(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>"


def _page(title: str, body: Sequence[str]) -> str:
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>{''.join(body)}"
        "<p class='muted'>Written by mmlc.</p></body></html>"
    )


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to a temp file beside ``path`` then rename it (no half-written output)."""
    p = Path(path)
    if not p.parent.is_dir():
        raise OutputError(f"cannot write {p}: the folder {p.parent} does not exist")
    from ..engine.atomic import new_run_id, os_error, remove_temp, temp_path

    tmp = temp_path(p, new_run_id())  # unique per write: two runs of one process never share it
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, p)
    except OSError as e:
        raise os_error(e, p) from e
    finally:
        remove_temp(tmp)
    return p


# --- plots ----------------------------------------------------------------------------------------
def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure on an Agg canvas, or None without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def confusion_png(cm: np.ndarray, names: Sequence[str]) -> Optional[bytes]:
    """Heat map of a confusion matrix normalised per reference row (counts printed when small)."""
    k = len(names)
    fig = _figure(max(4.0, 0.55 * k + 2.5), max(3.5, 0.5 * k + 2.0))
    if fig is None:
        return None
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the reference class")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_yticklabels(names)
    ax.set_xlabel("prediction")
    ax.set_ylabel("reference")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    return _png(fig)


_SCORE_WORDS = frozenset({"accuracy", "acc", "oa", "aa", "miou", "iou", "kappa", "f1", "precision", "recall"})


#: One colour per curve across both axes of the loss/score chart (matplotlib's tab10 order).
_CURVE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf")


def _series(history: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    return [float(h[key]) if key in h and h[key] is not None else math.nan for h in history]


def split_curves(history: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str], list[str]]:
    """(losses, scores, others) among the history's keys: losses contain "loss"; scores are
    accuracy-like names (accuracy, mIoU, kappa, F1...) whose values lie in [-1, 1]; everything
    else (learning rate, seconds, imbalance factors...) has a scale of its own."""
    losses, scores, others = [], [], []
    for k in _history_keys(history):
        if k == "epoch":
            continue
        vals = [v for v in _series(history, k) if math.isfinite(v)]
        name = k.lower()
        if "loss" in name:
            losses.append(k)
        elif _SCORE_WORDS & set(re.split(r"[^a-z0-9]+", name)) and vals and min(vals) >= -1.0 and max(vals) <= 1.0:
            scores.append(k)
        else:
            others.append(k)
    return losses, scores, others


def curves_figures(history: Sequence[Mapping[str, float]]) -> list[tuple[str, Any]]:
    """The training curves as matplotlib figures (empty without matplotlib):

    1. losses on the left y axis and accuracy-like scores (0-1) on a second, right y axis of the
       same epochs (a loss of 2.3 and an accuracy of 0.8 each keep a readable scale);
    2. every other logged value (learning rate, seconds per epoch...) in a panel of its own.
    """
    losses, scores, others = split_curves(history)
    x = [float(h.get("epoch", i + 1)) for i, h in enumerate(history)]
    marker = "o" if len(x) < 30 else None
    out: list[tuple[str, Any]] = []
    if losses or scores:
        fig = _figure(7.5, 3.8)
        if fig is None:
            return []
        ax = fig.add_subplot(1, 1, 1)
        colours = iter(_CURVE_COLOURS * (1 + (len(losses) + len(scores)) // len(_CURVE_COLOURS)))
        handles = []
        for k in losses:
            handles += ax.plot(x, _series(history, k), marker=marker, markersize=3, label=k, color=next(colours))
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        if scores:
            right = ax.twinx()
            for k in scores:
                handles += right.plot(x, _series(history, k), marker=marker, markersize=3, linestyle="--", label=k,
                                      color=next(colours))
            low = min([0.0] + [v for k in scores for v in _series(history, k) if math.isfinite(v)])
            right.set_ylim(low, 1.0)
            right.set_ylabel("accuracy / score (0-1)")
        ax.set_title("loss (left axis, solid) and validation scores (right axis, dashed)")
        ax.legend(handles=handles, labels=[h.get_label() for h in handles], fontsize=7, loc="upper center",
                  bbox_to_anchor=(0.5, -0.16), ncol=min(4, len(handles)), frameon=False)
        out.append(("loss (left axis) and accuracy (right axis)", fig))
    if others:
        fig = _figure(7.5, 1.9 * len(others))
        if fig is None:
            return out
        for i, k in enumerate(others):
            ax = fig.add_subplot(len(others), 1, i + 1)
            ax.plot(x, _series(history, k), marker=marker, markersize=3, color="#555555")
            ax.set_ylabel(k, fontsize=8)
            ax.grid(alpha=0.3)
            if i == len(others) - 1:
                ax.set_xlabel("epoch")
        out.append(("other logged values, one axis each", fig))
    return out


def curves_png(history: Sequence[Mapping[str, float]]) -> list[tuple[str, bytes]]:
    """The figures of :func:`curves_figures` as PNGs."""
    return [(title, _png(fig)) for title, fig in curves_figures(history)]


def _history_keys(history: Sequence[Mapping[str, Any]]) -> list[str]:
    keys: list[str] = []
    for h in history:
        for k in h:
            if k not in keys:
                keys.append(k)
    return keys


# --- sections -------------------------------------------------------------------------------------
def _metrics_sections(metrics: Metrics, classes: Sequence[ClassInfo]) -> list[str]:
    s = metrics.summary()
    summary = _table(
        ["overall accuracy", "average accuracy", "kappa", "mIoU", "macro F1", "pixels"],
        [(_pct(s["overall_accuracy"]), _pct(s["average_accuracy"]), _num(s["kappa"]), _pct(s["miou"]),
          _pct(s["macro_f1"]), _num(metrics.n_pixels))],
        numeric_from=0,
    )
    rows = []
    for i, c in enumerate(classes):
        rows.append((
            f"{_swatch(c.color)}{_e(c.value)} {_e(c.name)}", _num(metrics.support[i]), _num(metrics.predicted[i]),
            _pct(metrics.recall[i]), _pct(metrics.precision[i]), _pct(metrics.iou[i]), _pct(metrics.f1[i]),
        ))
    per_class = _table(
        ["class", "reference pixels", "predicted pixels", "recall (producer's)", "precision (user's)", "IoU", "F1"],
        rows,
    )
    names = [c.name for c in classes]
    cm_rows = [
        (f"{_swatch(c.color)}{_e(c.name)}", *(_num(v) for v in metrics.confusion[i]), _num(metrics.support[i]))
        for i, c in enumerate(classes)
    ]
    cm_rows.append(("<b>total</b>", *(_num(v) for v in metrics.predicted), _num(metrics.n_pixels)))
    cm_table = _table(["reference \\ prediction", *(_e(n) for n in names), "total"], cm_rows)
    return [
        "<h2>Summary</h2>", summary,
        "<p class='muted'>Unlabelled pixels are ignored; classes absent from both the reference and the "
        "prediction are left out of the means; '–' marks an undefined value (0/0).</p>",
        "<h2>Per class</h2>", per_class,
        "<h2>Confusion matrix</h2><p class='muted'>rows: reference, columns: prediction</p>", cm_table,
        _img(confusion_png(metrics.confusion, names), "confusion matrix heat map"),
    ]


def write_evaluation_report(
    path: str | Path,
    metrics: Metrics,
    classes: Sequence[ClassInfo] | None = None,
    title: str = "Accuracy assessment",
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the HTML report of an evaluation: summary (OA/AA/kappa/mIoU), per-class table,
    confusion matrix (table and heat map), and ``extra`` (inputs, counts...) as a key/value table.

    ``classes`` defaults to ``metrics.classes``. Atomic; OutputError when it cannot be written.
    """
    cls = list(classes) if classes is not None else list(metrics.classes)
    body = _metrics_sections(metrics, cls)
    if extra:
        body += ["<h2>Details</h2>", _kv_table(extra)]
    return write_text_atomic(path, _page(title, body))


def baseline_section(network: Metrics | None, baseline: Any) -> list[str]:
    """The network beside a per-pixel random forest trained and scored on the same pixels
    (``baseline``: :class:`core.assessment.baseline.BaselineResult`), or the reason there is no forest."""
    out = ["<h2>Baseline: random forest on the same pixels</h2>"]
    if baseline.metrics is None:
        return out + [f"<p>{_e(baseline.note)}</p>"]
    rows = []
    for label, m in (("network (best epoch)", network), (baseline.name, baseline.metrics)):
        if m is not None:
            s = m.summary()
            rows.append((_e(label), _pct(s["overall_accuracy"]), _pct(s["average_accuracy"]), _num(s["kappa"]),
                         _pct(s["miou"]), _num(m.n_pixels)))
    verdict = ""
    if network is not None:
        diff = network.summary()["overall_accuracy"] - baseline.metrics.summary()["overall_accuracy"]
        verdict = (f"<p>The network's overall accuracy is {abs(diff) * 100:.1f} points "
                   f"{'above' if diff >= 0 else 'below'} the forest's on these validation blocks.</p>")
    return out + [
        _table(["classifier", "overall accuracy", "average accuracy", "kappa", "mIoU", "validation pixels"], rows),
        f"<p class='muted'>The forest ({_e(baseline.name)}) was trained on {baseline.train_pixels} of the "
        "network's training pixels, with the input bands at each pixel (normalised as the network sees them; "
        f"finer inputs averaged onto input 1's grid), in {baseline.seconds:.1f} s.</p>", verdict,
    ]


def write_training_report(
    path: str | Path,
    card: Any,
    history: Sequence[Mapping[str, float]],
    metrics: Metrics | None = None,
    extra: Mapping[str, Any] | None = None,
    title: str | None = None,
    baseline: Any = None,
) -> Path:
    """Write the HTML report of a training run.

    ``card`` is a :class:`core.modelfiles.modelfile.ModelCard`: architecture, variant, modalities and bands,
    classes with colour swatches and provenance are summarised. ``history`` is one dict per epoch;
    every key is rendered generically (losses, accuracies, PRSANet's per-modality imbalance factor
    and prototype accuracy...), as a table and as curves. ``metrics`` adds the validation summary,
    per-class table and confusion matrix. ``baseline`` (:class:`core.assessment.baseline.BaselineResult`)
    adds the random-forest comparison (:func:`baseline_section`). Atomic; OutputError when it
    cannot be written.
    """
    arch = getattr(card, "architecture", "model")
    variant = getattr(card, "variant", "")
    body: list[str] = ["<h2>Model</h2>"]
    model_items: dict[str, Any] = {
        "architecture": arch,
        "variant": variant or "–",
        "head kind": getattr(card, "head_kind", ""),
        "tile size / overlap": f"{getattr(card, 'tile_size', '')} / {getattr(card, 'overlap', '')}",
        "build arguments": dict(getattr(card, "build_kwargs", {}) or {}),
    }
    body.append(_kv_table(model_items))
    mod_rows = []
    for m in getattr(card, "modalities", []):
        mod_rows.append((
            _e(m.name), _num(m.bands), _num(m.grid_ratio),
            f"{m.patch_size} (anchor {m.patch_anchor})" if m.patch_size else "–",
            _e(", ".join(m.band_names)) if m.band_names else "–",
            "yes" if m.to_db else "no",
        ))
    body += ["<h2>Inputs (in order)</h2>",
             _table(["modality", "bands", "grid ratio", "patch", "band names", "to dB"], mod_rows)]
    class_rows = [(f"{_swatch(c.color)}{_e(c.value)}", _e(c.name), _e(c.color)) for c in getattr(card, "classes", [])]
    body += ["<h2>Classes</h2>", _table(["value", "name", "colour"], class_rows, numeric_from=3)]
    provenance = dict(getattr(card, "provenance", {}) or {})
    if provenance:
        body += ["<h2>Provenance</h2>", _kv_table(provenance)]
    if history:
        keys = _history_keys(history)
        rows = [tuple(_num(h.get(k)) for k in keys) for h in history]
        body += [f"<h2>Training history ({len(history)} epochs)</h2>",
                 _table([_e(k) for k in keys], rows, numeric_from=0)]
        plots = curves_png(history)
        if not plots:
            body.append(_img(None, "training curves"))
        body += [_img(png, name) for name, png in plots]
    if metrics is not None:
        body += ["<h2>Validation</h2>", *_metrics_sections(metrics, metrics.classes)]
    if baseline is not None:
        body += baseline_section(metrics, baseline)
    if extra:
        body += ["<h2>Details</h2>", _kv_table(extra)]
    heading = title or f"Training report: {arch}" + (f" ({variant})" if variant else "")
    return write_text_atomic(path, _page(heading, body))
