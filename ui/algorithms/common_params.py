"""Helpers the algorithms share: the *Advanced* flag, labelled dropdowns, the label and device
values. The parameters themselves are generated from the operation specs (spec_params.py)."""
from __future__ import annotations

from typing import Any, Optional, TypeVar

from qgis.core import (
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
)

from .base import MmlcAlgorithm

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


def _given(value) -> bool:
    """Whether a parameter value was given: not None, "", an empty list, nor the NULL QVariant a
    dialog passes for an empty optional widget (``qgis.core.NULL``)."""
    if value is None or value == "" or (isinstance(value, (list, tuple)) and not value):
        return False
    is_null = getattr(value, "isNull", None)
    return not (callable(is_null) and is_null())


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


def learning_rate(alg: MmlcAlgorithm, parameters, context) -> Optional[float]:
    """LEARNING_RATE, None for empty or 0 (the network's recipe)."""
    if not _given(parameters.get("LEARNING_RATE")):
        return None
    value = alg.parameterAsDouble(parameters, "LEARNING_RATE", context)
    return value if value > 0 else None


def optional_int(alg: MmlcAlgorithm, parameters, name: str, context) -> Optional[int]:
    """An optional integer parameter: None when it is left empty (the dialog's "Not set", a NULL
    from the Modeler, or absent from ``processing.run``'s dictionary; :func:`_given`), else its
    value (0 included: for REFIT_EPOCHS, "off")."""
    if not _given(parameters.get(name)):
        return None
    return alg.parameterAsInt(parameters, name, context)


def device_choices() -> list[tuple[str, str]]:
    from ..devices import device_choices as probe

    return probe()


def device_value(alg: MmlcAlgorithm, parameters, context) -> str:
    return alg.parameterAsEnumString(parameters, "DEVICE", context) or "auto"


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
