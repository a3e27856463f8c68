"""Aligned, windowed reading of N rasters on one output grid.

The output grid is input 1's grid (or the ``grid`` given). Every input i is read on the fly on
``grid.scaled(ratios[i])``:

* *direct* when its own grid already coincides with that grid (same CRS, same pixel size to
  within 1/1000 of a pixel over the whole raster, origin on a whole-pixel offset): a plain
  windowed read, no resampling at all;
* otherwise through an in-memory *warped VRT* (``gdal.Warp(format="VRT")``) defined on exactly the
  target grid: GDAL then warps only the blocks a window asks for. Nothing is resampled to disk
  and no input is ever read whole. This is what makes inputs whose pixel sizes differ by a hair
  (SpaceNet 6 RGB 4.49997 m vs SAR 4.49970 m) or that live in another CRS land on the output
  grid's pixels.

Nodata, whatever its form (a nodata value, NaN in a float raster, or a mask/alpha band), becomes
NaN in the float32 arrays returned, on all bands of the pixel. Window parts outside the grid are
filled by reflect-101 padding (the convention of the patch models' specs, e.g. DAS2F) or NaN.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import GridError, InputError
from .gdal_errors import gdal_call
from .grid import Grid, geotransform_of
from .value_checks import unusable_pixels

#: Largest misalignment, in target pixels over the whole raster, still read without resampling.
DIRECT_TOLERANCE_PX: float = 1e-3

_RESAMPLING = {"bilinear", "nearest", "cubic", "cubicspline", "lanczos", "average", "mode"}


def open_raster(path: str) -> Any:
    """Open a raster read-only; InputError with GDAL's reason when it cannot be read."""
    from osgeo import gdal

    ds, msg = gdal_call(gdal.Open, str(path), gdal.GA_ReadOnly)
    if ds is None:
        raise InputError(
            f"cannot read raster {path}: {msg or 'not a raster GDAL can open'}; "
            "check the path and that the file is a complete raster"
        )
    if ds.RasterCount == 0:
        raise InputError(f"{path} has no raster band (is it a vector file?)")
    return ds


def _same_crs(a: str, b: str) -> bool:
    from osgeo import osr

    if not a or not b:
        return not a and not b
    sa, sb = osr.SpatialReference(), osr.SpatialReference()
    sa.ImportFromWkt(a)
    sb.ImportFromWkt(b)
    return bool(sa.IsSame(sb))


def footprint_in(grid_crs: str, src: Grid, densify: int = 21) -> Optional[tuple[float, float, float, float]]:
    """Bounding box of ``src``'s footprint expressed in ``grid_crs`` (edges densified).

    None when the transformation fails everywhere (e.g. a footprint outside the target CRS domain).
    """
    from osgeo import osr

    x0, y0, x1, y1 = src.bounds
    t = np.linspace(0.0, 1.0, densify)
    xs = np.concatenate([x0 + (x1 - x0) * t, np.full(densify, x1), x1 - (x1 - x0) * t, np.full(densify, x0)])
    ys = np.concatenate([np.full(densify, y1), y1 - (y1 - y0) * t, np.full(densify, y0), y0 + (y1 - y0) * t])
    if _same_crs(src.crs_wkt, grid_crs):
        return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())
    s, d = osr.SpatialReference(), osr.SpatialReference()
    s.ImportFromWkt(src.crs_wkt)
    d.ImportFromWkt(grid_crs)
    for sr in (s, d):
        sr.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ct = osr.CoordinateTransformation(s, d)
    pts = []
    for x, y in zip(xs, ys):
        try:
            px, py, _ = ct.TransformPoint(float(x), float(y))
        except RuntimeError:
            continue
        if math.isfinite(px) and math.isfinite(py):
            pts.append((px, py))
    if not pts:
        return None
    a = np.asarray(pts)
    return float(a[:, 0].min()), float(a[:, 1].min()), float(a[:, 0].max()), float(a[:, 1].max())


