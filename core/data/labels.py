"""Reference labels on a grid: a class raster or a vector layer's class field, as uint16 values.

One place for how labels reach training and evaluation (``docs/contributing.md``, GitHub issue 8):

- **Class raster** (any CRS, any GDAL format): band 1 is warped with nearest-neighbour onto the
  target grid through GDAL's warper, one window at a time. 0, negative values, the band's nodata
  value and NaN mean *unlabelled*. Names and colours come from the band's category names and
  colour table when present, else from :func:`core.classes.default_classes`.
- **Vector layer** (any OGR format, any CRS; ``path|layername=NAME`` picks a layer): features are
  reprojected once into the grid CRS, then polygons, lines and points are burnt with
  ``gdal.RasterizeLayer`` (ALL_TOUCHED off: a polygon takes the pixels whose centre it covers, a
  point the pixel it falls in). An integer field gives the class values directly (0 or empty =
  unlabelled); a string field's distinct values are sorted and mapped to 1..K, the strings
  becoming the class names. Where features overlap, the later feature wins (GDAL's burn order).

With ``presence=True`` the same machinery reads a *mask* (classify's MASK): every polygon of a
vector layer burns 1 (no field needed; points and lines are not areas and are ignored), and every
valid non-zero pixel of a raster reads 1, whatever its values.

Labels are returned as uint16 with 0 = unlabelled, matching ``ClassInfo`` values (1..65534).
:class:`LabelSource` keeps the file open so that ``core/assessment/evaluate.py`` and the training samplers
can read window after window with bounded memory; :func:`read_labels` is the one-shot form.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from osgeo import gdal, ogr, osr

from ..classes import ClassInfo, default_color, read_class_table
from ..engine.gdal_errors import gdal_call, gdal_failed
from ..engine.grid import geotransform_of
from ..errors import GridError, InputError

_BURN_FIELD = "mmlc_class"
_MAX_VALUE = 65535
_OGR_INT_TYPES = (ogr.OFTInteger, ogr.OFTInteger64)


def _srs(wkt: str) -> Optional[osr.SpatialReference]:
    if not wkt:
        return None
    s = osr.SpatialReference()
    s.ImportFromWkt(wkt)
    s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return s


def grid_bounds(grid: Any) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of a grid's footprint (rotation terms included)."""
    return _gt_bounds(tuple(grid.transform), int(grid.width), int(grid.height))


