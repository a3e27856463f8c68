"""mmlc:distill: a SAR-only HFD-Net student distilled from an optical teacher (paired images)."""
from __future__ import annotations

from ...core.operations import DISTILL
from .base import MmlcAlgorithm
from .common_params import device_value, label_source, learning_rate, model_output_path
from .scene_param import check_scene_source, scene_table_value
from .spec_params import add_spec_params


class DistillAlgorithm(MmlcAlgorithm):
    NAME = DISTILL.id
    DISPLAY = DISTILL.name
    HELP = (
        "<p>HFD-Net heterogeneous feature distillation: a teacher trained on optical images (with "
        "<i>Train</i>, architecture hfdnet) stays frozen while a student of the same architecture learns "
        "from SAR, guided by the teacher's features and predictions on the paired optical image. "
        "The result is an ordinary SAR-only model file for <i>Classify</i>.</p>"
        "<p><b>Teacher</b>: hfdnet model file trained on optical. <b>Optical</b> and <b>SAR</b>: the "
        "co-registered pair (SAR in dB). <b>Labels</b>: class raster or vector with a class field. "
        "<b>Temperature</b>: softening of the logit distillation; <b>feature weight</b> and "
        "<b>KD weight</b>: weights of the feature and logit terms next to the segmentation loss. "
        "The report compares the distilled student with a student trained on SAR alone.</p>"
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        add_spec_params(self, DISTILL)

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, msg, checked = check_scene_source(parameters, context, ("INPUT_OPTICAL", "INPUT_SAR"))
        if ok and not parameters.get("SCENES") and not parameters.get("INPUT_SAR"):
            return False, "choose the SAR image (INPUT_SAR), or a scene table (SCENES)"
        if not ok:
            return ok, msg
        return super().checkParameterValues(checked, context)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ...core import api

        scenes = scene_table_value(self, parameters, context, n_inputs=2)
        labels, field = label_source(self, parameters, context) if scenes is None else (None, None)
        output = model_output_path(self, parameters, context)
        report = self.parameterAsFileOutput(parameters, "OUTPUT_REPORT", context) or None
        batch = self.parameterAsInt(parameters, "BATCH_SIZE", context)
        lr = learning_rate(self, parameters, context)
        self.call_core(
            api.distill, feedback,
            teacher=self.parameterAsFile(parameters, "TEACHER", context),
            input_optical=self.raster_path(self.parameterAsRasterLayer(parameters, "INPUT_OPTICAL", context),
                                           "Optical image"),
            input_sar=self.raster_path(self.parameterAsRasterLayer(parameters, "INPUT_SAR", context), "SAR image"),
            labels=labels, label_field=field, scenes=scenes, output_model=output, output_report=report,
            epochs=self.parameterAsInt(parameters, "EPOCHS", context),
            batch_size=batch or None, learning_rate=lr or None,
            temperature=self.parameterAsDouble(parameters, "TEMPERATURE", context),
            feature_weight=self.parameterAsDouble(parameters, "FEATURE_WEIGHT", context),
            kd_weight=self.parameterAsDouble(parameters, "KD_WEIGHT", context),
            device=device_value(self, parameters, context),
        )
        out = {"OUTPUT_MODEL": output}
        if report:
            out["OUTPUT_REPORT"] = report
        return out
