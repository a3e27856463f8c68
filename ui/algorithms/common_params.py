"""Parameter definitions shared by train and distill (labels, budget, device, outputs)."""
from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorLayer,
)

from .base import DEVICE_HELP, MmlcAlgorithm

Integer = QgsProcessingParameterNumber.Type.Integer
Double = QgsProcessingParameterNumber.Type.Double


def add_label_params(alg: MmlcAlgorithm, layer_id: str = "LABELS", what: str = "Labels") -> None:
    """Labels as a class raster (``layer_id``) or as a vector layer (``<layer_id>_VECTOR``) with its
    class field (LABEL_FIELD, parented on the vector parameter only).

    Two parameters rather than one "raster or vector" map layer: a field widget parented on a
    parameter that accepts rasters crashes QGIS (3.22) as soon as a raster is chosen. A vector given
    in ``layer_id`` by an older script still works (see :func:`check_label_params`).
    """
    raster = QgsProcessingParameterRasterLayer(layer_id, f"{what} (class raster)", optional=True)
    vector = QgsProcessingParameterVectorLayer(f"{layer_id}_VECTOR", f"{what} (or polygons/points)",
                                               [QgsProcessing.SourceType.TypeVectorAnyGeometry], optional=True)
    field = QgsProcessingParameterField("LABEL_FIELD", "Class field of the polygons/points",
                                        parentLayerParameterName=f"{layer_id}_VECTOR", optional=True)
    if hasattr(raster, "setHelp"):  # tooltips (QGIS 3.16+); the labels stay short for the dialog's width
        raster.setHelp("One class value per pixel; 0 or nodata = unlabelled. Leave empty for polygons/points.")
        vector.setHelp("Polygons or points with a class field, any CRS (instead of a class raster).")
        field.setHelp("Integer class values, or text names (numbered 1..K in alphabetical order).")
    for p in (raster, vector, field):
        alg.addParameter(p)


def _given(value) -> bool:
    return value is not None and value != "" and not (isinstance(value, (list, tuple)) and not value)


def vector_in_raster_slot(parameters: dict, context, layer_id: str) -> bool:
    """True if an older caller passed a vector layer (or file) in the raster ``layer_id``."""
    from qgis.core import QgsProcessingUtils, QgsVectorLayer

    value = parameters.get(layer_id)
    if isinstance(value, QgsVectorLayer):
        return True
    if not isinstance(value, str) or not value:
        return False
    layer = QgsProcessingUtils.mapLayerFromString(value, context, True)
    return isinstance(layer, QgsVectorLayer)


def check_label_params(parameters: dict, context, layer_id: str = "LABELS",
                       what: str = "Labels") -> tuple[bool, str, dict]:
    """Checks of the label parameters for checkParameterValues: exactly one of the raster and the
    vector, and a class field for a vector. A vector in the raster slot (the former single
    "raster or vector" LABELS parameter) is accepted as if given in ``<layer_id>_VECTOR``: the
    returned parameters (for the standard checks) have it moved there."""
    params = dict(parameters)
    vector_id = f"{layer_id}_VECTOR"
    if vector_in_raster_slot(params, context, layer_id) and not _given(params.get(vector_id)):
        params[vector_id] = params.pop(layer_id)
    has_raster, has_vector = _given(params.get(layer_id)), _given(params.get(vector_id))
    if has_raster and has_vector:
        return False, (f"{what}: give either a class raster or polygons/points, not both "
                       f"({layer_id} and {vector_id})"), params
    if not has_raster and not has_vector:
        return False, f"{what}: choose a class raster, or polygons/points with a class field", params
    if has_vector and not _given(params.get("LABEL_FIELD")):
        return (False, f"{what}: choose the class field of the polygons/points in 'Class field' (LABEL_FIELD)",
                params)
    return True, "", params


def add_budget_params(alg: MmlcAlgorithm, epochs: int = 20) -> None:
    alg.addParameter(QgsProcessingParameterNumber("EPOCHS", "Epochs (0 = the network's default)", Integer, epochs,
                                                  minValue=0))
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
    """(path, field) of the labels: a GDAL class raster (``layer_id``) or an OGR vector
    (``<layer_id>_VECTOR``, or a vector in ``layer_id`` from an older caller) with its class field."""
    from qgis.core import QgsProcessingException, QgsRasterLayer, QgsVectorLayer

    vector_id = f"{layer_id}_VECTOR"
    layer = None
    if _given(parameters.get(vector_id)):
        layer = alg.parameterAsVectorLayer(parameters, vector_id, context)
    elif _given(parameters.get(layer_id)):
        layer = alg.parameterAsLayer(parameters, layer_id, context)
    if layer is None:
        raise QgsProcessingException(f"{what}: choose a class raster, or polygons/points with a class field")
    field = alg.parameterAsString(parameters, "LABEL_FIELD", context) or None
    if isinstance(layer, QgsVectorLayer):
        if not field:
            raise QgsProcessingException(
                f"{what}: '{layer.name()}' is a vector layer: choose its class field in 'Class field' "
                f"(fields: {', '.join(layer.fields().names())})")
        if field not in layer.fields().names():
            raise QgsProcessingException(
                f"{what}: '{layer.name()}' has no field '{field}' (fields: {', '.join(layer.fields().names())})")
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
