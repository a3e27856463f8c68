"""Output files of a classification, written atomically and streamed in blocks.

* class raster: Byte (UInt16 when a class value exceeds 255), nodata 0, tiled DEFLATE GeoTIFF
  (``BIGTIFF=IF_SAFER``), with a GDAL colour table and category names (styled outside QGIS too)
  and a ``.qml`` sidecar (QGIS paletted renderer, written as plain XML: no qgis import here);
* optional confidence raster: Float32, the (blended) maximum softmax probability, nodata 0
  (a probability maximum is never 0, so 0 is unambiguous);
* optional polygons: GeoPackage from ``gdal.Polygonize`` (one feature per 4-connected region)
  with the class value and name.

Everything is written to hidden temporary files beside the targets and renamed only by
:meth:`OutputSet.commit`; :meth:`OutputSet.abort` (failure, cancel) removes them, so a failed
run leaves nothing at the output paths. Rows arrive in order (see ``core.inference.Sink``) and
are buffered to whole block rows (class index + confidence: 5 bytes a pixel), then written block
by block, each dropped from GDAL's cache at once, so memory stays bounded by one block row of
final values whatever the raster height.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .classes import ClassInfo
from .errors import OutputError
from .grid import Grid

BLOCK: int = 256
CONFIDENCE_NODATA: float = 0.0
CLASS_NODATA: int = 0
_TIFF_OPTS = ["TILED=YES", f"BLOCKXSIZE={BLOCK}", f"BLOCKYSIZE={BLOCK}", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER"]


def qml_text(classes: Sequence[ClassInfo]) -> str:
    """A QGIS paletted-renderer style (``.qml``) for the class raster: value, label, colour."""
    root = ET.Element("qgis", version="3.22.0", styleCategories="Symbology")
    pipe = ET.SubElement(root, "pipe")
    rr = ET.SubElement(pipe, "rasterrenderer", type="paletted", band="1", opacity="1", alphaBand="-1",
                       nodataColor="")
    ET.SubElement(rr, "rasterTransparency")
    mm = ET.SubElement(rr, "minMaxOrigin")
    for tag, text in (("limits", "None"), ("extent", "WholeRaster"), ("statAccuracy", "Estimated"),
                      ("cumulativeCutLower", "0.02"), ("cumulativeCutUpper", "0.98"), ("stdDevFactor", "2")):
        ET.SubElement(mm, tag).text = text
    pal = ET.SubElement(rr, "colorPalette")
    for c in classes:
        ET.SubElement(pal, "paletteEntry", value=str(c.value), color=c.color, alpha="255", label=c.name)
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    ET.SubElement(pipe, "huesaturation", saturation="0", grayscaleMode="0", colorizeOn="0", colorizeRed="255",
                  colorizeGreen="128", colorizeBlue="128", colorizeStrength="100", invertColors="0")
    ET.SubElement(pipe, "rasterresampler", maxOversampling="2")
    ET.SubElement(root, "blendMode").text = "0"
    ET.indent(root)
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + ET.tostring(root, encoding="unicode") + "\n"


def argmax_max(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(argmax, max) over axis 0 of (K, h, w), first index on ties like ``np.argmax``.

    A loop over the (few) classes on contiguous planes is several times faster than
    ``argmax(axis=0)``, whose reduction runs across planes.
    """
    best = probs[0].copy()
    idx = np.zeros(best.shape, np.uint8 if probs.shape[0] <= 256 else np.intp)
    for k in range(1, probs.shape[0]):
        better = probs[k] > best
        idx[better] = k
        np.maximum(best, probs[k], out=best)
    return idx, best


