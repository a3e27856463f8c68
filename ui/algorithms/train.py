"""mmlc:train: train one of the four networks on your rasters and labels, into one model file."""
from __future__ import annotations

from ...core.operations import TRAIN
from ...core.operations.train import ARCHITECTURES, VARIANTS
from .base import MmlcAlgorithm
from .common_params import device_value, label_source, learning_rate, model_output_path, optional_int
from .scene_param import check_scene_source, scene_table_value
from .spec_params import add_spec_params

__all__ = ["ARCHITECTURES", "VARIANTS", "TrainAlgorithm"]  # the name table (models/registry.py), read here


class TrainAlgorithm(MmlcAlgorithm):
    NAME = TRAIN.id
    DISPLAY = TRAIN.name
    HELP = (
        "<p>Trains a network on one or two co-registered rasters and labels and writes one .mmlc model "
        "file (weights, inputs, normalisation, classes and provenance) plus an HTML training report.</p>"
        "<p><b>Architecture</b>: asanet (Input 1 optical + Input 2 SAR, segmentation), das2f (Input 1 "
        "multispectral + Input 2 panchromatic at 4x resolution, per-pixel), prsanet (two modalities, "
        "per-pixel, with modality rebalancing), hfdnet (Input 1 only; for SAR distilled from optical "
        "use <i>Distill</i>). <b>Variant</b>: ASANet backbone (convnextv2_atto ... convnextv2_base), "
        "DAS2F nanjing/xian, HFD-Net encoder resnet18/34/50; empty = default.</p>"
        "<p><b>Labels</b>: a class raster (0/nodata = unlabelled) or polygons/points with a class field. "
        "<b>Classes</b>: optional table 'value,name,#rrggbb' per line. Validation uses spatially "
        "disjoint blocks. 0 for batch size, learning rate or tile size keeps the network's recipe.</p>"
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        add_spec_params(self, TRAIN)

    def checkParameterValues(self, parameters, context):  # noqa: N802
        """A scene table or one scene whose labels are exactly one of a class raster and
        polygons/points (with a field); a variant must belong to the chosen architecture (all
        reported before any training)."""
        ok, msg, checked = check_scene_source(parameters, context, ("INPUT_1", "INPUT_2"))
        if not ok:
            return ok, msg
        ok, message = super().checkParameterValues(checked, context)
        if not ok:
            return ok, message
        arch = self.parameterAsEnumString(parameters, "ARCHITECTURE", context)
        variant = self.parameterAsEnumString(parameters, "VARIANT", context) if parameters.get("VARIANT") else ""
        if variant and variant not in VARIANTS.get(arch, []):
            known = ", ".join(VARIANTS.get(arch, [])) or "none (leave Variant empty)"
            return False, f"Variant {variant} is not a {arch} variant; {arch} variants: {known}"
        return True, ""

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ...core import api

        scenes = scene_table_value(self, parameters, context)
        inputs = [self.raster_path(self.parameterAsRasterLayer(parameters, "INPUT_1", context), "Input 1")]
        second = self.raster_path(self.parameterAsRasterLayer(parameters, "INPUT_2", context), "Input 2")
        if second:
            inputs.append(second)
        labels, field = label_source(self, parameters, context) if scenes is None else (None, None)
        output = model_output_path(self, parameters, context)
        report = self.parameterAsFileOutput(parameters, "OUTPUT_REPORT", context) or None

        def num(name: str):
            v = self.parameterAsDouble(parameters, name, context)
            return v if v > 0 else None

        result = self.call_core(
            api.train, feedback,
            architecture=self.parameterAsEnumString(parameters, "ARCHITECTURE", context),
            variant=self.parameterAsEnumString(parameters, "VARIANT", context) or None,
            inputs=inputs if scenes is None else None, labels=labels, label_field=field, scenes=scenes,
            classes=self.parameterAsFile(parameters, "CLASSES", context) or None,
            epochs=self.parameterAsInt(parameters, "EPOCHS", context),
            batch_size=int(num("BATCH_SIZE") or 0) or None,
            learning_rate=learning_rate(self, parameters, context),
            tile_size=int(num("TILE_SIZE") or 0) or None,
            validation_fraction=self.parameterAsDouble(parameters, "VALIDATION_FRACTION", context),
            refit_epochs=optional_int(self, parameters, "REFIT_EPOCHS", context),
            init_model=self.parameterAsFile(parameters, "INIT_MODEL", context) or None,
            device=device_value(self, parameters, context),
            output_model=output, output_report=report,
        )
        out = {"OUTPUT_MODEL": output}
        if report:
            out["OUTPUT_REPORT"] = report
        best = getattr(result, "best_metrics", None) or {}
        for k, v in best.items():
            if isinstance(v, (int, float)):
                feedback.pushInfo(f"best validation {k}: {v:.4f}")
        return out
