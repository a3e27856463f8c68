"""mmlc:classify: a land-cover map from one or two rasters with a model file or built-in model."""
from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from ..styling import ClassStylePostProcessor
from .base import DEVICE_HELP, MmlcAlgorithm


class ClassifyAlgorithm(MmlcAlgorithm):
    NAME = "classify"
    DISPLAY = "Classify land cover"
    HELP = (
        "<p>Classifies every pixel of INPUT_1's grid with a trained mmlc model and writes a styled "
        "class raster (with a .qml sidecar), optionally a confidence raster and polygons.</p>"
        "<p><b>Model</b>: an .mmlc model file (from <i>Train</i> or <i>Distill</i>) or the name of a "
        "built-in model: asanet-demo, das2f-demo, prsanet-demo, hfdnet-demo.</p>"
        "<p><b>Input 1</b>: ASANet: optical (RGB, RGBN or Sentinel-2 bands in the model's order); "
        "DAS2F: multispectral (MS); PRSANet: first modality; HFD-Net: the SAR image (its only input).</p>"
        "<p><b>Input 2</b>: ASANet: SAR (dB); DAS2F: panchromatic at 4x the MS resolution; PRSANet: "
        "second modality; HFD-Net: leave empty. Other inputs are read on Input 1's grid on the fly "
        "(any CRS/resolution); the PAN of DAS2F is read on its own 4x finer grid.</p>"
        "<p><b>Mask layer</b>: polygons (any CRS); only pixels whose centre lies inside are classified, "
        "the rest is nodata, and the output is cut to the polygons' extent (like <i>Clip raster by mask "
        "layer</i>). A raster mask (non-zero = inside) works from <code>python -m mmlc</code>.</p>"
        "<p><b>Tile size</b> 0 = the model's default; <b>overlap</b> in pixels, blended without seams. "
        f"<b>Device</b>: {DEVICE_HELP}.</p>"
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        model = QgsProcessingParameterFile("MODEL", "Model file or built-in model name", defaultValue="asanet-demo")
        model.setFileFilter("mmlc model files (*.mmlc);;Built-in model name or any file (*)")
        self.addParameter(model)
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT_1", "Input 1 (optical / MS / SAR-only models' SAR)"))
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT_2", "Input 2 (SAR / PAN / second modality)",
                                                            optional=True))
        self.addParameter(QgsProcessingParameterExtent("EXTENT", "Extent (default: all of input 1)", optional=True))
        self.addParameter(QgsProcessingParameterFeatureSource(
            "MASK", "Mask layer: classify only inside these polygons (output cut to their extent)",
            [QgsProcessing.SourceType.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterNumber("TILE_SIZE", "Tile size in pixels (0 = model default)",
                                                       QgsProcessingParameterNumber.Type.Integer, 0, minValue=0))
        self.addParameter(QgsProcessingParameterNumber("OVERLAP", "Tile overlap in pixels (empty = model default)",
                                                       QgsProcessingParameterNumber.Type.Integer, None, optional=True,
                                                       minValue=0))
        self.addParameter(QgsProcessingParameterNumber("BATCH_SIZE", "Batch size (0 = the default, 4)",
                                                       QgsProcessingParameterNumber.Type.Integer, 4, minValue=0))
        self.addParameter(QgsProcessingParameterString("DEVICE", "Device", defaultValue="auto"))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Land cover"))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT_CONFIDENCE", "Confidence",
                                                                  optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterVectorDestination("OUTPUT_VECTOR", "Land cover polygons",
                                                                  QgsProcessing.SourceType.TypeVectorPolygon,
                                                                  optional=True, createByDefault=False))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ...core import api

        layer1 = self.parameterAsRasterLayer(parameters, "INPUT_1", context)
        inputs = [self.raster_path(layer1, "Input 1")]
        second = self.raster_path(self.parameterAsRasterLayer(parameters, "INPUT_2", context), "Input 2")
        if second:
            inputs.append(second)
        extent = None
        if parameters.get("EXTENT"):
            rect = self.parameterAsExtent(parameters, "EXTENT", context, layer1.crs())
            if not rect.isNull():
                extent = (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())
        mask = None
        if parameters.get("MASK"):  # a file path GDAL can read (memory layers and selections exported)
            mask = self.parameterAsCompatibleSourceLayerPath(parameters, "MASK", context, ["gpkg", "shp", "geojson"],
                                                             "gpkg", feedback) or None
        tile = self.parameterAsInt(parameters, "TILE_SIZE", context)
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        confidence = self.parameterAsOutputLayer(parameters, "OUTPUT_CONFIDENCE", context) or None
        vector = self.parameterAsOutputLayer(parameters, "OUTPUT_VECTOR", context) or None
        result = self.call_core(
            api.classify, feedback,
            model=self.parameterAsString(parameters, "MODEL", context).strip(),
            inputs=inputs, output=output, confidence=confidence, vector=vector, extent=extent, mask=mask,
            tile_size=tile or None,
            overlap=self.parameterAsInt(parameters, "OVERLAP", context) if parameters.get("OVERLAP") is not None
            else None,
            batch_size=self.parameterAsInt(parameters, "BATCH_SIZE", context),
            device=self.parameterAsString(parameters, "DEVICE", context) or "auto",
        )
        classes = list(result.classes)
        self.keep_post_processor(context, output, ClassStylePostProcessor("classes", classes))
        results = {"OUTPUT": output}
        if confidence:
            self.keep_post_processor(context, confidence, ClassStylePostProcessor("confidence", classes))
            results["OUTPUT_CONFIDENCE"] = confidence
        if vector:
            self.keep_post_processor(context, vector, ClassStylePostProcessor("polygons", classes))
            results["OUTPUT_VECTOR"] = vector
        return results
