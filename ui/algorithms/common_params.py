"""Parameter definitions shared by train and distill (labels, budget, device, outputs)."""
from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from .base import DEVICE_HELP, MmlcAlgorithm

Integer = QgsProcessingParameterNumber.Type.Integer
Double = QgsProcessingParameterNumber.Type.Double


def add_label_params(alg: MmlcAlgorithm, layer_id: str = "LABELS", what: str = "Labels") -> None:
    """A labels layer (raster or vector) and its class field (LABEL_FIELD, vectors only)."""
    alg.addParameter(QgsProcessingParameterMapLayer(
        layer_id, f"{what} (class raster, or polygons/points with a class field)",
        types=[QgsProcessing.SourceType.TypeRaster, QgsProcessing.SourceType.TypeVectorAnyGeometry]))
    alg.addParameter(QgsProcessingParameterField(
        "LABEL_FIELD", f"Class field ({what.lower()} as vector only)", parentLayerParameterName=layer_id,
        optional=True))


def add_budget_params(alg: MmlcAlgorithm, epochs: int = 20) -> None:
    alg.addParameter(QgsProcessingParameterNumber("EPOCHS", "Epochs", Integer, epochs, minValue=1))
    alg.addParameter(QgsProcessingParameterNumber("BATCH_SIZE", "Batch size (0 = the network's default)",
                                                  Integer, 0, minValue=0))
    alg.addParameter(QgsProcessingParameterNumber("LEARNING_RATE", "Learning rate (0 = the network's default)",
                                                  Double, 0.0, minValue=0.0))


def add_device_param(alg: MmlcAlgorithm) -> None:
    p = QgsProcessingParameterString("DEVICE", "Device", defaultValue="auto")
    p.setHelp(DEVICE_HELP) if hasattr(p, "setHelp") else None
    alg.addParameter(p)


def add_model_outputs(alg: MmlcAlgorithm) -> None:
    alg.addParameter(QgsProcessingParameterFileDestination("OUTPUT_MODEL", "Model file",
                                                           "mmlc model files (*.mmlc)"))
    alg.addParameter(QgsProcessingParameterFileDestination("OUTPUT_REPORT", "Training report",
                                                           "HTML files (*.html)", optional=True,
                                                           createByDefault=False))


def label_source(alg: MmlcAlgorithm, parameters, context, layer_id: str = "LABELS",
                 what: str = "Labels") -> tuple[str, str | None]:
    """(path, field) of a labels layer: a GDAL raster or an OGR vector with a class field."""
    from qgis.core import QgsProcessingException, QgsRasterLayer, QgsVectorLayer

    layer = alg.parameterAsLayer(parameters, layer_id, context)
    if layer is None:
        raise QgsProcessingException(f"{what}: choose a class raster or a vector layer with a class field")
    field = alg.parameterAsString(parameters, "LABEL_FIELD", context) or None
    if isinstance(layer, QgsVectorLayer):
        if not field:
            raise QgsProcessingException(
                f"{what}: '{layer.name()}' is a vector layer: choose its class field in 'Class field' "
                f"(fields: {', '.join(layer.fields().names())})")
        if layer.providerType() != "ogr":
            raise QgsProcessingException(f"{what}: save '{layer.name()}' to a GeoPackage first (provider "
                                         f"{layer.providerType()} is not read by mmlc)")
        return layer.source().split("|")[0], field
    if isinstance(layer, QgsRasterLayer):
        return alg.raster_path(layer, what), None
    raise QgsProcessingException(f"{what}: unsupported layer type")


def model_output_path(alg: MmlcAlgorithm, parameters, context) -> str:
    path = alg.parameterAsFileOutput(parameters, "OUTPUT_MODEL", context)
    if not path.lower().endswith(".mmlc"):
        path += ".mmlc"
    return path
