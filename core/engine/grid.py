"""The output grid: CRS + geotransform + size, and the pixel arithmetic on it.

A :class:`Grid` is the one description of "where pixels are" shared by inference and training.
The output grid of a run is input 1's grid (optionally cut to an extent, snapped to its pixels);
every other input is read *on* it, or on its k-times-finer twin (:meth:`Grid.scaled`) for
grid-ratio modalities such as DAS2F's PAN (k = 4). Only north-up grids (no rotation terms) are
supported as output grids, which is what every GIS raster in practice is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import GridError

#: Fraction of a pixel under which two edges are considered the same (snapping tolerance).
SNAP_EPS: float = 1e-6


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid. ``transform`` is a GDAL geotransform (6 numbers)."""

    crs_wkt: str
    transform: tuple[float, ...]
    width: int
    height: int

    # --- construction ------------------------------------------------------------------
    @classmethod
    def from_dataset(cls, ds: Any) -> "Grid":
        """Grid of an open ``gdal.Dataset``; GridError for rotated geotransforms."""
        grid = cls(ds.GetProjection() or "", geotransform_of(ds), int(ds.RasterXSize), int(ds.RasterYSize))
        grid.check_north_up(ds.GetDescription())
        return grid

    @classmethod
    def from_path(cls, path: str) -> "Grid":
        """Grid of the raster at ``path``; InputError when GDAL cannot open it."""
        from .io import open_raster

        ds = open_raster(path)
        return cls.from_dataset(ds)

    def check_north_up(self, what: str = "raster") -> None:
        if self.transform[2] != 0.0 or self.transform[4] != 0.0:
            raise GridError(
                f"{what} has a rotated geotransform, which mmlc cannot use as an output grid; "
                "warp it to a north-up grid first (gdalwarp)"
            )
        if self.transform[1] <= 0 or self.transform[5] >= 0:
            raise GridError(f"{what} has an unusual pixel size {self.transform[1]}, {self.transform[5]}; "
                            "expected positive x and negative y pixel size (north-up)")

    # --- geometry ----------------------------------------------------------------------
    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y) as positive numbers."""
        return self.transform[1], -self.transform[5]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the grid's footprint."""
        x0, dx, _, y0, _, dy = self.transform
        return x0, y0 + self.height * dy, x0 + self.width * dx, y0

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    def scaled(self, k: int) -> "Grid":
        """The grid with k times finer pixels and the same footprint (PAN for an MS grid)."""
        if k < 1 or int(k) != k:
            raise ValueError(f"grid ratio must be a positive integer, got {k}")
        x0, dx, rx, y0, ry, dy = self.transform
        return Grid(self.crs_wkt, (x0, dx / k, rx / k, y0, ry / k, dy / k), self.width * k, self.height * k)

    def window(self, row0: int, col0: int, rows: int, cols: int) -> "Grid":
        """The sub-grid of ``rows`` x ``cols`` pixels starting at (row0, col0) (may lie outside)."""
        x0, dx, rx, y0, ry, dy = self.transform
        return Grid(self.crs_wkt, (x0 + col0 * dx + row0 * rx, dx, rx, y0 + col0 * ry + row0 * dy, ry, dy), cols, rows)

    def xy_of(self, row: float, col: float) -> tuple[float, float]:
        """Map coordinates of the (fractional) pixel position; pixel centres are at +0.5."""
        x0, dx, rx, y0, ry, dy = self.transform
        return x0 + col * dx + row * rx, y0 + col * ry + row * dy

    def pixel_of(self, x: float, y: float) -> tuple[int, int]:
        """(row, col) of the pixel containing map point (x, y) (may be outside the grid)."""
        x0, dx, _, y0, _, dy = self.transform
        return int(math.floor((y - y0) / dy)), int(math.floor((x - x0) / dx))

    def cut_to_extent(self, xmin: float, ymin: float, xmax: float, ymax: float) -> "Grid":
        """The part of the grid inside the extent, snapped outward to whole pixels.

        GridError when the extent does not overlap the grid.
        """
        if xmax <= xmin or ymax <= ymin:
            raise GridError(f"extent ({xmin}, {ymin}, {xmax}, {ymax}) is empty: expected xmin < xmax and ymin < ymax")
        x0, dx, _, y0, _, dy = self.transform
        c0 = math.floor((xmin - x0) / dx + SNAP_EPS)
        c1 = math.ceil((xmax - x0) / dx - SNAP_EPS)
        r0 = math.floor((ymax - y0) / dy + SNAP_EPS)
        r1 = math.ceil((ymin - y0) / dy - SNAP_EPS)
        c0, c1 = max(c0, 0), min(c1, self.width)
        r0, r1 = max(r0, 0), min(r1, self.height)
        if c1 <= c0 or r1 <= r0:
            gx0, gy0, gx1, gy1 = self.bounds
            raise GridError(
                f"the extent ({xmin}, {ymin}, {xmax}, {ymax}) does not overlap the first input "
                f"({gx0}, {gy0}, {gx1}, {gy1}); give the extent in the first input's CRS"
            )
        return self.window(r0, c0, r1 - r0, c1 - c0)


#: Geotransform given to rasters without georeferencing (plain JPEG/PNG tiles of some benchmark
#: datasets): one unit per pixel, north-up, origin at the top-left corner, no CRS.
PIXEL_GEOTRANSFORM: tuple[float, ...] = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def geotransform_of(ds: Any) -> tuple[float, ...]:
    """The dataset's geotransform, or :data:`PIXEL_GEOTRANSFORM` when it has none.

    GDAL reports (0, 1, 0, 0, 0, 1) (south-up) for an ungeoreferenced raster; such inputs are
    placed on a north-up pixel grid instead, so same-size ungeoreferenced inputs (DDHR's GF-2/GF-3
    JPEGs and PNG labels) align pixel for pixel.
    """
    gt = ds.GetGeoTransform(can_return_null=True)
    return PIXEL_GEOTRANSFORM if gt is None else tuple(float(v) for v in gt)
