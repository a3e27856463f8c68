"""A Python widget wrapper used in the standard dialog only; QGIS's own widget elsewhere."""
from __future__ import annotations

from typing import Any

from processing.gui.wrappers import DIALOG_STANDARD, WidgetWrapper, dialogTypes
from qgis.gui import QgsGui


def is_optional(param: Any) -> bool:
    """Whether a parameter is optional: ``Qgis.ProcessingParameterFlag.Optional`` (3.36+, QGIS 4),
    else the scoped ``QgsProcessingParameterDefinition.Flag.FlagOptional`` of 3.22-3.34."""
    from qgis.core import Qgis, QgsProcessingParameterDefinition

    flags = getattr(Qgis, "ProcessingParameterFlag", None)
    flag = flags.Optional if flags is not None and hasattr(flags, "Optional") else \
        QgsProcessingParameterDefinition.Flag.FlagOptional
    return bool(param.flags() & flag)


class StandardDialogWrapper(WidgetWrapper):
    """Base of mmlc's widget wrappers.

    Processing builds the wrapper named in a parameter's ``widget_wrapper`` metadata in every
    dialog. Ours are made for the standard algorithm dialog; in the Modeler (where a value may
    come from a model input or another algorithm's output) and in the batch dialog, ``__new__``
    hands back the widget QGIS itself would have made for the parameter's type instead.
    """

    def __new__(cls, param: Any, dialog: Any, row: int = 0, col: int = 0, **kwargs: Any):
        kind = dialog.__class__.__name__ if dialog is not None else ""
        registry = QgsGui.processingGuiRegistry()
        if kind == "ModelerParametersDialog":
            wrapper = registry.createModelerParameterWidget(dialog.model, dialog.childId, param, dialog.context)
            if wrapper is not None:
                wrapper.setDialog(dialog)
                return wrapper
        elif kind and dialogTypes.get(kind, DIALOG_STANDARD) != DIALOG_STANDARD:
            wrapper = registry.createParameterWidgetWrapper(param, dialogTypes[kind])
            if wrapper is not None:
                wrapper.setDialog(dialog)
                return wrapper
        return super().__new__(cls)

    def wrappedWidget(self) -> Any:  # noqa: N802
        """The widget, as QGIS's own wrappers name it (Processing's Python wrappers call it ``widget``)."""
        return self.widget
