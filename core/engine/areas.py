"""Class areas of a class raster: pixels, hectares and share per class, honest in any CRS.

After a classification the analyst's first question is "how much of each class?". The pixel
counts come from the writer (``OutputSet.counts``, per class, see :mod:`.outputs`); hectares need
the area of a pixel, which depends on the CRS:

* a projected CRS that keeps areas (to within :data:`DISTORTION_TOLERANCE` at the raster's
  centre, e.g. UTM, national grids, equal-area projections): pixel area = the grid's cell area in
  the CRS's linear unit (``planar``);
* a geographic CRS (degrees): a cell's area shrinks towards the poles, so the raster is read row
  by row and each row's cells get the exact area of their latitude band on the CRS's ellipsoid
  (``ellipsoidal``);
* a projected CRS that distorts areas (Web Mercator: 2.6 x at 52 degrees N): each row's cell
  area is measured on the ellipsoid at the row's centre pixel (``ellipsoidal``, an
  approximation to the local scale along each row, exact along the rows of Mercator-like
  projections);
* no CRS or a rotated geographic grid: no hectares (``None``) and a note saying why.

The table also goes to a CSV file (:func:`write_area_csv`), written atomically.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..classes import ClassInfo
from ..errors import InputError

#: Largest relative difference between the planar and the ellipsoidal area of the centre pixel
#: for which planar areas are reported as they are.
DISTORTION_TOLERANCE: float = 0.01
#: Rows read at once on the per-row path.
STRIP_ROWS: int = 256


@dataclass
class ClassArea:
    value: int
    name: str
    color: str
    pixels: int
    hectares: Optional[float]
    share: float  # of all classified pixels, 0-1


@dataclass
class AreaTable:
    rows: list[ClassArea]
    method: str  # "planar", "ellipsoidal" or "none"
    note: str = ""
    pixel_area_m2: Optional[float] = None  # planar: every pixel's area
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_pixels(self) -> int:
        return sum(r.pixels for r in self.rows)

    @property
    def total_hectares(self) -> Optional[float]:
        if any(r.hectares is None for r in self.rows):
            return None
        return sum(r.hectares for r in self.rows)  # type: ignore[misc]


# --- geometry on the ellipsoid -----------------------------------------------------------------
def _q(phi: np.ndarray, e: float) -> np.ndarray:
    """Snyder's authalic function q(phi) (Map Projections, eq. 3-12); 2 sin(phi) on a sphere."""
    s = np.sin(phi)
    if e < 1e-12:
        return 2.0 * s
    es = e * s
    return (1.0 - e * e) * (s / (1.0 - es * es) - (1.0 / (2.0 * e)) * np.log((1.0 - es) / (1.0 + es)))


def band_area_m2(lat1_deg: np.ndarray, lat2_deg: np.ndarray, dlon_deg: float, a: float, inv_f: float) -> np.ndarray:
    """Exact area (m^2) of the quadrangles between latitudes lat1 and lat2 spanning ``dlon_deg``
    of longitude, on the ellipsoid (semi-major axis ``a``, inverse flattening ``inv_f``, 0 = sphere)."""
    f = 1.0 / inv_f if inv_f else 0.0
    e = math.sqrt(max(2 * f - f * f, 0.0))
    q1, q2 = _q(np.radians(lat1_deg), e), _q(np.radians(lat2_deg), e)
    return np.abs(0.5 * a * a * math.radians(dlon_deg) * (q2 - q1))


def _local_area_m2(lons: np.ndarray, lats: np.ndarray, a: float, inv_f: float) -> float:
    """Area of a small quadrilateral given by corner lon/lat (degrees) on the ellipsoid, from the
    local metric (meridian and prime-vertical radii of curvature at its mean latitude)."""
    f = 1.0 / inv_f if inv_f else 0.0
    e2 = 2 * f - f * f
    phi = math.radians(float(np.mean(lats)))
    w = math.sqrt(1.0 - e2 * math.sin(phi) ** 2)
    m = a * (1.0 - e2) / w ** 3  # meridian radius
    n = a / w  # prime vertical radius
    x = np.radians(lons - lons[0]) * n * math.cos(phi)
    y = np.radians(lats - lats[0]) * m
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


# --- the table ---------------------------------------------------------------------------------
def _per_row_counts(band: Any, width: int, height: int, lut: Mapping[int, int], k: int) -> np.ndarray:
    """(height, k) pixel counts per row and class index, read in strips."""
    out = np.zeros((height, k), np.int64)
    index = np.full(65536, k, np.int64)  # raster value -> class index (k = not a class)
    for v, i in lut.items():
        index[v] = i
    for y0 in range(0, height, STRIP_ROWS):
        rows = min(STRIP_ROWS, height - y0)
        vals = band.ReadAsArray(0, y0, width, rows)
        idx = index[vals.astype(np.int64)]
        flat = idx + (np.arange(rows)[:, None] * (k + 1))
        out[y0:y0 + rows] = np.bincount(flat.ravel(), minlength=rows * (k + 1)).reshape(rows, k + 1)[:, :k]
    return out


def _table(classes: Sequence[ClassInfo], pixels: Sequence[int], hectares: Optional[Sequence[float]],
           method: str, note: str = "", pixel_area: Optional[float] = None) -> AreaTable:
    total = sum(int(p) for p in pixels)
    rows = [ClassArea(c.value, c.name, c.color, int(p), None if hectares is None else float(hectares[i]),
                      int(p) / total if total else 0.0)
            for i, (c, p) in enumerate(zip(classes, pixels))]
    return AreaTable(rows, method, note, pixel_area)