def _gt_bounds(gt: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    xs, ys = [], []
    for col, row in ((0, 0), (width, 0), (0, height), (width, height)):
        xs.append(gt[0] + col * gt[1] + row * gt[2])
        ys.append(gt[3] + col * gt[4] + row * gt[5])
    return min(xs), min(ys), max(xs), max(ys)


def _overlaps(a: Sequence[float], b: Sequence[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def split_layer_uri(path: str) -> tuple[str, Optional[str]]:
    """QGIS-style ``file.gpkg|layername=roads`` -> (file, layer name)."""
    if "|" not in path:
        return path, None
    base, *opts = path.split("|")
    layer = None
    for o in opts:
        key, _, val = o.partition("=")
        if key.strip().lower() == "layername" and val:
            layer = val
    return base, layer


def _mem_raster(grid: Any, dtype: int) -> gdal.Dataset:
    ds = gdal.GetDriverByName("MEM").Create("", int(grid.width), int(grid.height), 1, dtype)
    ds.SetGeoTransform(tuple(grid.transform))
    if grid.crs_wkt:
        ds.SetProjection(grid.crs_wkt)
    return ds


def classes_from_band(band: gdal.Band, values: Iterable[int]) -> list[ClassInfo]:
    """Classes for ``values`` named/coloured from a band's category names and colour table.

    A value without a category name is called ``class N``; without a colour-table entry (or with
    a fully transparent black one, the usual filler) it takes the default palette colour.
    """
    names = band.GetCategoryNames() or []
    table = band.GetColorTable()
    out: list[ClassInfo] = []
    for i, v in enumerate(sorted({int(x) for x in values})):
        name = names[v].strip() if v < len(names) and names[v] and names[v].strip() else f"class {v}"
        color = default_color(i)
        if table is not None and v < table.GetCount():
            r, g, b, a = (list(table.GetColorEntry(v)) + [255])[:4]
            if (r, g, b, a) != (0, 0, 0, 0):
                color = f"#{r:02x}{g:02x}{b:02x}"
        out.append(ClassInfo(v, name, color))
    return out


def present_values(labels: np.ndarray) -> list[int]:
    """Sorted non-zero class values occurring in a uint16 label array."""
    if labels.size == 0:
        return []
    counts = np.bincount(labels.reshape(-1).astype(np.int64), minlength=1)
    return [int(v) for v in np.flatnonzero(counts) if v != 0]


class LabelSource:
    """An open label raster or vector layer, read window by window on grids of one CRS.

    ``crs_wkt`` is the CRS of every grid :meth:`read` will be given (vector features are
    reprojected into it once). Use as a context manager or call :meth:`close`.
    Raises InputError (unreadable file, missing/empty field) or GridError (CRS problems).
    """

    def __init__(self, path: str | Path, crs_wkt: str, field: Optional[str] = None, presence: bool = False) -> None:
        self.path = str(path)
        self.field = field
        #: read where the file says "something here" as 1, else 0 (a mask): every polygon of a
        #: vector layer (no field needed), every non-zero valid pixel of a raster (any values)
        self.presence = presence
        self.crs_wkt = crs_wkt
        self.names_from_strings = False  # True when class names are a string field's values
        self.fast_path = True  # plain window reads when a label raster shares the grid's pixel lattice
        self._raster: Optional[gdal.Dataset] = None
        self._vector: Optional[gdal.Dataset] = None
        self._mem_layer: Optional[ogr.Layer] = None
        self._vector_classes: list[ClassInfo] = []
        base, layer_name = split_layer_uri(self.path)
        if not os.path.exists(base):
            raise InputError(f"the {'mask' if presence else 'label'} file {base} does not exist")
        ds, _ = gdal_call(gdal.OpenEx, base, gdal.OF_RASTER | gdal.OF_VECTOR)
        if ds is None:
            raise InputError(
                f"cannot open {base} as a raster or a vector layer (unsupported format, corrupted, or no permission)"
            )
        has_layers = ds.GetLayerCount() > 0
        if ds.RasterCount > 0 and not (has_layers and (field or layer_name or presence)):
            self.kind = "raster"
            self._open_raster(ds)
        elif has_layers:
            self.kind = "vector"
            self._open_vector(ds, base, layer_name)
        else:
            raise InputError(f"{base} holds neither a raster band nor a vector layer")

    # -- raster ---------------------------------------------------------------------------------
    def _open_raster(self, ds: gdal.Dataset) -> None:
        self._raster = ds
        src_wkt = ds.GetProjection() or ""
        if bool(src_wkt) != bool(self.crs_wkt):
            which = "the label raster" if not src_wkt else "the target grid"
            raise GridError(
                f"{which} has no coordinate reference system, so {self.path} cannot be placed on the grid; "
                "assign a CRS (Raster > Projections > Assign Projection) and try again"
            )
        band = ds.GetRasterBand(1)
        self._nodata = band.GetNoDataValue()
        gt = geotransform_of(ds)
        self._src_gt = tuple(gt)
        src_srs, dst_srs = _srs(src_wkt), _srs(self.crs_wkt)
        self._same_crs = src_srs is None or dst_srs is None or bool(src_srs.IsSame(dst_srs))
        bounds = _gt_bounds(gt, ds.RasterXSize, ds.RasterYSize)
        self.bounds = self._to_target(bounds, src_srs)

    def _aligned_offset(self, grid: Any) -> Optional[tuple[int, int]]:
        """(row, col) of the grid's origin in the label raster when both share CRS and pixel
        lattice (same pixel size, whole-pixel offset, no rotation): then a plain window read
        gives exactly what the nearest-neighbour warp would, about ten times faster."""
        gt, sg = tuple(grid.transform), self._src_gt
        if not self._same_crs or gt[2] or gt[4] or sg[2] or sg[4]:
            return None
        if abs(gt[1] - sg[1]) > 1e-9 * abs(sg[1]) or abs(gt[5] - sg[5]) > 1e-9 * abs(sg[5]):
            return None
        col = (gt[0] - sg[0]) / sg[1]
        row = (gt[3] - sg[3]) / sg[5]
        if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
            return None
        return int(round(row)), int(round(col))

    def _read_aligned(self, grid: Any, row: int, col: int) -> Optional[np.ndarray]:
        raster = self._raster_ds()
        band = raster.GetRasterBand(1)
        h, w = int(grid.height), int(grid.width)
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + h, raster.RasterYSize), min(col + w, raster.RasterXSize)
        if r1 <= r0 or c1 <= c0:
            return None
        block = band.ReadAsArray(c0, r0, c1 - c0, r1 - r0)
        if block is None:
            raise InputError(f"cannot read the label raster {self.path} (truncated or corrupted file?)")
        fill = self._nodata if self._nodata is not None else 0
        arr = np.full((h, w), fill, dtype=block.dtype)
        arr[r0 - row:r1 - row, c0 - col:c1 - col] = block
        return arr

    def _to_target(self, bounds: Sequence[float], src: Optional[osr.SpatialReference]) -> tuple[float, ...]:
        dst = _srs(self.crs_wkt)
        if src is None or dst is None or src.IsSame(dst):
            return tuple(bounds)
        try:
            ct = osr.CoordinateTransformation(src, dst)
            return tuple(ct.TransformBounds(*bounds, 21))
        except RuntimeError as e:
            raise GridError(f"the CRS of {self.path} cannot be transformed to the grid's CRS: {e}") from e

    def _warp(self, grid: Any) -> np.ndarray:
        """Band 1 warped onto ``grid`` with nearest neighbour, nodata where the raster is absent."""
        raster = self._raster_ds()
        band = raster.GetRasterBand(1)
        dst = _mem_raster(grid, band.DataType)
        if self._nodata is not None:
            dst.GetRasterBand(1).SetNoDataValue(self._nodata)
            dst.GetRasterBand(1).Fill(self._nodata)
        ok, msg = gdal_call(gdal.Warp, dst, raster, resampleAlg="near", multithread=False)
        if ok is None:
            raise InputError(f"cannot read the label raster {self.path}: {msg or 'GDAL warp failed'}")
        return dst.GetRasterBand(1).ReadAsArray()

    def _read_raster(self, grid: Any) -> np.ndarray:
        self._raster_ds()  # InputError if closed
        nodata = self._nodata
        offset = self._aligned_offset(grid) if self.fast_path else None
        arr = self._read_aligned(grid, *offset) if offset is not None else None
        if arr is None:
            arr = self._warp(grid)
        valid = np.ones(arr.shape, dtype=bool)
        if arr.dtype.kind == "f":
            valid &= np.isfinite(arr)
        if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
            valid &= arr != nodata
        if self.presence:  # a mask: any non-zero valid value, whatever the type
            return (valid & (arr != 0)).astype(np.uint16)
        if arr.dtype.kind in "if" and np.any(valid & (arr < 0)):
            bad = arr[valid & (arr < 0)]
            raise InputError(
                f"the label raster {self.path} holds negative values ({bad.size} pixels, e.g. {bad[0]:g}); class "
                "values must be 1..65535 with 0 = unlabelled: declare the negative fill value as nodata "
                "(gdal_edit.py -a_nodata) or recode the classes"
            )
        valid &= arr > 0
        vals = arr[valid]
        if vals.size:
            if arr.dtype.kind == "f" and np.any(vals != np.round(vals)):
                bad = vals[vals != np.round(vals)][0]
                raise InputError(
                    f"the label raster {self.path} holds non-integer values (e.g. {bad}); "
                    "a class raster must hold integer class values (0 = unlabelled)"
                )
            if vals.max() > _MAX_VALUE:
                raise InputError(
                    f"the label raster {self.path} holds the value {vals.max():g}; class values must be 1..65535"
                )
        out = np.zeros(arr.shape, dtype=np.uint16)
        out[valid] = vals.astype(np.uint16)
        return out

    # -- vector ---------------------------------------------------------------------------------
    def _open_vector(self, ds: gdal.Dataset, base: str, layer_name: Optional[str]) -> None:
        self._vector = ds
        if layer_name is not None:
            layer = ds.GetLayerByName(layer_name)
            if layer is None:
                names = [ds.GetLayerByIndex(i).GetName() for i in range(ds.GetLayerCount())]
                raise InputError(f"{base} has no layer {layer_name!r}; its layers are: {', '.join(names)}")
        else:
            layer = ds.GetLayerByIndex(0)
        defn = layer.GetLayerDefn()
        fields = [(defn.GetFieldDefn(i).GetName(), defn.GetFieldDefn(i).GetType()) for i in range(defn.GetFieldCount())]
        listing = ", ".join(f"{n} ({ogr.GetFieldTypeName(t)})" for n, t in fields) or "none"
        idx, ftype = -1, ogr.OFTInteger  # a mask (presence) burns every polygon: no field
        if not self.presence:
            if not self.field:
                raise InputError(
                    f"{self.path} is a vector layer: choose the field that holds the classes (its fields: {listing})"
                )
            idx = defn.GetFieldIndex(self.field)
            if idx < 0:
                raise InputError(f"the vector layer {layer.GetName()} has no field {self.field!r}; its fields: {listing}")
            ftype = defn.GetFieldDefn(idx).GetType()
            if ftype not in _OGR_INT_TYPES + (ogr.OFTReal, ogr.OFTString):
                raise InputError(
                    f"the field {self.field!r} is of type {ogr.GetFieldTypeName(ftype)}; "
                    "a class field must hold integers or text"
                )
        src_srs = layer.GetSpatialRef()
        dst_srs = _srs(self.crs_wkt)
        if (src_srs is None) != (dst_srs is None):
            which = "the vector layer" if src_srs is None else "the target grid"
            raise GridError(
                f"{which} has no coordinate reference system, so {self.path} cannot be placed on the grid; "
                "assign a CRS (e.g. with 'Assign projection' in the Processing toolbox) and try again"
            )
        ct = None
        if src_srs is not None and dst_srs is not None:
            src_srs = src_srs.Clone()
            src_srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
            if not src_srs.IsSame(dst_srs):
                ct = osr.CoordinateTransformation(src_srs, dst_srs)

        raw: list[tuple[ogr.Geometry, Any]] = []
        layer.ResetReading()
        for feat in layer:
            geom = feat.GetGeometryRef()
            if geom is None or geom.IsEmpty():
                continue
            if self.presence:
                if ogr.GT_Flatten(geom.GetGeometryType()) in (ogr.wkbPolygon, ogr.wkbMultiPolygon, ogr.wkbCurvePolygon,
                                                              ogr.wkbMultiSurface):
                    raw.append((geom.Clone(), 1))
                continue
            if not feat.IsFieldSetAndNotNull(idx):
                continue
            raw.append((geom.Clone(), feat.GetField(idx)))
        if self.presence:
            if not raw:
                raise InputError(
                    f"the mask layer {self.path} has no polygon; a mask must be a polygon layer "
                    "(the areas to classify)"
                )
            values = [1] * len(raw)
        else:
            values = self._class_values([v for _, v in raw], ftype)

        mem = ogr.GetDriverByName("Memory").CreateDataSource("labels")
        out_layer = mem.CreateLayer("labels", srs=dst_srs, geom_type=ogr.wkbUnknown)
        out_layer.CreateField(ogr.FieldDefn(_BURN_FIELD, ogr.OFTInteger))
        out_defn = out_layer.GetLayerDefn()
        failed = 0
        for (geom, _), v in zip(raw, values):
            if v <= 0:
                continue
            if ct is not None:
                try:
                    if geom.Transform(ct) != 0:
                        failed += 1
                        continue
                except RuntimeError:
                    failed += 1
                    continue
            f = ogr.Feature(out_defn)
            f.SetGeometryDirectly(geom)
            f.SetField(_BURN_FIELD, int(v))
            out_layer.CreateFeature(f)
        if out_layer.GetFeatureCount() == 0:
            raise GridError(
                f"none of the {failed} labelled features of {self.path} can be transformed to the grid's CRS"
            )
        self._mem_ds = mem
        self._mem_layer = out_layer
        xmin, xmax, ymin, ymax = out_layer.GetExtent()
        self.bounds = (xmin, ymin, xmax, ymax)
        self.skipped_features = failed

    def _class_values(self, raw_values: list[Any], ftype: int) -> list[int]:
        """Class value per feature (0 = unlabelled) and the classes, per the field type."""
        what = f"the field {self.field!r} of {self.path}"
        if ftype == ogr.OFTString:
            strings = [str(v).strip() for v in raw_values]
            names = sorted({s for s in strings if s})
            if not names:
                raise InputError(f"{what} has no usable values: every feature's value is empty")
            if len(names) > _MAX_VALUE:
                raise InputError(f"{what} has {len(names)} distinct values; at most 65535 classes are supported")
            index = {n: i + 1 for i, n in enumerate(names)}
            self._vector_classes = [ClassInfo(i + 1, n, default_color(i)) for i, n in enumerate(names)]
            self.names_from_strings = True
            return [index.get(s, 0) for s in strings]
        out: list[int] = []
        for v in raw_values:
            fv = float(v)
            if not math.isfinite(fv) or fv != round(fv):
                raise InputError(f"{what} holds the non-integer value {v}; class values must be integers")
            iv = int(fv)
            if iv > _MAX_VALUE or iv < 0:
                raise InputError(f"{what} holds the value {iv}; class values must be 1..65535 (0 or empty = "
                                 "unlabelled)")
            out.append(iv)
        used = sorted({v for v in out if v > 0})
        if not used:
            raise InputError(f"{what} has no usable values: every feature's value is empty or 0")
        self._vector_classes = [ClassInfo(v, f"class {v}", default_color(i)) for i, v in enumerate(used)]
        return out

    def _read_vector(self, grid: Any) -> np.ndarray:
        layer = self._vector_layer()
        dst = _mem_raster(grid, gdal.GDT_UInt16)
        xmin, ymin, xmax, ymax = grid_bounds(grid)
        layer.SetSpatialFilterRect(xmin, ymin, xmax, ymax)
        try:
            err, msg = gdal_call(gdal.RasterizeLayer, dst, [1], layer,
                                 options=[f"ATTRIBUTE={_BURN_FIELD}", "ALL_TOUCHED=FALSE"])
            if gdal_failed(err):
                raise InputError(f"cannot rasterise the labels of {self.path}: {msg}")
        finally:
            layer.SetSpatialFilter(None)
        return dst.GetRasterBand(1).ReadAsArray().astype(np.uint16, copy=False)

    # -- common -----------------------------------------------------------------------------------
    def overlaps(self, grid: Any) -> bool:
        """Whether the labels' footprint (in the grid CRS) intersects the grid's."""
        b = self.bounds
        if self.kind == "vector" and (b[0] == b[2] or b[1] == b[3]):  # a single point or a line
            g = grid_bounds(grid)
            return g[0] <= b[2] and b[0] <= g[2] and g[1] <= b[3] and b[1] <= g[3]
        return _overlaps(b, grid_bounds(grid))

    def check_overlap(self, grid: Any) -> None:
        """Raise GridError when the labels do not overlap the grid at all."""
        if not self.overlaps(grid):
            b, g = self.bounds, grid_bounds(grid)
            what = "mask" if self.presence else "labels"
            raise GridError(
                f"the {what} {self.path} do not overlap the grid: {what} cover x {b[0]:.2f}..{b[2]:.2f}, "
                f"y {b[1]:.2f}..{b[3]:.2f}, the grid x {g[0]:.2f}..{g[2]:.2f}, y {g[1]:.2f}..{g[3]:.2f} "
                f"(in the grid's CRS); choose {what} of the same area"
            )

    def read(self, grid: Any) -> np.ndarray:
        """uint16 labels (height, width) on ``grid`` (same CRS as given at opening), 0 = unlabelled."""
        return self._read_raster(grid) if self.kind == "raster" else self._read_vector(grid)

    def classes_for(self, values: Iterable[int]) -> list[ClassInfo]:
        """ClassInfo for each of ``values`` (names from categories or the string field)."""
        wanted = sorted({int(v) for v in values if int(v) != 0})
        if self.kind == "raster":
            return classes_from_band(self._raster_ds().GetRasterBand(1), wanted)
        known = {c.value: c for c in self._vector_classes}
        return [known.get(v, ClassInfo(v, f"class {v}", default_color(i))) for i, v in enumerate(wanted)]

    @property
    def declared_classes(self) -> list[ClassInfo]:
        """Every class the vector field declares (whole layer, not just one window); [] for rasters."""
        return list(self._vector_classes)

    def _raster_ds(self) -> gdal.Dataset:
        """The open label raster (InputError when this source is a vector layer or was closed)."""
        if self._raster is None:
            raise InputError(f"the label raster {self.path} is not open (closed, or not a raster); open it again")
        return self._raster

    def _vector_layer(self) -> ogr.Layer:
        """The reprojected in-memory copy of the label layer (InputError when closed or a raster)."""
        if self._mem_layer is None:
            raise InputError(f"the label layer {self.path} is not open (closed, or not a vector layer); open it again")
        return self._mem_layer

    def close(self) -> None:
        self._raster = None
        self._vector = None
        self._mem_layer = None
        self._mem_ds = None

    def __enter__(self) -> "LabelSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_labels(path: str, grid: Any, field: Optional[str] = None) -> tuple[np.ndarray, list[ClassInfo]]:
    """Labels of a class raster or vector layer on ``grid``: (uint16 (H, W) array, classes found).

    ``grid`` is a :class:`core.engine.grid.Grid` (only ``crs_wkt``, ``transform``, ``width`` and
    ``height`` are used). ``field`` names the class field of a vector layer (ignored for rasters).
    Raises InputError (unreadable file, missing field (the message lists the fields), a field
    without usable values, no labelled pixel on the grid) or GridError (no overlap, CRS problems).
    """
    with LabelSource(path, grid.crs_wkt, field) as src:
        src.check_overlap(grid)
        labels = src.read(grid)
        values = present_values(labels)
        if not values:
            raise InputError(
                f"no labelled pixel of {path} falls on the grid (every pixel is 0/nodata there); "
                "check that the labels cover the image and, for points, that they fall inside it"
            )
        return labels, src.classes_for(values)


def labels_from_table(
    table: str | Path | Sequence[ClassInfo], found: Sequence[ClassInfo], by: str = "value"
) -> tuple[list[ClassInfo], dict[int, int]]:
    """Merge a class table (``core.classes.read_class_table``) with the classes found in labels.

    The table decides names, colours and the class list (sorted by value, classes the labels lack
    included: a table is a legend). ``by="value"`` matches label values to table values;
    ``by="name"`` matches names case-insensitively (for string-field labels whose 1..K values are
    arbitrary) and returns the value remapping to apply with :func:`apply_remap`.
    Returns (classes, remap {label value: table value}); raises InputError listing the label
    classes the table does not cover.
    """
    classes = read_class_table(table) if isinstance(table, (str, Path)) else list(table)
    if by == "value":
        known = {c.value for c in classes}
        missing = [f"{c.value} ({c.name})" for c in found if c.value not in known]
        remap = {c.value: c.value for c in found if c.value in known}
    elif by == "name":
        by_name = {c.name.strip().lower(): c.value for c in classes}
        missing = [c.name for c in found if c.name.strip().lower() not in by_name]
        remap = {c.value: by_name[c.name.strip().lower()] for c in found if c.name.strip().lower() in by_name}
    else:
        raise ValueError(f"by must be 'value' or 'name', not {by!r}")
    if missing:
        raise InputError(
            f"the labels hold classes the class table does not list: {', '.join(missing)}; "
            "add them to the table (value,name,#rrggbb) or remove them from the labels"
        )
    return sorted(classes, key=lambda c: c.value), remap


def apply_remap(labels: np.ndarray, remap: dict[int, int]) -> np.ndarray:
    """Replace label values through ``remap`` (0 stays 0; values not in ``remap`` become 0)."""
    lut = np.zeros(_MAX_VALUE + 1, dtype=np.uint16)
    for src, dst in remap.items():
        lut[int(src)] = int(dst)
    return lut[labels.astype(np.int64, copy=False)]
