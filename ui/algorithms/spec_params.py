"""Processing parameters generated from an operation spec (core/operations).

One builder maps each parameter kind of the spec onto its ``QgsProcessingParameter*`` class,
sets the range, default, help, *Advanced* flag and widget hints, and passes the label and help
through the algorithm's ``tr`` so they can be translated. Custom widgets keep their wrappers:
the model chooser (``model_chooser``), the device dropdown (``device``: the devices PyTorch
sees, probed when the algorithm is built) and the variant dropdown following ARCHITECTURE
(``variant``).
"""
from __future__ import annotations

from typing import Callable

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProcessingParameterVectorLayer,
)

from ...core.operations.spec import Operation, Param
from .common_params import ADVANCED, choice_param, device_choices, widget_class

Translate = Callable[[str], str]

_GEOMETRY = {"": QgsProcessing.SourceType.TypeVectorAnyGeometry,
             "any": QgsProcessing.SourceType.TypeVectorAnyGeometry,
             "polygon": QgsProcessing.SourceType.TypeVectorPolygon}


def add_spec_params(alg, operation: Operation) -> None:
    """Add the Processing parameters of ``operation`` (those not marked command-line only) to
    ``alg``, in the spec's order, and its numeric outputs."""
    for p in operation.processing_params():
        alg.addParameter(build_parameter(p, alg.tr))
    for key, label in operation.numbers:
        alg.addOutput(QgsProcessingOutputNumber(key, alg.tr(label)))


def build_parameter(p: Param, tr: Translate = str) -> QgsProcessingParameterDefinition:
    """The Processing parameter of spec parameter ``p`` (label and help through ``tr``)."""
    param = _BUILDERS[p.kind](p, tr(p.label))
    help_text = _device_help(p.help) if p.widget == "device" else p.help
    if help_text:
        param.setHelp(tr(help_text))
    if p.advanced:
        param.setFlags(param.flags() | ADVANCED)
    return param


def _optional(p: Param) -> dict:
    return {"optional": True} if p.optional else {}


def _range(p: Param) -> dict:
    out = {}
    if p.minimum is not None:
        out["minValue"] = p.minimum
    if p.maximum is not None:
        out["maxValue"] = p.maximum
    return out


def _number(p: Param, label: str) -> QgsProcessingParameterNumber:
    kind = (QgsProcessingParameterNumber.Type.Integer if p.kind == "int"
            else QgsProcessingParameterNumber.Type.Double)
    param = QgsProcessingParameterNumber(p.id, label, kind, p.default, **_optional(p), **_range(p))
    if p.decimals is not None:
        param.setMetadata({"widget_wrapper": {"decimals": p.decimals}})
    return param


def _file(p: Param, label: str) -> QgsProcessingParameterFile:
    param = QgsProcessingParameterFile(p.id, label, defaultValue=p.default, **_optional(p))
    if p.file_filter:
        param.setFileFilter(p.file_filter)
    if p.widget == "model_chooser":
        param.setMetadata({"widget_wrapper": {"class": widget_class("model_chooser.ModelChooserWrapper")}})
    return param


def _enum(p: Param, label: str) -> QgsProcessingParameterEnum:
    if p.widget == "device":
        return choice_param(p.id, label, device_choices(), p.default, optional=p.optional)
    if p.widget == "variant":
        return _variant(p, label)
    param = QgsProcessingParameterEnum(p.id, label, list(p.choices), defaultValue=p.default, **_optional(p))
    param.setUsesStaticStrings(True)
    return param


def _variant(p: Param, label: str) -> QgsProcessingParameterEnum:
    """VARIANT: every variant, labelled with its architecture; the dropdown offers only those of
    the chosen ARCHITECTURE (``choice.VariantChoiceWrapper``)."""
    from ...core.operations.train import ARCHITECTURES, VARIANTS

    labels = {"": "default of the architecture", **{v: f"{v} ({a})" for a in ARCHITECTURES for v in VARIANTS[a]}}
    per_architecture = {a: list(VARIANTS[a]) for a in ARCHITECTURES}
    param = choice_param(p.id, label, [(v, labels[v]) for v in p.choices], p.default, optional=p.optional,
                         wrapper="choice.VariantChoiceWrapper", per_architecture=per_architecture)
    param.setMetadata({"widget_wrapper": {**param.metadata()["widget_wrapper"], "labels": labels}})  # "" too
    return param


def _device_help(text: str) -> str:
    """DEVICE's help with the GPUs PyTorch sees here (or that it sees none)."""
    gpus = [label for value, label in device_choices() if value.startswith("cuda:")]
    return text + (f" Seen here: {'; '.join(gpus)}." if gpus else " No GPU is seen by PyTorch here.")


_BUILDERS: dict[str, Callable[[Param, str], QgsProcessingParameterDefinition]] = {
    "raster": lambda p, label: QgsProcessingParameterRasterLayer(p.id, label, **_optional(p)),
    "vector": lambda p, label: QgsProcessingParameterVectorLayer(p.id, label, [_GEOMETRY[p.geometry]],
                                                                 **_optional(p)),
    "features": lambda p, label: QgsProcessingParameterFeatureSource(p.id, label, [_GEOMETRY[p.geometry]],
                                                                     **_optional(p)),
    "field": lambda p, label: QgsProcessingParameterField(p.id, label, parentLayerParameterName=p.parent,
                                                          **_optional(p)),
    "file": _file,
    "extent": lambda p, label: QgsProcessingParameterExtent(p.id, label, **_optional(p)),
    "int": _number,
    "float": _number,
    "enum": _enum,
    "bool": lambda p, label: QgsProcessingParameterBoolean(p.id, label, bool(p.default), **_optional(p)),
    "string": lambda p, label: QgsProcessingParameterString(p.id, label, p.default, **_optional(p)),
    "output_raster": lambda p, label: QgsProcessingParameterRasterDestination(
        p.id, label, **_optional(p), **_created(p)),
    "output_vector": lambda p, label: QgsProcessingParameterVectorDestination(
        p.id, label, _GEOMETRY[p.geometry], **_optional(p), **_created(p)),
    "output_file": lambda p, label: QgsProcessingParameterFileDestination(
        p.id, label, p.file_filter, **_optional(p), **_created(p)),
}


def _created(p: Param) -> dict:
    return {} if p.create_by_default is None else {"createByDefault": p.create_by_default}
