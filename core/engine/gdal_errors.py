"""GDAL failures seen one way, whether or not GDAL's Python exceptions are turned on.

GDAL's Python bindings report a failed call in one of two ways: with exceptions off (the GDAL 3
default, QGIS 3.22) the call returns None or an error code and the reason waits in
``gdal.GetLastErrorMsg()``; after ``gdal.UseExceptions()`` (which QGIS 3.44 calls, and which is
GDAL 4's default) the same call raises ``RuntimeError`` instead. The core must give an analyst the
same actionable message in both worlds, so every GDAL call whose failure the core reports goes
through :func:`gdal_call`, which folds the exception form back into the return form.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, TypeVar

T = TypeVar("T")


def gdal_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[Optional[T], str]:
    """``fn(*args, **kwargs)`` with GDAL's messages kept quiet; returns (result, GDAL's last error).

    The result is None when GDAL raised (exceptions on) or returned None (exceptions off); an error
    code (``RasterizeLayer``, ``Polygonize``) comes back as returned. The message is GDAL's reason
    for the failure, or "" when GDAL gave none.
    """
    from osgeo import gdal

    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        gdal.ErrorReset()
        try:
            result = fn(*args, **kwargs)
        except RuntimeError as exc:  # gdal.UseExceptions() is on
            return None, str(exc) or gdal.GetLastErrorMsg()
        return result, gdal.GetLastErrorMsg()
    finally:
        gdal.PopErrorHandler()


def gdal_failed(result: Any) -> bool:
    """True for what a failed GDAL call returns: None, or a non-zero CPLErr code."""
    return result is None or (isinstance(result, int) and not isinstance(result, bool) and result != 0)
