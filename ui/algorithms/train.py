"""mmlc:train: train one of the four networks on your rasters and labels, into one model file."""
from __future__ import annotations

from qgis.core import (
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from .base import MmlcAlgorithm
from .common_params import (
    Double,
    Integer,
    add_budget_params,
    add_device_param,
    add_label_params,
    add_model_outputs,
    check_label_params,
    label_source,
    model_output_path,
)

ARCHITECTURES = ["asanet", "das2f", "prsanet", "hfdnet"]


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
        self.addParameter(QgsProcessingParameterString("VARIANT", "Variant (empty = default)", optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT_1", "Input 1 (optical / MS / first modality)"))
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT_2", "Input 2 (SAR / PAN / second modality)",
                                                            optional=True))
        add_label_params(self)
        classes = QgsProcessingParameterFile("CLASSES", "Class table (value,name,#rrggbb)", optional=True)
        classes.setFileFilter("Class tables (*.csv *.txt)")
        self.addParameter(classes)
        add_budget_params(self)
        self.addParameter(QgsProcessingParameterNumber("TILE_SIZE", "Tile size (0 = the network's default)",
                                                       Integer, 0, minValue=0))
        self.addParameter(QgsProcessingParameterNumber("VALIDATION_FRACTION", "Validation fraction",
                                                       Double, 0.2, minValue=0.0, maxValue=0.9))
        init = QgsProcessingParameterFile("INIT_MODEL", "Initial weights (model file or pretrained backbone)",
                                          optional=True)
        self.addParameter(init)
        add_device_param(self)
        add_model_outputs(self)

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, msg, checked = check_label_params(parameters, context)
        if not ok:
            return ok, msg
        return super().checkParameterValues(checked, context)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ...core import api

        inputs = [self.raster_path(self.parameterAsRasterLayer(parameters, "INPUT_1", context), "Input 1")]
        second = self.raster_path(self.parameterAsRasterLayer(parameters, "INPUT_2", context), "Input 2")
        if second:
            inputs.append(second)
        labels, field = label_source(self, parameters, context)
        output = model_output_path(self, parameters, context)
        report = self.parameterAsFileOutput(parameters, "OUTPUT_REPORT", context) or None

        def num(name: str):
            v = self.parameterAsDouble(parameters, name, context)
            return v if v > 0 else None

        result = self.call_core(
            api.train, feedback,
            architecture=self.parameterAsEnumString(parameters, "ARCHITECTURE", context),
            variant=self.parameterAsString(parameters, "VARIANT", context) or None,
            inputs=inputs, labels=labels, label_field=field,
            classes=self.parameterAsFile(parameters, "CLASSES", context) or None,
            epochs=self.parameterAsInt(parameters, "EPOCHS", context),
            batch_size=int(num("BATCH_SIZE") or 0) or None,
            learning_rate=num("LEARNING_RATE"),
            tile_size=int(num("TILE_SIZE") or 0) or None,
            validation_fraction=self.parameterAsDouble(parameters, "VALIDATION_FRACTION", context),
            init_model=self.parameterAsFile(parameters, "INIT_MODEL", context) or None,
            device=self.parameterAsString(parameters, "DEVICE", context) or "auto",
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