def _tmp_path(final: Path) -> Path:
    return final.with_name(f".{final.stem}.tmp{os.getpid()}{final.suffix}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output_paths(outputs: Sequence[Optional[str]], inputs: Sequence[str]) -> list[Optional[Path]]:
    """Refuse outputs that overwrite an input or each other, or whose folder is not writable."""
    paths = [Path(p) if p else None for p in outputs]
    given = [p for p in paths if p is not None]
    for p in given:
        for i in inputs:
            if _same_file(p, Path(i)):
                raise OutputError(f"the output {p} is an input of this run; choose another output path")
        if p.is_dir():
            raise OutputError(f"the output {p} is a folder; give a file name")
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise OutputError(f"the output folder {parent} does not exist; create it or choose another path")
        if not os.access(parent, os.W_OK):
            raise OutputError(f"the output folder {parent} is not writable; choose another path")
    for i, a in enumerate(given):
        for b in given[i + 1:]:
            if _same_file(a, b):
                raise OutputError(f"two outputs point to the same file {a}")
    return paths


class OutputSet:
    """The files of one classification run; stream rows in with :meth:`write`."""

    def __init__(self, grid: Grid, classes: Sequence[ClassInfo], output: str, confidence: Optional[str] = None,
                 vector: Optional[str] = None, inputs: Sequence[str] = ()) -> None:
        from osgeo import gdal

        self.grid, self.classes = grid, list(classes)
        out, conf, vec = check_output_paths([output, confidence, vector], inputs)
        assert out is not None
        self.final: dict[str, Path] = {"class": out, "qml": out.with_suffix(".qml")}
        if conf is not None:
            self.final["confidence"] = conf
        if vec is not None:
            self.final["vector"] = vec
        self.tmp = {k: _tmp_path(p) for k, p in self.final.items()}
        values = np.array([c.value for c in self.classes], np.int64)
        self.lut = values.astype(np.uint16 if values.max() > 255 else np.uint8)
        self.counts = np.zeros(len(self.classes), np.int64)
        self._row = 0  # next row expected
        self._buf_row0 = 0  # first row held in the block buffers
        self._buf_vals = np.zeros((min(BLOCK, grid.height), grid.width), self.lut.dtype)
        self._buf_conf = np.zeros((min(BLOCK, grid.height), grid.width), np.float32) if conf is not None else None
        self._ds: dict[str, Any] = {}
        drv = gdal.GetDriverByName("GTiff")
        # Category names live in GDAL's PAM side-car (.aux.xml): keep PAM on for our own outputs
        # even where the environment turns it off (e.g. to stop QGIS caching histograms beside
        # read-only inputs). Thread-local and restored in finish()/abort().
        self._pam_prev = gdal.GetThreadLocalConfigOption("GDAL_PAM_ENABLED", None)
        gdal.SetThreadLocalConfigOption("GDAL_PAM_ENABLED", "YES")
        try:
            dt = gdal.GDT_UInt16 if self.lut.dtype == np.uint16 else gdal.GDT_Byte
            self._ds["class"] = self._create(drv, "class", dt)
            band = self._ds["class"].GetRasterBand(1)
            band.SetNoDataValue(CLASS_NODATA)
            ct = gdal.ColorTable()
            ct.SetColorEntry(0, (0, 0, 0, 0))
            for c in self.classes:
                ct.SetColorEntry(int(c.value), (*c.rgb(), 255))
            band.SetRasterColorTable(ct)
            band.SetRasterColorInterpretation(gdal.GCI_PaletteIndex)
            names = [""] * (int(values.max()) + 1)
            names[0] = "nodata"
            for c in self.classes:
                names[int(c.value)] = c.name
            band.SetCategoryNames(names)
            if "confidence" in self.final:
                self._ds["confidence"] = self._create(drv, "confidence", gdal.GDT_Float32)
                b = self._ds["confidence"].GetRasterBand(1)
                b.SetNoDataValue(CONFIDENCE_NODATA)
                b.SetDescription("max softmax probability")
        except BaseException:
            self.abort()
            raise

    def _create(self, drv: Any, key: str, dtype: int) -> Any:
        from osgeo import gdal

        path = self.tmp[key]
        gdal.PushErrorHandler("CPLQuietErrorHandler")
        try:
            ds = drv.Create(str(path), self.grid.width, self.grid.height, 1, dtype, options=_TIFF_OPTS)
            msg = gdal.GetLastErrorMsg()
        finally:
            gdal.PopErrorHandler()
        if ds is None:
            raise OutputError(f"cannot create {self.final[key]}: {msg}; check the folder is writable and has space")
        ds.SetGeoTransform(self.grid.transform)
        if self.grid.crs_wkt:
            ds.SetProjection(self.grid.crs_wkt)
        return ds

    # --- streaming -----------------------------------------------------------------------
    def write(self, row0: int, probs: np.ndarray, valid: np.ndarray) -> None:
        """Take finished rows: probabilities (K, h, W) and validity (h, W), in row order.

        Rows are copied into one block row of buffers, written when it is full, then dropped
        from GDAL's cache, so memory does not grow with the raster.
        """
        if row0 != self._row:
            raise RuntimeError(f"rows must arrive in order: got {row0}, expected {self._row}")
        idx, best = argmax_max(probs)
        self.counts += np.bincount(idx[valid], minlength=len(self.classes))
        vals = self.lut[idx]
        vals[~valid] = CLASS_NODATA
        h = valid.shape[0]
        done = 0
        while done < h:
            at = self._row - self._buf_row0
            n = min(h - done, self._buf_vals.shape[0] - at)
            self._buf_vals[at:at + n] = vals[done:done + n]
            if self._buf_conf is not None:
                self._buf_conf[at:at + n] = np.where(valid[done:done + n], best[done:done + n], CONFIDENCE_NODATA)
            done += n
            self._row += n
            if self._row - self._buf_row0 == self._buf_vals.shape[0] or self._row == self.grid.height:
                self._write_buffer()

    def _write_buffer(self) -> None:
        """Write the buffered block row one block at a time, each flushed out of GDAL's cache.

        Writing the whole block row in one call would make GDAL hold a second, uncompressed copy
        of it (all its blocks, dirty in the block cache) until the flush; block by block, GDAL
        holds one block. The band's own flush encodes and writes its dirty block without
        touching the file's directory (the dataset flush would).
        """
        n = self._row - self._buf_row0
        bands = [(self._ds["class"].GetRasterBand(1), self._buf_vals)]
        if self._buf_conf is not None:
            bands.append((self._ds["confidence"].GetRasterBand(1), self._buf_conf))
        for c in range(0, self.grid.width, BLOCK):
            for band, buf in bands:
                band.WriteArray(buf[:n, c:c + BLOCK], c, self._buf_row0)
                band.FlushCache()
        self._buf_row0 = self._row

    # --- finishing -----------------------------------------------------------------------
    def finish(self) -> None:
        """Close rasters, write the style sidecar and the polygons (still at temporary paths)."""
        if self._row != self.grid.height:
            raise RuntimeError(f"only {self._row} of {self.grid.height} rows were written")
        for k in list(self._ds):
            self._ds[k].FlushCache()
            self._ds[k] = None
        self._ds.clear()
        self._restore_pam()
        self.tmp["qml"].write_text(qml_text(self.classes), encoding="utf-8")
        if "vector" in self.final:
            self._polygonize()

    def _polygonize(self) -> None:
        from osgeo import gdal, ogr

        src = gdal.Open(str(self.tmp["class"]))
        band = src.GetRasterBand(1)
        drv = ogr.GetDriverByName("GPKG")
        ds = drv.CreateDataSource(str(self.tmp["vector"]))
        if ds is None:
            raise OutputError(f"cannot create the GeoPackage {self.final['vector']}")
        srs = src.GetSpatialRef()
        name = self.final["vector"].stem
        layer = ds.CreateLayer(name, srs=srs, geom_type=ogr.wkbPolygon)
        layer.CreateField(ogr.FieldDefn("class", ogr.OFTInteger))
        fd = ogr.FieldDefn("name", ogr.OFTString)
        layer.CreateField(fd)
        if gdal.Polygonize(band, band.GetMaskBand(), layer, 0, [], callback=None) != 0:
            raise OutputError(f"polygonising the class raster failed: {gdal.GetLastErrorMsg()}")
        cases = " ".join(f"WHEN {int(c.value)} THEN '{c.name.replace(chr(39), chr(39) * 2)}'" for c in self.classes)
        ds.ExecuteSQL(f'UPDATE "{name}" SET name = CASE class {cases} END')
        ds = None
        src = None

    def commit(self) -> dict[str, str]:
        """Rename every temporary file onto its target; returns the final paths."""
        for k, tmp in self.tmp.items():
            final = self.final[k]
            os.replace(tmp, final)
            aux_tmp, aux_final = Path(str(tmp) + ".aux.xml"), Path(str(final) + ".aux.xml")
            if aux_tmp.exists():
                os.replace(aux_tmp, aux_final)
            elif aux_final.exists():
                aux_final.unlink()  # a stale side-car of an earlier file would mislabel this one
        return {k: str(v) for k, v in self.final.items()}

    def _restore_pam(self) -> None:
        from osgeo import gdal

        if hasattr(self, "_pam_prev"):
            gdal.SetThreadLocalConfigOption("GDAL_PAM_ENABLED", self._pam_prev)
            del self._pam_prev

    def abort(self) -> None:
        """Drop every temporary file (failed or cancelled run)."""
        self._ds.clear()
        self._restore_pam()
        for tmp in self.tmp.values():
            for p in (tmp, Path(str(tmp) + ".aux.xml"), Path(str(tmp) + "-wal"), Path(str(tmp) + "-shm"),
                      Path(str(tmp) + "-journal")):
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
