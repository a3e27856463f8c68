"""mmlc:evaluate: accuracy of a class raster against reference labels (OA, AA, kappa, mIoU)."""
from __future__ import annotations

from ...core.operations import EVALUATE
from .base import MmlcAlgorithm
from .common_params import check_label_params, label_source
from .spec_params import add_spec_params


class EvaluateAlgorithm(MmlcAlgorithm):
    NAME = EVALUATE.id
    DISPLAY = EVALUATE.name
    HELP = (
        "<p>Compares a class raster (e.g. from <i>Classify</i>) with reference labels on the "
        "prediction's grid and reports the confusion matrix, overall accuracy (OA), average accuracy "
        "(AA), Cohen's kappa, per-class IoU, precision, recall and F1, and the mean IoU (mIoU). "
        "Unlabelled reference pixels (0/nodata) are ignored.</p>"
        "<p><b>Reference</b>: a class raster or polygons/points with a class field (any CRS). "
        "OA, AA, KAPPA and MIOU are also returned as outputs for Modeler chains.</p>"
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        add_spec_params(self, EVALUATE)

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, msg, checked = check_label_params(parameters, context, "REFERENCE", "Reference labels")
        if not ok:
            return ok, msg
        return super().checkParameterValues(checked, context)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ...core import api

        prediction = self.raster_path(self.parameterAsRasterLayer(parameters, "PREDICTION", context), "Prediction")
        reference, field = label_source(self, parameters, context, "REFERENCE", "Reference labels")
        report = self.parameterAsFileOutput(parameters, "OUTPUT_REPORT", context) or None
        table = self.parameterAsFileOutput(parameters, "OUTPUT_TABLE", context) or None
        result = self.call_core(api.evaluate, feedback, prediction=prediction, reference=reference,
                                label_field=field, output_report=report, output_table=table)
        m = result.metrics
        out = {"OA": float(m.oa), "AA": float(m.aa), "KAPPA": float(m.kappa), "MIOU": float(m.miou)}
        feedback.pushInfo("OA {OA:.4f}  AA {AA:.4f}  kappa {KAPPA:.4f}  mIoU {MIOU:.4f}".format(**out))
        if report:
            out["OUTPUT_REPORT"] = report
        if table:
            out["OUTPUT_TABLE"] = table
        return out

