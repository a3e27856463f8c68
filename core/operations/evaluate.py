"""The spec of *evaluate*: accuracy of a class raster against reference labels (OA, AA, kappa, mIoU)."""
from __future__ import annotations

from .shared import label_params
from .spec import REPORT, TABLE, Operation, Param

EVALUATE = Operation(
    id="evaluate",
    name="Evaluate a land-cover map",
    cli_summary="compare a classification with reference labels",
    cli_required=("PREDICTION", "REFERENCE|REFERENCE_VECTOR"),
    numbers=(("OA", "Overall accuracy"), ("AA", "Average accuracy"), ("KAPPA", "Cohen's kappa"),
             ("MIOU", "Mean IoU")),
    params=(
        Param("PREDICTION", "raster", "Classified raster",
              help="A class raster, e.g. the Land cover output of Classify; 0/nodata is ignored.",
              cli_help="classified raster",
              doc="single-band integer class raster (e.g. from *Classify*); anything else is refused",
              doc_default="—", core="prediction"),
        *label_params("REFERENCE", "Reference labels",
                      cli_raster="reference class raster (a vector file with LABEL_FIELD is accepted too)",
                      cli_vector="reference polygons/points with a class field (instead of REFERENCE)",
                      cli_field="class field of REFERENCE_VECTOR", doc_raster="reference class raster",
                      doc_vector="or reference polygons/points (instead of `REFERENCE`; a vector in `REFERENCE`, as "
                                 "in earlier versions, is still accepted)",
                      doc_field="class field of `REFERENCE_VECTOR`", core="reference"),
        Param("OUTPUT_REPORT", "output_file", "Accuracy report", output=REPORT, file_filter="HTML files (*.html)",
              optional=True,
              help="HTML report: OA, AA, kappa, mIoU, per-class scores and the confusion matrix as a table and heat "
                   "map.",
              cli_help="output report (HTML)", doc="HTML report with the confusion matrix", doc_default="none",
              core="output_report"),
        Param("OUTPUT_TABLE", "output_file", "Confusion matrix", output=TABLE, file_filter="CSV files (*.csv)",
              optional=True, help="The confusion matrix as CSV (rows: reference, columns: prediction).",
              cli_help="output confusion table (CSV)",
              doc="confusion matrix as CSV (rows: reference, columns: prediction); class names that start like a "
                  "spreadsheet formula (`=`, `+`, `-`, `@`) get a leading `'`", doc_default="none",
              core="output_table"),
    ),
)
