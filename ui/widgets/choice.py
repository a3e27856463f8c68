"""Dropdowns whose entries show a label but give a plain string: DEVICE and VARIANT."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from qgis.PyQt.QtWidgets import QComboBox, QSizePolicy

from .base import StandardDialogWrapper, is_optional


class LabelledChoiceWrapper(StandardDialogWrapper):
    """A combo box over an enum parameter with static strings: the entry shows
    ``labels[value]`` (e.g. ``cuda:0: NVIDIA H200``) and the parameter gets ``value``.

    Metadata: ``{'widget_wrapper': {'class': LabelledChoiceWrapper, 'labels': {value: label}}}``.
    """

    def createWidget(self, labels: Optional[dict] = None, **kwargs: Any) -> QComboBox:  # noqa: N802
        self.labels = dict(labels or {})
        combo = QComboBox()
        combo.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(12)
        self.fill(combo, self.choices())
        combo.currentIndexChanged.connect(lambda _i: self.widgetValueHasChanged.emit(self))
        return combo

    def choices(self) -> list[str]:
        return list(self.parameterDefinition().options())

    def fill(self, combo: QComboBox, values: Sequence[str]) -> None:
        current = combo.currentData() if combo.count() else None
        combo.blockSignals(True)
        combo.clear()
        if is_optional(self.parameterDefinition()):
            combo.addItem(self.labels.get("", "default"), None)
        for v in values:
            combo.addItem(self.labels.get(v, v), v)
        i = combo.findData(current)
        combo.setCurrentIndex(i if i >= 0 else 0)
        combo.blockSignals(False)

    def setValue(self, value: Any) -> None:  # noqa: N802
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if isinstance(value, int) and not isinstance(value, bool):  # an index (non-static callers)
            options = self.parameterDefinition().options()
            value = options[value] if 0 <= value < len(options) else None
        i = self.widget.findData(value)
        if i >= 0:
            self.widget.setCurrentIndex(i)

    def value(self) -> Any:
        return self.widget.currentData()


class VariantChoiceWrapper(LabelledChoiceWrapper):
    """VARIANT of *Train*: only the chosen ARCHITECTURE's variants are offered.

    Metadata adds ``'per_architecture': {architecture: [variants]}``; the wrapper follows the
    ARCHITECTURE widget's value.
    """

    def createWidget(self, labels: Optional[dict] = None, per_architecture: Optional[dict] = None,  # noqa: N802
                     **kwargs: Any) -> QComboBox:
        self.per_architecture = {k: list(v) for k, v in (per_architecture or {}).items()}
        self.architecture: Optional[str] = None
        return super().createWidget(labels=labels)

    def choices(self) -> list[str]:
        if self.architecture in self.per_architecture:
            return self.per_architecture[self.architecture]
        return super().choices()

    def postInitialize(self, wrappers: list) -> None:  # noqa: N802
        for w in wrappers:
            if w.parameterDefinition().name() == "ARCHITECTURE":
                options = list(w.parameterDefinition().options())
                w.widgetValueHasChanged.connect(lambda wrapper: self.follow(wrapper.parameterValue(), options))
                self.follow(w.parameterValue(), options)

    def follow(self, architecture: Any, options: Sequence[str] = ()) -> None:
        """Offer the variants of ``architecture`` (a name, or an index into ``options``)."""
        if isinstance(architecture, int) and 0 <= architecture < len(options):
            architecture = options[architecture]
        self.architecture = str(architecture) if architecture is not None else None
        self.fill(self.widget, self.choices())
