"""The MODEL chooser of *Classify*: built-in models in a dropdown, a file browser, and a panel
that says what the chosen model needs (inputs, bands in order, classes, provenance).

The parameter stays a QgsProcessingParameterFile, so ``processing.run``, ``qgis_process`` and
the Modeler keep passing a plain string (a built-in name or a path); this widget only helps in
the standard dialog. It also clears Input 1 (QGIS preselects the top layer of the project for
a required layer parameter, often the wrong one) and re-checks the inputs' band counts against
the model whenever the model or an input changes.
"""
from __future__ import annotations

import os
from typing import Any, Optional

from qgis.core import QgsMapLayer, QgsProject, QgsRasterLayer, QgsSettings
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .base import StandardDialogWrapper
from .model_info import INPUT_PARAMS, band_check, card_html

INPUT_IDS = ("INPUT_1", "INPUT_2")
_SETTINGS_KEY = "mmlc/last_model_folder"


def builtin_models() -> list[str]:
    from ...core.modelfiles.builtin import list_builtin

    return list_builtin()


def load_card(value: str) -> tuple[Optional[Any], str]:
    """(card, '') for a built-in name or model path, or (None, why not) without raising."""
    from ...core.errors import MmlcError
    from ...core.modelfiles.builtin import resolve_model
    from ...core.modelfiles.cardinfo import read_card_light

    text = (value or "").strip()
    if not text:
        return None, "choose a built-in model or a .mmlc model file"
    try:
        return read_card_light(resolve_model(text)), ""
    except MmlcError as e:
        return None, str(e)


def layer_band_count(value: Any) -> Optional[int]:
    """Band count of a raster layer parameter value (layer, layer id or path), None if unset."""
    if value is None or value == "":
        return None
    layer = value if isinstance(value, QgsMapLayer) else QgsProject.instance().mapLayer(str(value))
    if layer is None and isinstance(value, str) and os.path.exists(value.split("|")[0]):
        layer = QgsRasterLayer(value, "probe")
    if isinstance(layer, QgsRasterLayer) and layer.isValid():
        return layer.bandCount()
    return None


def clear_layer_choice(wrapper: Any) -> None:
    """Leave a required layer parameter's dropdown empty instead of on the project's top layer.

    QGIS's layer dropdown offers no empty entry for a required parameter and selects the first
    layer; the entry is allowed here and chosen, so the dialog reports the parameter as missing
    until the analyst picks a layer (a value set later, e.g. from the history, still applies).
    """
    from qgis.gui import QgsMapLayerComboBox
    from qgis.PyQt import sip

    widget = wrapper.wrappedWidget() if hasattr(wrapper, "wrappedWidget") else None
    for child in widget.findChildren(QComboBox) if widget is not None else []:
        if child.metaObject().className() == "QgsMapLayerComboBox":  # PyQt types it as a QComboBox
            combo = sip.cast(child, QgsMapLayerComboBox)
            combo.setAllowEmptyLayer(True)
            combo.setLayer(None)


