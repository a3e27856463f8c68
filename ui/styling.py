"""Styles for mmlc outputs: paletted class rasters, a confidence ramp, categorised polygons.

Class values, names and colours always come from the model (``core.classes.ClassInfo``), so a
map looks the same in the Toolbox, after a Modeler chain, and from the ``.qml`` sidecar the core
writes for headless runs.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsColorRampShader,
    QgsMapLayer,
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterLayer,
    QgsRasterShader,
    QgsRendererCategory,
    QgsSingleBandPseudoColorRenderer,
    QgsStyle,
    QgsSymbol,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

from ..core.classes import ClassInfo


def paletted_renderer(layer: QgsRasterLayer, classes: Sequence[ClassInfo]) -> QgsPalettedRasterRenderer:
    items = [QgsPalettedRasterRenderer.Class(c.value, QColor(c.color), c.name) for c in classes]
    return QgsPalettedRasterRenderer(layer.dataProvider(), 1, items)


def style_class_raster(layer: QgsRasterLayer, classes: Sequence[ClassInfo]) -> None:
    """Paletted renderer: one entry per class (value, name, colour)."""
    layer.setRenderer(paletted_renderer(layer, classes))
    layer.triggerRepaint()


def style_confidence_raster(layer: QgsRasterLayer) -> None:
    """Continuous Viridis-like ramp over 0..1 (max softmax probability)."""
    ramp = QgsStyle.defaultStyle().colorRamp("Viridis")
    fn = QgsColorRampShader(0.0, 1.0, ramp, QgsColorRampShader.Type.Interpolated)
    fn.classifyColorRamp(5, 1, layer.extent(), layer.dataProvider())
    fn.setMinimumValue(0.0)
    fn.setMaximumValue(1.0)
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(fn)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(0.0)
    renderer.setClassificationMax(1.0)
    layer.setRenderer(renderer)
    layer.triggerRepaint()


def style_polygons(layer: QgsVectorLayer, classes: Iterable[ClassInfo], field: str = "class_value") -> None:
    """Categorised fill by class value with the model's colours and names."""
    cats = []
    for c in classes:
        sym = QgsSymbol.defaultSymbol(layer.geometryType())
        sym.setColor(QColor(c.color))
        cats.append(QgsRendererCategory(c.value, sym, c.name))
    layer.setRenderer(QgsCategorizedSymbolRenderer(field, cats))
    layer.triggerRepaint()


class ClassStylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Applies a class/confidence/polygon style when Processing loads an output layer.

    Processing keeps only a raw pointer to post-processors, so the algorithm instance holds a
    Python reference to each one for as long as it lives.
    """

    def __init__(self, kind: str, classes: Sequence[ClassInfo]) -> None:
        super().__init__()
        self.kind = kind
        self.classes = list(classes)

    def postProcessLayer(self, layer: QgsMapLayer, context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> None:
        if self.kind == "classes" and isinstance(layer, QgsRasterLayer):
            style_class_raster(layer, self.classes)
        elif self.kind == "confidence" and isinstance(layer, QgsRasterLayer):
            style_confidence_raster(layer)
        elif self.kind == "polygons" and isinstance(layer, QgsVectorLayer):
            style_polygons(layer, self.classes)
