"""mmlc:classify: a land-cover map from one or two rasters with a model file or built-in model."""
from __future__ import annotations

from qgis.core import QgsProcessingException

from ...core.operations import CLASSIFY
from ...core.operations.shared import DEVICE_HELP
from ..styling import ClassStylePostProcessor
from .base import MmlcAlgorithm
from .common_params import device_value
from .spec_params import add_spec_params


class ClassifyAlgorithm(MmlcAlgorithm):
    NAME = CLASSIFY.id
    DISPLAY = CLASSIFY.name
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
        "<p><b>Advanced parameters</b>: tile size (0 = the model's), overlap in pixels (blended without "
        f"seams), batch size, <b>device</b>: {DEVICE_HELP}.</p>"
        "<p>The log ends with the <b>class areas</b> (pixels, hectares, share of the classified pixels; "
        "hectares measured on the ellipsoid for geographic CRSs); <b>Class areas table</b> also writes "
        "them as CSV.</p>"
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        add_spec_params(self, CLASSIFY)

    def checkParameterValues(self, parameters, context):  # noqa: N802
        """Before running: the model can be read and the inputs' band counts fit it (no torch needed)."""
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        from ...core.errors import MmlcError
        from ...core.modelfiles.builtin import resolve_model
        from ...core.modelfiles.cardinfo import read_card_light
        from ..widgets.model_info import band_check

        try:
            card = read_card_light(resolve_model(self.parameterAsString(parameters, "MODEL", context).strip()))
        except MmlcError as e:
            return False, f"Model: {e}"
        counts = []
        for key in ("INPUT_1", "INPUT_2"):
            layer = self.parameterAsRasterLayer(parameters, key, context) if parameters.get(key) else None
            counts.append(layer.bandCount() if layer is not None else None)
        problems = band_check(card, counts)
        if problems:
            return False, "; ".join(problems) + "."
        return True, ""

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
        areas_csv = self.parameterAsFileOutput(parameters, "OUTPUT_AREAS", context) or None
        result = self.call_core(
            api.classify, feedback,
            model=self.parameterAsString(parameters, "MODEL", context).strip(),
            inputs=inputs, output=output, confidence=confidence, vector=vector, extent=extent, mask=mask,
            tile_size=tile or None,
            overlap=self.parameterAsInt(parameters, "OVERLAP", context) if parameters.get("OVERLAP") is not None
            else None,
            batch_size=self.parameterAsInt(parameters, "BATCH_SIZE", context),
            device=device_value(self, parameters, context),
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
        table = self.report_areas(result, feedback)
        if areas_csv and table is not None:
            from ...core.engine.areas import write_area_csv
            from ...core.errors import MmlcError

            try:
                write_area_csv(areas_csv, table)
            except MmlcError as e:
                raise QgsProcessingException(str(e)) from e
            results["OUTPUT_AREAS"] = areas_csv
        return results

    @staticmethod
    def report_areas(result, feedback):
        """Log the class area table (pixels, hectares, share) and the run's speed; return it."""
        from ...core.engine.areas import area_lines, class_areas
        from ...core.errors import MmlcError
        from ...core.progress import format_duration

        feedback.pushInfo(f"classified {result.valid_pixels:,} of {result.pixels:,} pixels in "
                          f"{format_duration(result.seconds)} on {result.device} ({result.tiles} tiles/windows)")
        try:
            table = class_areas(result.output, result.classes, result.class_pixels)
        except MmlcError as e:
            feedback.reportError(f"class areas not computed: {e}", False)
            return None
        feedback.pushInfo("Class areas:")
        for line in area_lines(table):  # no-break spaces: the dialog's HTML log keeps the columns
            feedback.pushCommandInfo(line.replace(" ", "\u00a0"))
        return table