class ModelChooserWidget(QWidget):
    """Editable dropdown of built-in models + browse button + info panel."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.combo = QComboBox()
        self.combo.setEditable(True)
        self.combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.combo.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.combo.setMinimumContentsLength(16)
        for name in builtin_models():
            self.combo.addItem(f"{name} (built-in)", name)
        self.combo.lineEdit().setPlaceholderText("built-in model name or path of a .mmlc file")
        self.browse = QToolButton()
        self.browse.setText("…")
        self.browse.setToolTip("Choose a model file (.mmlc) from Train or Distill")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.combo, 1)
        row.addWidget(self.browse)
        self.info = QLabel()
        self.info.setObjectName("mmlcModelInfo")
        self.info.setWordWrap(True)
        self.info.setTextFormat(Qt.TextFormat.RichText)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.info.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
        self.info.setMinimumWidth(0)
        self.info.setFrameShape(QFrame.Shape.StyledPanel)
        self.info.setContentsMargins(6, 4, 6, 4)
        self.status = QLabel()
        self.status.setObjectName("mmlcBandCheck")
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(self.info)
        self.browse.clicked.connect(self.choose_file)

    def value(self) -> str:
        text = self.combo.currentText().strip()
        i = self.combo.findText(text)
        if i >= 0 and self.combo.itemData(i):
            return str(self.combo.itemData(i))
        return text

    def set_value(self, value: Any) -> None:
        text = "" if value is None else str(value)
        i = self.combo.findData(text)
        if i < 0 and text:
            self.combo.addItem(text, text)
            i = self.combo.count() - 1
        if i >= 0:
            self.combo.setCurrentIndex(i)
        else:
            self.combo.setEditText(text)

    def choose_file(self) -> None:
        settings = QgsSettings()
        start = str(settings.value(_SETTINGS_KEY, ""))
        path, _ = QFileDialog.getOpenFileName(self, "Choose a model file", start, "mmlc model files (*.mmlc)")
        if path:
            settings.setValue(_SETTINGS_KEY, os.path.dirname(path))
            self.set_value(path)


class ModelChooserWrapper(StandardDialogWrapper):
    """Processing widget wrapper for MODEL (metadata ``{'widget_wrapper': {'class': ...}}``)."""

    def createWidget(self, **kwargs: Any) -> ModelChooserWidget:  # noqa: N802
        widget = ModelChooserWidget()
        self.inputs: dict[str, Any] = {}
        widget.combo.currentTextChanged.connect(lambda _t: self.changed())
        return widget

    def setValue(self, value: Any) -> None:  # noqa: N802
        self.widget.set_value(value)
        self.changed()

    def value(self) -> str:
        return self.widget.value()

    def postInitialize(self, wrappers: list) -> None:  # noqa: N802
        for w in wrappers:
            name = w.parameterDefinition().name()
            if name in INPUT_IDS:
                self.inputs[name] = w
                if name == "INPUT_1":  # no preselected layer: the analyst picks the right one
                    clear_layer_choice(w)
                w.widgetValueHasChanged.connect(lambda _w: self.check_bands())
        self.changed()

    def processing_context(self) -> Any:
        from qgis.core import QgsProcessingContext

        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        return context

    def changed(self) -> None:
        card, why = load_card(self.widget.value())
        self.card = card
        self.widget.info.setText(card_html(card, self.source_text()) if card is not None
                                 else f"<span style='color:#a00'>{why}</span>")
        self.check_bands()
        self.widgetValueHasChanged.emit(self)

    def source_text(self) -> str:
        value = self.widget.value()
        return "built-in model" if value in builtin_models() else os.path.basename(value)

    def check_bands(self) -> None:
        card = getattr(self, "card", None)
        if card is None or not getattr(self, "inputs", None):
            self.widget.status.setText("")
            return
        counts = [layer_band_count(self.inputs[k].parameterValue()) if k in self.inputs else None
                  for k in INPUT_IDS]
        if all(c is None for c in counts):
            names = ", ".join(f"{INPUT_PARAMS[i]}: {m.name} ({m.bands} bands)" for i, m in enumerate(card.modalities))
            self.widget.status.setText(f"Choose {names}.")
            self.widget.status.setStyleSheet("color:#555")
            return
        problems = band_check(card, counts)
        self.widget.status.setText("; ".join(problems) if problems else "The inputs' band counts fit this model.")
        self.widget.status.setStyleSheet("color:#a00" if problems else "color:#2a7a2a")
        self.warn_in_dialog("; ".join(problems) if any(c is not None for c in counts) else "")

    def warn_in_dialog(self, text: str) -> None:
        """Show (or take back) the band-count problem in the dialog's message bar, which stays in
        view whatever the parameters are scrolled to."""
        bar = getattr(self.dialog, "messageBar", None)
        if bar is None:
            return
        bar = bar()
        old = getattr(self, "bar_item", None)
        if old is not None:
            try:
                bar.popWidget(old)
            except RuntimeError:  # already closed by the user
                pass
            self.bar_item = None
        if text:
            from qgis.core import Qgis

            self.bar_item = bar.createMessage("Inputs vs model", text)
            self.bar_item.setLevel(Qgis.MessageLevel.Warning)
            bar.pushItem(self.bar_item)