def reflect101(idx: np.ndarray, size: int) -> np.ndarray:
    """Reflect-101 indices (…2 1 | 0 1 2 … n-1 | n-2 …) into ``[0, size)``."""
    if size == 1:
        return np.zeros_like(idx)
    period = 2 * (size - 1)
    m = np.mod(idx, period)
    return np.where(m >= size, period - m, m)


#: Rows per strip of the row cache when the input's own blocks are not a usable height.
STRIP_ROWS: int = 256


@dataclass
class _Source:
    """One input opened for reading on its target (possibly scaled) grid.

    With ``row_cache`` (readers that walk the grid in row order, like the inference prefetcher)
    whole-width strips of the input, aligned to its block rows, are read once in the file's own
    data type and kept while windows still need them (at most the strips under one row of
    windows): every block is decoded once and each window is a slice, instead of one GDAL call
    per window that decodes the blocks shared by two rows of windows twice.
    """

    path: str
    ds: Any  # the original dataset (direct) or the warped VRT
    src_ds: Any  # the original dataset (kept alive for the VRT)
    bands: int
    target: Grid
    row_off: int  # source pixel = target pixel + offset (direct reads)
    col_off: int
    warped: bool
    nodata: list[Optional[float]]
    mask_band: Any  # per-dataset mask/alpha band to honour on direct reads, or None
    row_cache: bool = False
    strips: dict = field(default_factory=dict)  # strip index -> (data, mask or None)

    def __post_init__(self) -> None:
        from osgeo import gdal, gdal_array

        #: whether a window can contain nodata at all (False spares the NaN passes)
        band = self.ds.GetRasterBand(1)
        self.may_have_nodata = bool(
            self.warped or self.mask_band is not None or any(n is not None for n in self.nodata)
            or band.DataType in (gdal.GDT_Float32, gdal.GDT_Float64)
        )
        #: numpy type of the windows read with ``native=True`` (the file's own type)
        self.dtype = np.dtype(gdal_array.GDALTypeCodeToNumericTypeCode(band.DataType))
        bh = band.GetBlockSize()[1]
        if 32 <= bh <= 2 * STRIP_ROWS:
            self.strip_rows = bh
        elif bh < 32:
            self.strip_rows = max(bh, STRIP_ROWS // bh * bh)
        else:  # huge blocks: strips of STRIP_ROWS, GDAL keeps the block until its last strip is read
            self.strip_rows = STRIP_ROWS
        self.block_rows = max(bh, 1)
        # source columns that the target grid can ask for (strips are cut to them)
        self.col_lo = max(self.col_off, 0)
        self.col_hi = min(self.col_off + self.target.width, self.ds.RasterXSize)

    def _gdal_read(self, a0: int, a1: int, b0: int, b1: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        data, msg = gdal_call(self.ds.ReadAsArray, b0, a0, b1 - b0, a1 - a0)
        if data is None:
            raise InputError(f"reading {self.path} failed at pixels ({a0}, {b0}): {msg}; "
                             "the file may be truncated or corrupted")
        data = data.reshape(self.bands, a1 - a0, b1 - b0)
        mask = None
        if self.mask_band is not None:
            mask, msg = gdal_call(self.mask_band.ReadAsArray, b0, a0, b1 - b0, a1 - a0)
            if mask is None:
                raise InputError(f"reading the mask of {self.path} failed at pixels ({a0}, {b0}): {msg}")
        return data, mask

    def _strip(self, k: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        got = self.strips.get(k)
        if got is None:
            a0 = k * self.strip_rows
            a1 = min(a0 + self.strip_rows, self.ds.RasterYSize)
            got = self._gdal_read(a0, a1, self.col_lo, self.col_hi)
            self.strips[k] = got
            if a1 % self.block_rows == 0 or a1 == self.ds.RasterYSize:
                self.flush_gdal()  # the block row is complete in our strips: GDAL's copy is not needed
        return got

    def _native(self, a0: int, a1: int, b0: int, b1: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Source pixels [a0, a1) x [b0, b1) in the file's data type (+ mask band values)."""
        if not self.row_cache or b0 < self.col_lo or b1 > self.col_hi:
            return self._gdal_read(a0, a1, b0, b1)
        sr = self.strip_rows
        k0, k1 = a0 // sr, (a1 - 1) // sr
        for k in [k for k in self.strips if k < k0]:  # rows are read in order: strips above are done
            del self.strips[k]
        parts = []
        for k in range(k0, k1 + 1):
            data, mask = self._strip(k)
            r0, r1 = max(a0, k * sr) - k * sr, min(a1, (k + 1) * sr) - k * sr
            c0, c1 = b0 - self.col_lo, b1 - self.col_lo
            parts.append((data[:, r0:r1, c0:c1], None if mask is None else mask[r0:r1, c0:c1]))
        if len(parts) == 1:
            return parts[0]
        data = np.concatenate([p[0] for p in parts], axis=1)
        mask = None if parts[0][1] is None else np.concatenate([p[1] for p in parts], axis=0)
        return data, mask

    def read(self, r0: int, r1: int, c0: int, c1: int, out: Optional[np.ndarray] = None,
             native: bool = False) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Target grid window [r0, r1) x [c0, c1) as (C, h, w) plus its nodata mask.

        The mask (h, w) is True where the pixel is nodata on any band, or None when the window
        has none; parts of the window outside the input are nodata. As float32 (default) nodata
        pixels are NaN on all bands; with ``native`` the window keeps the file's data type
        (:attr:`dtype`) and nodata pixels hold 0 or whatever the file has: only the mask tells.
        out: an array of that shape and type to fill instead of a new one.
        """
        sr0, sc0 = r0 + self.row_off, c0 + self.col_off
        H, W = self.ds.RasterYSize, self.ds.RasterXSize
        a0, a1 = max(sr0, 0), min(sr0 + (r1 - r0), H)
        b0, b1 = max(sc0, 0), min(sc0 + (c1 - c0), W)
        inside = a0 == sr0 and a1 == sr0 + (r1 - r0) and b0 == sc0 and b1 == sc0 + (c1 - c0)
        if out is None:
            out = np.empty((self.bands, r1 - r0, c1 - c0), self.dtype if native else np.float32)
        fill = 0 if native else np.nan
        if a1 <= a0 or b1 <= b0:
            out.fill(fill)
            return out, np.ones((r1 - r0, c1 - c0), bool)
        data, mask = self._native(a0, a1, b0, b1)
        invalid = None
        if self.may_have_nodata:
            if data.dtype.kind == "f":  # NaN, ±Inf and undeclared fill values such as -3.4e38
                invalid = unusable_pixels(data)
            for i, nd in enumerate(self.nodata):
                if nd is not None and not math.isnan(nd):
                    hit = data[i] == (data.dtype.type(nd) if data.dtype.kind == "f" else nd)
                    invalid = hit if invalid is None else invalid | hit
            if mask is not None:
                invalid = (mask == 0) if invalid is None else invalid | (mask == 0)
            if invalid is not None and not invalid.any():
                invalid = None
        if inside:
            np.copyto(out, data, casting="unsafe")
            if invalid is not None and not native:
                out[:, invalid] = np.nan
            return out, invalid
        out.fill(fill)
        full = np.ones((r1 - r0, c1 - c0), bool)
        rs, cs = slice(a0 - sr0, a1 - sr0), slice(b0 - sc0, b1 - sc0)
        np.copyto(out[:, rs, cs], data, casting="unsafe")
        full[rs, cs] = False if invalid is None else invalid
        if invalid is not None and not native:
            out[:, full] = np.nan
        return out, full

    def flush_gdal(self) -> None:
        self.ds.FlushCache()
        if self.warped:
            self.src_ds.FlushCache()


class AlignedReader:
    """Read windows of N inputs aligned on one output grid (see the module docstring).

    paths: input rasters in model order. ratios: grid ratio of each input (default all 1;
    input i is read on ``grid.scaled(ratios[i])``). grid: output grid (default: input 1's).
    resampling: GDAL resampling for warped inputs (``bilinear`` for continuous data,
    ``nearest`` for labels). row_cache: the caller reads windows in row order (top to bottom):
    keep whole-width strips of each input while windows still need them (see ``_Source``);
    memory is then a few strips of each input, proportional to the raster width.
    """

    def __init__(
        self,
        paths: Sequence[str],
        ratios: Optional[Sequence[int]] = None,
        grid: Optional[Grid] = None,
        resampling: str = "bilinear",
        row_cache: bool = False,
    ) -> None:
        if not paths:
            raise InputError("no input raster given")
        if resampling not in _RESAMPLING:
            raise InputError(f"unknown resampling {resampling!r}; use one of {', '.join(sorted(_RESAMPLING))}")
        self.paths = [str(p) for p in paths]
        self.ratios = [int(r) for r in (ratios if ratios is not None else [1] * len(self.paths))]
        if len(self.ratios) != len(self.paths):
            raise ValueError(f"{len(self.ratios)} grid ratios for {len(self.paths)} inputs")
        self.resampling = resampling
        self.row_cache = row_cache
        self._datasets = [open_raster(p) for p in self.paths]
        #: each input's own grid
        self._own = [Grid(d.GetProjection() or "", geotransform_of(d), d.RasterXSize, d.RasterYSize)
                     for d in self._datasets]
        if grid is None:
            if self.ratios[0] != 1:
                raise ValueError("input 1 defines the output grid, so its grid ratio must be 1")
            grid = self._own[0]
        self._sources: list[_Source] = []
        self.regrid(grid)
        self.band_counts: list[int] = [s.bands for s in self._sources]

    def regrid(self, grid: Grid, row_cache: Optional[bool] = None) -> None:
        """Read on ``grid`` from now on (e.g. the output grid cut to an extent or a mask), with
        the files already open: the grid is checked (north-up, CRS, every input overlapping it)
        and each input placed on it again, as a new reader on ``grid`` would do, without opening
        the files a second time. row_cache: switch the row cache on or off (None: unchanged)."""
        grid.check_north_up(f"the output grid (from {self.paths[0]})")
        before = (getattr(self, "grid", None), self.row_cache)
        self.grid: Grid = grid
        if row_cache is not None:
            self.row_cache = bool(row_cache)
        try:
            self._check_crs(self._own)
            self._sources = [self._open(i, d, g) for i, (d, g) in enumerate(zip(self._datasets, self._own))]
        except BaseException:  # the reader stays on its previous grid
            self.grid, self.row_cache = before
            raise

    # --- set-up ------------------------------------------------------------------------
    def _check_crs(self, grids: list[Grid]) -> None:
        have = [bool(g.crs_wkt) for g in grids]
        if self.grid.crs_wkt and not all(have) or not self.grid.crs_wkt and any(have):
            missing = [self.paths[i] for i, h in enumerate(have) if not h]
            raise GridError(
                f"{', '.join(missing)} has no coordinate reference system while the other input(s) do; "
                "assign one (Assign Projection / gdal_edit.py -a_srs) so the inputs can be aligned"
            )

    def _open(self, i: int, ds: Any, own: Grid) -> _Source:
        from osgeo import gdal

        target = self.grid.scaled(self.ratios[i])
        path = self.paths[i]
        bands = ds.RasterCount
        b1 = ds.GetRasterBand(1)
        nodata = [ds.GetRasterBand(b + 1).GetNoDataValue() for b in range(bands)]
        flags = b1.GetMaskFlags()
        mask_band = b1.GetMaskBand() if flags & (gdal.GMF_PER_DATASET | gdal.GMF_ALPHA) and not flags & gdal.GMF_NODATA \
            else None
        # overlap check (in the output CRS)
        if target.crs_wkt:
            fp = footprint_in(target.crs_wkt, own)
            gx0, gy0, gx1, gy1 = target.bounds
            if fp is None or fp[2] <= gx0 or fp[0] >= gx1 or fp[3] <= gy0 or fp[1] >= gy1:
                raise GridError(
                    f"input {i + 1} ({path}) does not overlap the output grid (input 1 / extent); "
                    "check that the inputs cover the same area and carry the right CRS"
                )
        aligned = self._direct_offsets(own, target)
        if aligned is not None:
            return _Source(path, ds, ds, bands, target, aligned[0], aligned[1], False, nodata, mask_band,
                           self.row_cache)
        if not target.crs_wkt:
            raise GridError(
                f"input {i + 1} ({path}) is not on input 1's pixel grid and the inputs have no CRS, "
                "so it cannot be resampled; give both a CRS or bring them to one grid"
            )
        x0, y0, x1, y1 = target.bounds
        src_nodata = None
        if all(n is None for n in nodata) and b1.DataType in (gdal.GDT_Float32, gdal.GDT_Float64):
            src_nodata = "nan"
        opts = gdal.WarpOptions(
            format="VRT", outputBounds=(x0, y0, x1, y1), width=target.width, height=target.height,
            dstSRS=target.crs_wkt, resampleAlg=self.resampling, outputType=gdal.GDT_Float32,
            srcNodata=src_nodata, dstNodata="nan", multithread=False,
        )
        vrt, msg = gdal_call(gdal.Warp, "", ds, options=opts)
        if vrt is None:
            raise GridError(f"input {i + 1} ({path}) cannot be warped onto the output grid: {msg}")
        return _Source(path, vrt, ds, bands, target, 0, 0, True, [None] * bands, None, self.row_cache)

    @staticmethod
    def _direct_offsets(own: Grid, target: Grid) -> Optional[tuple[int, int]]:
        """(row, col) offset of ``target`` in ``own``'s pixels if the grids coincide, else None."""
        if not _same_crs(own.crs_wkt, target.crs_wkt):
            return None
        if own.transform[2] != 0.0 or own.transform[4] != 0.0:
            return None
        n = max(own.width, own.height, target.width, target.height)
        tdx, tdy = target.transform[1], target.transform[5]
        if abs(own.transform[1] - tdx) * n > DIRECT_TOLERANCE_PX * abs(tdx):
            return None
        if abs(own.transform[5] - tdy) * n > DIRECT_TOLERANCE_PX * abs(tdy):
            return None
        col = (target.transform[0] - own.transform[0]) / tdx
        row = (target.transform[3] - own.transform[3]) / tdy
        if abs(col - round(col)) > DIRECT_TOLERANCE_PX or abs(row - round(row)) > DIRECT_TOLERANCE_PX:
            return None
        return int(round(row)), int(round(col))

    # --- reading -----------------------------------------------------------------------
    def dtypes(self, native: bool = True) -> list[np.dtype]:
        """numpy type of each input's windows (``native``: the files' own types, else float32)."""
        return [s.dtype if native else np.dtype(np.float32) for s in self._sources]

    def read(
        self, row0: int, col0: int, rows: int, cols: int, halo: int = 0, pad: str = "reflect",
        out: Optional[Sequence[np.ndarray]] = None, native: bool = False,
        masks: Optional[list] = None,
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Read the window (row0, col0, rows, cols) of the output grid plus ``halo`` on every side.

        Returns one float32 array per input, shape (C_i, r_i*(rows+2*halo), r_i*(cols+2*halo)),
        NaN where the input is nodata, and the (rows, cols) bool validity mask of the core window
        (True where every input is valid and the pixel lies inside the grid). The window may
        extend past the grid: those parts are reflect-101 padded (``pad="reflect"``) or NaN.
        out: arrays of those shapes to fill (e.g. slots of a batch) instead of new ones.
        native: keep each file's data type (:meth:`dtypes`); nodata pixels then hold arbitrary
        values and only ``masks`` tells them: a list that receives, per input, the (h_i, w_i)
        nodata mask of the whole window (None where the window has no nodata).
        """
        if pad not in ("reflect", "nan"):
            raise ValueError(f"pad must be 'reflect' or 'nan', got {pad!r}")
        arrays = []
        valid = np.ones((rows, cols), bool)
        if row0 < 0 or col0 < 0 or row0 + rows > self.grid.height or col0 + cols > self.grid.width:
            r_in = np.arange(row0, row0 + rows)
            c_in = np.arange(col0, col0 + cols)
            valid &= ((r_in >= 0) & (r_in < self.grid.height))[:, None]
            valid &= ((c_in >= 0) & (c_in < self.grid.width))[None, :]
        for i, (src, k) in enumerate(zip(self._sources, self.ratios)):
            a, bad = self._read_source(src, k * (row0 - halo), k * (col0 - halo),
                                       k * (rows + 2 * halo), k * (cols + 2 * halo), pad,
                                       None if out is None else out[i], native)
            if masks is not None:
                masks.append(bad)
            if bad is not None:
                core = bad[k * halo:k * (halo + rows), k * halo:k * (halo + cols)]
                if k > 1:
                    core = core.reshape(rows, k, cols, k).any(axis=(1, 3))
                valid &= ~core
            arrays.append(a)
        return arrays, valid

    @staticmethod
    def _read_source(src: _Source, r0: int, c0: int, rows: int, cols: int, pad: str,
                     out: Optional[np.ndarray], native: bool = False) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """The window of one input (float32, NaN = nodata; or native) and its nodata mask (None: none)."""
        H, W = src.target.height, src.target.width
        if r0 >= 0 and c0 >= 0 and r0 + rows <= H and c0 + cols <= W:
            return src.read(r0, r0 + rows, c0, c0 + cols, out, native)
        ri, ci = np.arange(r0, r0 + rows), np.arange(c0, c0 + cols)
        if pad == "reflect":
            rm, cm = reflect101(ri, H), reflect101(ci, W)
        else:
            rm, cm = np.clip(ri, 0, H - 1), np.clip(ci, 0, W - 1)
        a0, a1, b0, b1 = int(rm.min()), int(rm.max()) + 1, int(cm.min()), int(cm.max()) + 1
        block, bad = src.read(a0, a1, b0, b1, native=native)
        res = block[:, rm - a0][:, :, cm - b0]
        bad = None if bad is None else bad[rm - a0][:, cm - b0]
        if pad == "nan":
            outside = ((ri < 0) | (ri >= H))[:, None] | ((ci < 0) | (ci >= W))[None, :]
            res[:, outside] = 0 if native else np.nan
            bad = outside if bad is None else bad | outside
        if out is None:
            return res, bad
        np.copyto(out, res)
        return out, bad

    def release_cache(self) -> None:
        """Drop the blocks this reader's datasets hold in GDAL's block cache, and the strips of
        its row cache.

        GDAL keeps every block read (decoded) until its global cache is full, so a reader that
        walks a large raster would otherwise hold up to ``GDAL_CACHEMAX`` of it. Callers call this
        when they will not read the rows read so far again (the inference reader: after its last
        window, while the files stay open until the run ends). Only this reader's own handles are
        flushed; other users of the same files are not affected. Windows can still be read
        afterwards.
        """
        for src in self._sources:
            src.strips.clear()
            src.flush_gdal()

    # --- context manager ---------------------------------------------------------------
    def close(self) -> None:
        self._sources = []
        self._datasets = []

    def __enter__(self) -> "AlignedReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
