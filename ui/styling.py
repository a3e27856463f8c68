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
    QgsProject,
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


# The class-value field of the OUTPUT_VECTOR GeoPackage (core/engine/outputs.py writes "class" and "name").
POLYGON_CLASS_FIELD = "class"


def style_polygons(layer: QgsVectorLayer, classes: Iterable[ClassInfo], field: str = POLYGON_CLASS_FIELD) -> None:
    """Categorised fill by class value with the model's colours and names.

    A renderer on a field the layer lacks draws nothing at all while its legend looks right, so
    a missing field leaves the layer's default style (and says so in the log).
    """
    if layer.fields().indexOf(field) < 0:
        from qgis.core import Qgis, QgsMessageLog

        QgsMessageLog.logMessage(f"mmlc: '{layer.name()}' has no field '{field}'; polygons left unstyled",
                                 "mmlc", Qgis.MessageLevel.Warning)
        return
    cats = []
    for c in classes:
        sym = QgsSymbol.defaultSymbol(layer.geometryType())
        sym.setColor(QColor(c.color))
        cats.append(QgsRendererCategory(c.value, sym, c.name))
    layer.setRenderer(QgsCategorizedSymbolRenderer(field, cats))
    layer.triggerRepaint()


# Stacking of one run's outputs in the layer tree, top first: polygons over the class map over the
# confidence (which would otherwise hide the map when it happens to load last).
STACK_RANK = {"polygons": 3, "classes": 2, "confidence": 1}


class OutputStack:
    """The layers one run has loaded, kept in STACK_RANK order wherever Processing put them.

    QGIS 3.22 loads outputs in the order of their file paths (random for temporary outputs) and
    puts each new one on top; later versions sort by ``LayerDetails.layerSortKey``. Each
    post-processor reports its layer here once styled, and the run's layers that share a parent
    group are reordered in place (as one block where the topmost of them was).
    """

    def __init__(self) -> None:
        self.layer_ids: dict[str, str] = {}

    def loaded(self, kind: str, layer: QgsMapLayer, project: QgsProject | None) -> None:
        self.layer_ids[kind] = layer.id()
        project = project or QgsProject.instance()
        root = project.layerTreeRoot()
        nodes = [(STACK_RANK.get(k, 0), root.findLayer(lid)) for k, lid in self.layer_ids.items()]
        nodes = [(rank, node) for rank, node in nodes if node is not None]
        if len(nodes) < 2:
            return
        parent = nodes[0][1].parent()
        if parent is None or any(node.parent() is not parent for _, node in nodes):
            return
        children = parent.children()
        rows = sorted(children.index(node) for _, node in nodes)
        wanted = [node for _, node in sorted(nodes, key=lambda rn: -rn[0])]
        if [children[r] for r in rows] == wanted:
            return
        # Clones go in first and the old nodes come out after: the layer tree bridge removes a
        # layer from the project when its last node leaves the tree.
        parent.insertChildNodes(rows[0], [node.clone() for node in wanted])
        for node in wanted:
            parent.removeChildNode(node)


class ClassStylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Applies a class/confidence/polygon style when Processing loads an output layer, and keeps
    the run's outputs stacked (``stack``: shared by one run's post-processors).

    Processing keeps only a raw pointer to post-processors, so the algorithm instance holds a
    Python reference to each one for as long as it lives.
    """

    def __init__(self, kind: str, classes: Sequence[ClassInfo], stack: OutputStack | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.classes = list(classes)
        self.stack = stack

    def postProcessLayer(self, layer: QgsMapLayer, context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> None:
        if self.kind == "classes" and isinstance(layer, QgsRasterLayer):
            style_class_raster(layer, self.classes)
        elif self.kind == "confidence" and isinstance(layer, QgsRasterLayer):
            style_confidence_raster(layer)
        elif self.kind == "polygons" and isinstance(layer, QgsVectorLayer):
            style_polygons(layer, self.classes)
        if self.stack is not None:
            self.stack.loaded(self.kind, layer, context.project())
