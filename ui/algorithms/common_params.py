"""Parameter definitions shared by the algorithms (labels, budget, device, outputs) and the
helpers that make a dialog guide: *Advanced* flags, per-parameter help, dropdowns."""
from __future__ import annotations

from typing import Any, Optional, TypeVar

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorLayer,
)

from .base import DEVICE_HELP, MmlcAlgorithm

Integer = QgsProcessingParameterNumber.Type.Integer
Double = QgsProcessingParameterNumber.Type.Double
P = TypeVar("P", bound=QgsProcessingParameterDefinition)


def _advanced_flag() -> Any:
    """The *Advanced* parameter flag: ``Qgis.ProcessingParameterFlag.Advanced`` (3.36+, the only
    spelling QGIS 4 keeps), else the scoped ``QgsProcessingParameterDefinition.Flag.FlagAdvanced``
    of QGIS 3.22-3.34."""
    from qgis.core import Qgis

    flags = getattr(Qgis, "ProcessingParameterFlag", None)
    if flags is not None and hasattr(flags, "Advanced"):
        return flags.Advanced
    return QgsProcessingParameterDefinition.Flag.FlagAdvanced


ADVANCED = _advanced_flag()


def advanced(param: P, help_text: Optional[str] = None) -> P:
    """Mark ``param`` Advanced (folded under *Advanced parameters* in the dialog) with help."""
    param.setFlags(param.flags() | ADVANCED)
    return helped(param, help_text)


def helped(param: P, help_text: Optional[str]) -> P:
    """Give ``param`` its help text (tooltip in the dialog, ``qgis_process help``)."""
    if help_text:
        param.setHelp(help_text)
    return param


def is_advanced(param: QgsProcessingParameterDefinition) -> bool:
    return bool(param.flags() & ADVANCED)


def choice_param(name: str, description: str, choices: list[tuple[str, str]], default: Optional[str],
                 optional: bool = False, wrapper: Optional[str] = None,
                 **wrapper_args: Any) -> QgsProcessingParameterEnum:
    """An enum of static strings (the value passed around is the string, so plain strings from
    ``processing.run`` and old models keep working) shown with labels in the standard dialog."""
    param = QgsProcessingParameterEnum(name, description, [v for v, _ in choices], defaultValue=default,
                                       optional=optional)
    param.setUsesStaticStrings(True)
    param.setMetadata({"widget_wrapper": {"class": widget_class(wrapper or "choice.LabelledChoiceWrapper"),
                                          "labels": dict(choices), **wrapper_args}})
    return param


def widget_class(name: str) -> str:
    """Dotted path of a wrapper in ``ui/widgets`` (``"choice.LabelledChoiceWrapper"``) for the
    ``widget_wrapper`` metadata. A path, not the class: the widgets import Processing's Python
    GUI, which headless hosts (a bare PyQGIS script, some qgis_process setups) do not have; the
    dialog imports it when it builds the widget."""
    return f"{__package__.rsplit('.', 1)[0]}.widgets.{name}"


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
    """EPOCHS; BATCH_SIZE (0 = the network's recipe) and LEARNING_RATE (empty or 0 = the recipe),
    both Advanced. LEARNING_RATE is optional without a default, so the dialog shows it empty
    rather than "0.000000"; 0 from older scripts and models still means the recipe's rate."""
    alg.addParameter(helped(QgsProcessingParameterNumber("EPOCHS", "Epochs (0 = the network's default)", Integer, epochs,
                                                         minValue=0),
                            "Passes over the training tiles/pixels; the best epoch on the validation blocks is kept."))
    alg.addParameter(advanced(
        QgsProcessingParameterNumber("BATCH_SIZE", "Batch size (0 = the network's default)", Integer, 0, minValue=0),
        "Tiles (segmentation) or pixels (per-pixel networks) per optimisation step; 0 keeps the network's "
        "recipe. Lower it if memory runs out."))
    lr = QgsProcessingParameterNumber("LEARNING_RATE", "Learning rate (empty = default)", Double,
                                      None, optional=True, minValue=0.0)
    lr.setMetadata({"widget_wrapper": {"decimals": 6}})
    alg.addParameter(advanced(lr, "Peak learning rate of the schedule; empty (or 0) keeps the network's recipe "
                                  "(e.g. 6e-5 for ASANet, 1e-3 for PRSANet)."))


def learning_rate(alg: MmlcAlgorithm, parameters, context) -> Optional[float]:
    """LEARNING_RATE, None for empty or 0 (the network's recipe)."""
    if parameters.get("LEARNING_RATE") in (None, ""):
        return None
    value = alg.parameterAsDouble(parameters, "LEARNING_RATE", context)
    return value if value > 0 else None


def device_choices() -> list[tuple[str, str]]:
    from ..devices import device_choices as probe

    return probe()


def add_device_param(alg: MmlcAlgorithm) -> None:
    """DEVICE: a dropdown of auto, cpu and what PyTorch sees (each CUDA GPU by name); Advanced.
    The value stays the device string the core takes (``cuda:0``)."""
    choices = device_choices()
    gpus = [label for value, label in choices if value.startswith("cuda:")]
    seen = f" Seen here: {'; '.join(gpus)}." if gpus else " No GPU is seen by PyTorch here."
    alg.addParameter(advanced(choice_param("DEVICE", "Device", choices, "auto"), DEVICE_HELP + "." + seen))


def device_value(alg: MmlcAlgorithm, parameters, context) -> str:
    return alg.parameterAsEnumString(parameters, "DEVICE", context) or "auto"


def add_model_outputs(alg: MmlcAlgorithm) -> None:
    """OUTPUT_MODEL and OUTPUT_REPORT (the HTML training report, on by default in the dialog)."""
    alg.addParameter(QgsProcessingParameterFileDestination("OUTPUT_MODEL", "Model file",
                                                           "mmlc model files (*.mmlc)"))
    alg.addParameter(helped(QgsProcessingParameterFileDestination(
        "OUTPUT_REPORT", "Training report", "HTML files (*.html)", optional=True, createByDefault=True),
        "HTML report: loss and validation accuracy per epoch, per-class scores, confusion matrix, "
        "the model card. Uncheck 'Open output file' or skip the output to leave it out."))


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
