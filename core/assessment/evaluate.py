"""Accuracy assessment of a class raster against reference labels (the ``evaluate`` operation).

The reference (a class raster in any CRS, or a vector layer's class field) is read on the
*prediction's* grid through :class:`core.data.labels.LabelSource`, one block of rows at a time, and
accumulated in a :class:`core.assessment.metrics.ConfusionAccumulator`, so memory stays bounded whatever
the raster size. Pixels where the reference is unlabelled (0/nodata) or the prediction is nodata
(its nodata value, NaN, or 0) are left out; the latter are counted and reported as
"unclassified reference pixels".

Class names and colours come from the prediction's category names / colour table (what
``classify`` writes), then from the reference. When the reference classes come from a *text*
field (numbered 1..K alphabetically) and the prediction has category names, reference classes
are matched to prediction classes **by name** (case-insensitive), because the alphabetical
numbers are arbitrary; a reference name unknown to the prediction gets a value of its own and
counts as an error of omission (design choice; ``match_names=False`` compares numbers instead).

Outputs are written atomically (temp file + rename), only after the whole raster was read:
OUTPUT_TABLE is the confusion matrix as CSV (class names as header, rows = reference),
OUTPUT_REPORT the HTML report of :func:`core.assessment.reports.write_evaluation_report`.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..classes import ClassInfo, default_color
from ..data.labels import LabelSource, apply_remap
from ..engine.atomic import RunFiles, os_error
from ..engine.grid import Grid
from ..engine.io import open_raster
from ..engine.output_paths import check_outputs
from ..errors import InputError
from ..progress import NullProgress, Progress, check_cancel
from .metrics import ConfusionAccumulator, Metrics
from .reports import write_evaluation_report

#: Pixels per streamed block (about 8 MB of prediction + labels at uint16/int64 peaks).
BLOCK_PIXELS = 1 << 20


@dataclass
class EvaluationResult:
    """What :func:`evaluate` found: the metrics, their classes and matrix, and the written files."""

    metrics: Metrics
    classes: list[ClassInfo]
    confusion: np.ndarray
    report_path: Optional[str] = None
    table_path: Optional[str] = None
    unclassified: int = 0  # labelled reference pixels where the prediction is nodata

    @property
    def paths(self) -> dict[str, Optional[str]]:
        return {"OUTPUT_REPORT": self.report_path, "OUTPUT_TABLE": self.table_path}

    def to_dict(self) -> dict[str, Any]:
        d = self.metrics.to_dict()
        d["unclassified_reference_pixels"] = self.unclassified
        d["outputs"] = self.paths
        return d


def _prediction_block(band: Any, r0: int, rows: int, width: int, nodata: Optional[float], path: str) -> np.ndarray:
    """Rows [r0, r0+rows) of the prediction as uint16 classes, 0 where nodata/NaN/negative."""
    a = band.ReadAsArray(0, r0, width, rows)
    if a is None:
        raise InputError(f"cannot read rows {r0}..{r0 + rows} of {path} (truncated or corrupted file?)")
    valid = np.ones(a.shape, dtype=bool)
    if a.dtype.kind == "f":
        valid &= np.isfinite(a)
    if nodata is not None and np.isfinite(nodata):
        valid &= a != nodata
    valid &= a > 0
    v = a[valid]
    if v.size:
        if a.dtype.kind == "f" and np.any(v != np.round(v)):
            raise InputError(f"{path} holds non-integer values; the prediction must be a class raster")
        if v.max() > 65535:
            raise InputError(f"{path} holds the value {v.max():g}; class values must be 1..65535")
    out = np.zeros(a.shape, dtype=np.uint16)
    out[valid] = v.astype(np.uint16)
    return out


def _category_names(band: Any) -> dict[int, str]:
    names = band.GetCategoryNames() or []
    return {i: n.strip() for i, n in enumerate(names) if n and n.strip()}


def _name_remap(src: LabelSource, pred_names: dict[int, str], pred_max: int) -> dict[int, int]:
    """Reference value -> prediction value, matching text-field class names to category names."""
    by_name = {n.lower(): v for v, n in pred_names.items() if v != 0}
    remap: dict[int, int] = {}
    spare = max(pred_max, max(pred_names, default=0)) + 1
    for c in src.declared_classes:
        key = c.name.strip().lower()
        if key in by_name:
            remap[c.value] = by_name[key]
        else:
            remap[c.value] = spare
            spare += 1
    return remap


def evaluate(
    prediction: str,
    reference: str,
    label_field: Optional[str] = None,
    output_report: Optional[str] = None,
    output_table: Optional[str] = None,
    progress: Optional[Progress] = None,
    match_names: bool = True,
    block_pixels: int = BLOCK_PIXELS,
) -> EvaluationResult:
    """Compare the class raster ``prediction`` with ``reference`` labels on the prediction's grid.

    ``reference``: a class raster or a vector layer (``label_field`` names its class field).
    Returns an :class:`EvaluationResult`; writes OUTPUT_TABLE (CSV) and OUTPUT_REPORT (HTML) when
    given. Raises InputError (unreadable files, missing field, no labelled reference pixel on a
    classified pixel), GridError (no overlap, CRS problems), OutputError (unwritable outputs),
    Cancelled; nothing is written at the output paths on error.
    """
    progress = progress or NullProgress()
    inputs = [str(prediction), str(reference)]
    check_outputs("evaluate", {"OUTPUT_REPORT": output_report, "OUTPUT_TABLE": output_table},
                  {"PREDICTION": inputs[0], "REFERENCE": inputs[1]})
    table_p = Path(output_table) if output_table else None
    report_p = Path(output_report) if output_report else None

    ds = open_raster(str(prediction))
    check_prediction(ds, str(prediction))
    grid = Grid.from_dataset(ds)
    band = ds.GetRasterBand(1)
    nodata = band.GetNoDataValue()
    pred_names = _category_names(band)

    with LabelSource(reference, grid.crs_wkt, label_field) as src:
        src.check_overlap(grid)
        remap: Optional[dict[int, int]] = None
        if src.names_from_strings:
            if match_names and pred_names:
                pred_max = int(band.ComputeRasterMinMax(False)[1])
                remap = _name_remap(src, pred_names, pred_max)
                progress.info(f"reference classes of the text field {label_field!r} matched to the prediction's "
                              "class names")
            else:
                listing = ", ".join(f"{c.value}={c.name}" for c in src.declared_classes)
                progress.warn(f"reference classes come from the text field {label_field!r}, numbered "
                              f"alphabetically ({listing}); the prediction's values are compared with these numbers")
        acc = ConfusionAccumulator(None, ignore=(0,))
        rows_per_block = max(1, int(block_pixels) // max(grid.width, 1))
        for r0 in range(0, grid.height, rows_per_block):
            n = min(rows_per_block, grid.height - r0)
            pred = _prediction_block(band, r0, n, grid.width, nodata, str(prediction))
            ref = src.read(grid.window(r0, 0, n, grid.width))
            if remap is not None:
                ref = apply_remap(ref, remap)
            acc.update(pred, ref)
            progress.set_fraction(0.95 * (r0 + n) / grid.height)
            check_cancel(progress)
        if acc.total == 0:
            extra = (f" ({acc.unclassified} labelled reference pixels fall where the prediction is nodata)"
                     if acc.unclassified else "")
            raise InputError(
                f"no labelled reference pixel of {reference} falls on a classified pixel of {prediction}{extra}; "
                "check that the reference covers the classified area and that the label field is the right one"
            )
        ref_classes = {c.value: c for c in src.classes_for(acc.values)}
        if remap is not None:
            back = {dst: src_v for src_v, dst in remap.items()}
            named = {c.value: c for c in src.declared_classes}
            ref_classes = {v: ClassInfo(v, named[back[v]].name, named[back[v]].color)
                           for v in acc.values if v in back and back[v] in named}

    pred_classes = {c.value: c for c in _classes_of_band(band, acc.values)}
    classes: list[ClassInfo] = []
    for i, v in enumerate(acc.values):
        if v in pred_names:
            classes.append(pred_classes[v])
        elif v in ref_classes:
            classes.append(ClassInfo(v, ref_classes[v].name, ref_classes[v].color))
        else:
            classes.append(ClassInfo(v, f"class {v}", default_color(i)))
    cm = acc.matrix
    metrics = Metrics.from_confusion(cm, classes)
    metrics.extra["unclassified_reference_pixels"] = acc.unclassified
    ds = None

    details = {
        "prediction": str(prediction),
        "reference": str(reference) + (f" (field {label_field})" if label_field and src.kind == "vector" else ""),
        "grid": f"{grid.width} x {grid.height} pixels of {grid.res[0]:g} x {grid.res[1]:g}",
        "pixels compared": metrics.n_pixels,
        "labelled reference pixels where the prediction is nodata (not counted)": acc.unclassified,
    }
    _write_outputs(table_p, report_p, metrics, classes, details, Path(str(prediction)).name)
    progress.set_fraction(1.0)
    progress.info(f"OA {100 * metrics.overall_accuracy:.2f} %, kappa {metrics.kappa:.4f}, "
                  f"mIoU {100 * metrics.miou:.2f} % over {metrics.n_pixels} pixels")
    return EvaluationResult(metrics, classes, cm, str(report_p) if report_p else None,
                            str(table_p) if table_p else None, acc.unclassified)


def _classes_of_band(band: Any, values: list[int]) -> list[ClassInfo]:
    from ..data.labels import classes_from_band

    return classes_from_band(band, values)


#: First characters that make a spreadsheet read a cell as a formula (CSV injection).
_FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: str) -> str:
    """A text cell safe to open in a spreadsheet: one that starts like a formula gets a leading
    apostrophe (shown as text, not evaluated), as OWASP advises for CSV exports."""
    return "'" + text if text.startswith(_FORMULA_LEADS) else text


def confusion_csv(cm: np.ndarray, classes: list[ClassInfo]) -> str:
    """The confusion matrix as CSV text: header of class names, one row per reference class.
    Class names that start like a spreadsheet formula are escaped (:func:`csv_cell`)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["reference \\ prediction", *(csv_cell(c.name) for c in classes)])
    for c, row in zip(classes, np.asarray(cm)):
        w.writerow([csv_cell(c.name), *(int(x) for x in row)])
    return buf.getvalue()