def class_areas(raster: str | Path, classes: Sequence[ClassInfo],
                counts: Optional[Mapping[int, int]] = None) -> AreaTable:
    """The area table of the class raster ``raster`` (values = ``classes``' values, 0 = nodata).

    ``counts`` (class value -> pixels, e.g. ``ClassifyResult.class_pixels``) saves reading the
    raster when pixel areas are uniform; otherwise the raster is read row by row.
    """
    from osgeo import gdal, osr

    ds = gdal.Open(str(raster))
    if ds is None:
        raise InputError(f"cannot open the class raster {raster}")
    classes = list(classes)
    gt = ds.GetGeoTransform()
    width, height = ds.RasterXSize, ds.RasterYSize
    lut = {int(c.value): i for i, c in enumerate(classes)}
    band = ds.GetRasterBand(1)

    def pixel_counts() -> list[int]:
        if counts is not None:
            return [int(counts.get(c.value, 0)) for c in classes]
        return [int(n) for n in _per_row_counts(band, width, height, lut, len(classes)).sum(axis=0)]

    wkt = ds.GetProjection()
    if not wkt:
        return _table(classes, pixel_counts(), None, "none",
                      "the raster has no CRS: hectares cannot be computed (pixels and shares only)")
    srs = osr.SpatialReference(wkt=wkt)
    a, inv_f = srs.GetSemiMajor(), srs.GetInvFlattening()
    rotated = gt[2] != 0 or gt[4] != 0
    if srs.IsGeographic():
        if rotated:
            return _table(classes, pixel_counts(), None, "none",
                          "a rotated grid in a geographic CRS: hectares not computed (reproject to an "
                          "equal-area CRS for areas)")
        unit_deg = srs.GetAngularUnits() * 180.0 / math.pi  # degrees per CRS unit
        top = gt[3] + np.arange(height) * gt[5]
        lat1, lat2 = top * unit_deg, (top + gt[5]) * unit_deg
        row_area = band_area_m2(np.clip(lat1, -90, 90), np.clip(lat2, -90, 90), abs(gt[1]) * unit_deg, a, inv_f)
        per_row = _per_row_counts(band, width, height, lut, len(classes))
        hectares = (per_row * row_area[:, None]).sum(axis=0) / 1e4
        return _table(classes, per_row.sum(axis=0), hectares, "ellipsoidal",
                      "geographic CRS: each row's cells measured on the ellipsoid at their latitude")
    pixel_m2 = abs(gt[1] * gt[5] - gt[2] * gt[4]) * srs.GetLinearUnits() ** 2
    geo = srs.CloneGeogCS()
    for s in (srs, geo):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    to_geo = osr.CoordinateTransformation(srs, geo)

    def ellipsoid_pixel_area(row: int, col: int) -> float:
        corners = [(col, row), (col + 1, row), (col + 1, row + 1), (col, row + 1)]
        pts = [to_geo.TransformPoint(gt[0] + c * gt[1] + r * gt[2], gt[3] + c * gt[4] + r * gt[5])
               for c, r in corners]
        return _local_area_m2(np.array([p[0] for p in pts]), np.array([p[1] for p in pts]), a, inv_f)

    try:
        centre = ellipsoid_pixel_area(height // 2, width // 2)
    except (RuntimeError, ValueError):  # outside the projection's domain
        centre = float("nan")
    if math.isfinite(centre) and abs(centre / pixel_m2 - 1.0) <= DISTORTION_TOLERANCE:
        px = pixel_counts()
        return _table(classes, px, [n * pixel_m2 / 1e4 for n in px], "planar",
                      f"projected CRS: {pixel_m2:g} m² per pixel", pixel_m2)
    if not math.isfinite(centre):
        return _table(classes, pixel_counts(), None, "none",
                      "the grid's centre cannot be transformed to latitude/longitude: hectares not computed")
    row_area = np.array([ellipsoid_pixel_area(r, width // 2) for r in range(height)])
    per_row = _per_row_counts(band, width, height, lut, len(classes))
    hectares = (per_row * row_area[:, None]).sum(axis=0) / 1e4
    return _table(classes, per_row.sum(axis=0), hectares, "ellipsoidal",
                  f"the CRS distorts areas here ({centre / pixel_m2:.3g} x the planar cell area at the centre): "
                  "each row's cells measured on the ellipsoid at the row's centre")


def area_lines(table: AreaTable) -> list[str]:
    """The table as fixed-width text lines for a log: numbers first, in columns only as wide as
    their values, and the class last (a long name then wraps harmlessly in a narrow log)."""
    def ha(v: Optional[float]) -> str:
        return "–" if v is None else f"{v:,.2f}"

    body = [(f"{r.pixels:,}", ha(r.hectares), f"{100 * r.share:.2f}%", f"{r.value} {r.name}") for r in table.rows]
    body.append((f"{table.total_pixels:,}", ha(table.total_hectares),
                 f"{100.0 if table.total_pixels else 0.0:.2f}%", "total"))
    header = ("pixels", "hectares", "share", "class")
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(3)]
    lines = ["  ".join([*(f"{cell:>{w}}" for cell, w in zip(row[:3], widths)), row[3]]) for row in [header, *body]]
    if table.note:
        lines.append(f"({table.note})")
    return lines


def area_csv_text(table: AreaTable) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["value", "name", "color", "pixels", "hectares", "share_percent"])
    for r in table.rows:
        w.writerow([r.value, r.name, r.color, r.pixels, "" if r.hectares is None else f"{r.hectares:.6f}",
                    f"{100 * r.share:.4f}"])
    return buf.getvalue()


def write_area_csv(path: str | Path, table: AreaTable) -> Path:
    """Write the table as CSV (value, name, color, pixels, hectares, share_percent), atomically."""
    from ..assessment.reports import write_text_atomic

    return write_text_atomic(path, area_csv_text(table))
