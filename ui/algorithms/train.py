"""mmlc:train: train one of the four networks on your rasters and labels, into one model file."""
from __future__ import annotations

from qgis.core import (
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from .base import MmlcAlgorithm
from .common_params import (
    Double,
    Integer,
    add_budget_params,
    add_device_param,
    add_label_params,
    add_model_outputs,
    advanced,
    choice_param,
    device_value,
    helped,
    label_source,
    learning_rate,
    model_output_path,
)
from .scene_param import add_scenes_param, check_scene_source, scene_table_value

ARCHITECTURES = ["asanet", "das2f", "prsanet", "hfdnet"]
#: The variants of each network (models.registry ``ModelSpec.variants``, listed here so that the
#: dialog does not import torch; a test checks both agree), default first.
VARIANTS: dict[str, list[str]] = {
    "asanet": ["convnextv2_tiny", "convnextv2_atto", "convnextv2_femto", "convnextv2_pico", "convnextv2_nano",
               "convnextv2_base"],
    "das2f": ["nanjing", "xian"],
    "prsanet": [],
    "hfdnet": ["resnet50", "resnet34", "resnet18"],
}


class TrainAlgorithm(MmlcAlgorithm):
    NAME = "train"
    DISPLAY = "Train a land-cover model"
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
        arch = QgsProcessingParameterEnum("ARCHITECTURE", "Architecture", ARCHITECTURES, defaultValue="asanet")
        arch.setUsesStaticStrings(True)
        self.addParameter(arch)
        every = [v for a in ARCHITECTURES for v in VARIANTS[a]]
        labels = {"": "default of the architecture", **{v: f"{v} ({a})" for a in ARCHITECTURES for v in VARIANTS[a]}}
        variant = choice_param("VARIANT", "Variant", [(v, labels[v]) for v in every], None, optional=True,
                               wrapper="choice.VariantChoiceWrapper", per_architecture=VARIANTS)
        variant.setMetadata({"widget_wrapper": {**variant.metadata()["widget_wrapper"], "labels": labels}})
        self.addParameter(advanced(variant, "Size of the network: ASANet backbone " + ", ".join(VARIANTS["asanet"])
                                   + "; DAS2F nanjing/xian; HFD-Net encoder resnet50/34/18; empty = the "
                                   "architecture's default (the first listed)."))
        self.addParameter(helped(QgsProcessingParameterRasterLayer("INPUT_1", "Input 1 (optical / MS / first modality)",
                                                                   optional=True),
                                 "ASANet optical, DAS2F multispectral, PRSANet first modality, HFD-Net its only "
                                 "input. The band order is recorded in the model file."))
        self.addParameter(helped(QgsProcessingParameterRasterLayer("INPUT_2", "Input 2 (SAR / PAN / second modality)",
                                                                   optional=True),
                                 "ASANet SAR (dB), DAS2F panchromatic (4x finer), PRSANet second modality; empty "
                                 "for HFD-Net."))
        add_label_params(self)
        classes = QgsProcessingParameterFile("CLASSES", "Class table (value,name,#rrggbb)", optional=True)
        classes.setFileFilter("Class tables (*.csv *.txt)")
        self.addParameter(classes)
        add_budget_params(self)
        self.addParameter(advanced(QgsProcessingParameterNumber(
            "TILE_SIZE", "Tile size (0 = the network's default)", Integer, 0, minValue=0),
            "Training crop side for segmentation networks; 0 keeps the network's recipe."))
        fraction = QgsProcessingParameterNumber("VALIDATION_FRACTION", "Validation fraction", Double, 0.2,
                                                minValue=0.0, maxValue=0.9)
        fraction.setMetadata({"widget_wrapper": {"decimals": 2}})
        self.addParameter(advanced(fraction,
            "Share of the labelled pixels held out in spatially disjoint blocks to pick the best epoch."))
        init = QgsProcessingParameterFile("INIT_MODEL", "Initial weights (.mmlc or backbone)", optional=True)
        self.addParameter(advanced(init, "Start from an .mmlc model of the same architecture (fine-tuning) or "
                                         "a pretrained backbone checkpoint."))
        add_device_param(self)
        add_model_outputs(self)
        add_scenes_param(self, "input_1, input_2 (for two-modality networks)")

    def checkParameterValues(self, parameters, context):  # noqa: N802
        """Labels: exactly one of a class raster and polygons/points (with a field); a variant must
        belong to the chosen architecture (both reported before any training)."""
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