def _write_outputs(table_p: Optional[Path], report_p: Optional[Path], metrics: Metrics,
                   classes: list[ClassInfo], details: dict[str, Any], name: str) -> None:
    """Write the table and the report to temporary files, then place both together (core.engine.atomic)."""
    finals = [p for p in (table_p, report_p) if p is not None]
    if not finals:
        return
    with RunFiles(finals) as run:
        if table_p is not None:
            tmp = run.temp(table_p)
            try:
                tmp.write_text(confusion_csv(metrics.confusion, classes), encoding="utf-8")
            except OSError as e:
                raise os_error(e, table_p) from e
        if report_p is not None:
            write_evaluation_report(run.temp(report_p), metrics, classes, title=f"Accuracy assessment of {name}",
                                    extra=details)
        run.commit()


def check_prediction(ds: Any, path: str) -> None:
    """Refuse a PREDICTION that is not a single-band class raster (e.g. a reflectance image given
    by mistake would score an OA near 0 instead of being refused). Integer types are class
    rasters; a float band (what raster calculators write) must hold whole numbers, which
    :func:`_prediction_block` checks on every block read."""
    from osgeo import gdal

    if ds.RasterCount != 1:
        raise InputError(f"PREDICTION {path} has {ds.RasterCount} bands; give the single-band class raster "
                         "that classify wrote")
    dt = ds.GetRasterBand(1).DataType
    usable = (gdal.GDT_Byte, gdal.GDT_UInt16, gdal.GDT_Int16, gdal.GDT_UInt32, gdal.GDT_Int32, gdal.GDT_Float32,
              gdal.GDT_Float64)
    if dt not in usable:
        raise InputError(f"PREDICTION {path} is a {gdal.GetDataTypeName(dt)} raster; a class raster holds integer "
                         "class values: give the class raster classify wrote")
