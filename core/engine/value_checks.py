"""Values that must not reach a network silently: fill values, non-finite data, wrong data types.

* :data:`ABSURD_ABS` / :func:`unusable_pixels`: in float bands, NaN, ±Inf and magnitudes above
  1e30 (e.g. -3.4e38, the Float32 minimum many tools write as an undeclared fill value) are no
  measurement: the reader treats them as nodata, like a declared nodata value.
* :func:`input_profile` records, at training time, the data type and value range of each input
  in the model card; :func:`type_mismatch` tells classify when an input's data type clearly
  differs from the one the model was trained on (a Byte stretch given to a UInt16-trained
  model gives another map without any error).
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np

#: Float magnitudes above this are fill values, not measurements (no sensor or index comes close).
ABSURD_ABS: float = 1e30


def unusable_pixels(data: np.ndarray) -> np.ndarray:
    """(h, w) bool: pixels of a float (C, h, w) window where any band is NaN, ±Inf or beyond
    ±:data:`ABSURD_ABS` (one pass: ``|v| <= 1e30`` is False for NaN)."""
    return ~(np.abs(data) <= ABSURD_ABS).all(axis=0)


def input_profile(dtype_name: str, arrays: Iterable[np.ndarray]) -> tuple[str, list[float]]:
    """(data type, [min, max] of the finite values) of one input over the training scenes."""
    lo, hi = np.inf, -np.inf
    for a in arrays:
        a = np.asarray(a)
        finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a.reshape(-1)
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    return dtype_name, ([lo, hi] if np.isfinite(lo) else [])


def _kind_size(name: str) -> Optional[tuple[str, int]]:
    try:
        dt = np.dtype(name)
    except TypeError:
        return None
    return ("f" if dt.kind == "f" else "i"), dt.itemsize


def type_mismatch(trained: str, value_range: Sequence[float], given: str) -> Optional[str]:
    """Why data of type ``given`` clearly does not fit a model trained on ``trained`` data, or
    None: integer types of another width (Byte vs UInt16), integer vs float. Signedness alone
    (Int16 vs UInt16) and float widths are not flagged: they usually hold the same values."""
    if not trained or not given:
        return None
    a, b = _kind_size(trained), _kind_size(given)
    if a is None or b is None or a == b:
        return None
    if a[0] == "f" and b[0] == "f":
        return None
    rng = f" (values {value_range[0]:g}..{value_range[1]:g})" if len(value_range) == 2 else ""
    return f"it is {given} but the model was trained on {trained} data{rng}"


def raster_dtype(path: str) -> str:
    """numpy name of band 1's data type of a raster ("" if it cannot be opened)."""
    from osgeo import gdal, gdal_array

    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        ds = gdal.Open(str(path))
    finally:
        gdal.PopErrorHandler()
    if ds is None or ds.RasterCount < 1:
        return ""
    code = gdal_array.GDALTypeCodeToNumericTypeCode(ds.GetRasterBand(1).DataType)
    return np.dtype(code).name if code is not None else ""
