"""Render rasters to PNG through QGIS's own map rendering (a map + legend layout).

Used by ``make demo`` (and the README screenshot): class rasters with their paletted style and a
legend, inputs as a contrast-stretched RGB composite, each in its own PNG.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from qgis.core import (
    QgsContrastEnhancement,
    QgsLayoutExporter,
    QgsLayoutItemLabel,
    QgsLayoutItemLegend,
    QgsLayoutItemMap,
    QgsLayoutPoint,
    QgsLayoutSize,
    QgsMultiBandColorRenderer,
    QgsPrintLayout,
    QgsProject,
    QgsRasterLayer,
    QgsUnitTypes,
)
from qgis.PyQt.QtGui import QFont


def rgb_composite(layer: QgsRasterLayer, bands: Sequence[int]) -> None:
    """Multiband colour renderer on ``bands`` (1-based) with a 2-98 % cumulative-cut stretch."""
    r = QgsMultiBandColorRenderer(layer.dataProvider(), *bands)
    for setter, band in ((r.setRedContrastEnhancement, bands[0]), (r.setGreenContrastEnhancement, bands[1]),
                         (r.setBlueContrastEnhancement, bands[2])):
        ce = QgsContrastEnhancement(layer.dataProvider().dataType(band))
        ce.setContrastEnhancementAlgorithm(QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum)
        lo, hi = layer.dataProvider().cumulativeCut(band, 0.02, 0.98)
        ce.setMinimumValue(lo)
        ce.setMaximumValue(hi)
        setter(ce)
    layer.setRenderer(r)


def export_png(layer: QgsRasterLayer, path: Path, title: str, legend: bool, width_mm: float = 120.0,
               extent=None) -> Path:
    """Lay out ``layer`` (its current style) with a title and optional legend; write a PNG.

    ``extent``: a QgsRectangle in the layer's CRS to show instead of the whole layer.
    """
    project = QgsProject.instance()
    project.addMapLayer(layer, False)
    layout = QgsPrintLayout(project)
    layout.initializeDefaults()
    ext = extent if extent is not None else layer.extent()
    aspect = ext.height() / ext.width() if ext.width() else 1.0
    map_h = width_mm * aspect
    legend_w = 100.0 if legend else 0.0
    page = layout.pageCollection().page(0)
    page.setPageSize(QgsLayoutSize(width_mm + legend_w + 15, map_h + 25, QgsUnitTypes.LayoutUnit.LayoutMillimeters))
    label = QgsLayoutItemLabel(layout)
    label.setText(title)
    label.setFont(QFont("DejaVu Sans", 11))
    label.attemptMove(QgsLayoutPoint(5, 3, QgsUnitTypes.LayoutUnit.LayoutMillimeters))
    label.attemptResize(QgsLayoutSize(width_mm + legend_w, 10, QgsUnitTypes.LayoutUnit.LayoutMillimeters))
    layout.addLayoutItem(label)
    item = QgsLayoutItemMap(layout)
    item.attemptMove(QgsLayoutPoint(5, 15, QgsUnitTypes.LayoutUnit.LayoutMillimeters))
    item.attemptResize(QgsLayoutSize(width_mm, map_h, QgsUnitTypes.LayoutUnit.LayoutMillimeters))
    item.setLayers([layer])
    item.setCrs(layer.crs())
    item.setExtent(ext)
    item.setFrameEnabled(True)
    layout.addLayoutItem(item)
    if legend:
        leg = QgsLayoutItemLegend(layout)
        leg.setLinkedMap(item)
        leg.setAutoUpdateModel(False)
        leg.model().rootGroup().clear()
        leg.model().rootGroup().addLayer(layer)
        leg.setTitle("Legend")
        leg.attemptMove(QgsLayoutPoint(width_mm + 10, 15, QgsUnitTypes.LayoutUnit.LayoutMillimeters))
        layout.addLayoutItem(leg)
    settings = QgsLayoutExporter.ImageExportSettings()
    settings.dpi = 110
    settings.exportMetadata = False  # PNG has no metadata update support in GDAL (noisy error)
    path.parent.mkdir(parents=True, exist_ok=True)
    from osgeo import gdal

    gdal.PushErrorHandler("CPLQuietErrorHandler")  # QGIS tries to georeference the PNG in place
    try:
        result = QgsLayoutExporter(layout).exportToImage(str(path), settings)
    finally:
        gdal.PopErrorHandler()
    project.removeMapLayer(layer.id())
    if result != QgsLayoutExporter.ExportResult.Success:
        raise RuntimeError(f"QGIS could not export {path} (code {result})")
    return path


def side_by_side(rows: Sequence[Sequence[Path]], path: Path) -> Path:
    """Paste PNGs into one picture: one row per list, left to right (for the README screenshot)."""
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtGui import QImage, QPainter

    images = [[QImage(str(p)) for p in row] for row in rows]
    width = max(sum(i.width() for i in row) for row in images)
    height = sum(max(i.height() for i in row) for row in images)
    canvas = QImage(width, height, QImage.Format.Format_ARGB32)
    canvas.fill(Qt.GlobalColor.white)
    painter = QPainter(canvas)
    y = 0
    for row in images:
        x = 0
        for img in row:
            painter.drawImage(x, y, img)
            x += img.width()
        y += max(i.height() for i in row)
    painter.end()
    canvas.save(str(path))
    return path
