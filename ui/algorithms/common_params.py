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
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterNumber,
)

from .base import DEVICE_HELP, MmlcAlgorithm

Integer = QgsProcessingParameterNumber.Integer
Double = QgsProcessingParameterNumber.Double
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
    """A labels layer (raster or vector) and its class field (LABEL_FIELD, vectors only)."""
    alg.addParameter(QgsProcessingParameterMapLayer(
        layer_id, f"{what} (class raster, or polygons/points with a class field)",
        types=[QgsProcessing.TypeRaster, QgsProcessing.TypeVectorAnyGeometry]))
    alg.addParameter(QgsProcessingParameterField(
        "LABEL_FIELD", f"Class field ({what.lower()} as vector only)", parentLayerParameterName=layer_id,
        optional=True))


def add_budget_params(alg: MmlcAlgorithm, epochs: int = 20) -> None:
    """EPOCHS; BATCH_SIZE (0 = the network's recipe) and LEARNING_RATE (empty or 0 = the recipe),
    both Advanced. LEARNING_RATE is optional without a default, so the dialog shows it empty
    rather than "0.000000"; 0 from older scripts and models still means the recipe's rate."""
    alg.addParameter(helped(QgsProcessingParameterNumber("EPOCHS", "Epochs", Integer, epochs, minValue=1),
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
