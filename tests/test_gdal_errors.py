"""A bad file gives mmlc's message whether or not GDAL's Python exceptions are on.

QGIS 3.44 (and GDAL 4 by default) turn ``gdal.UseExceptions()`` on; QGIS 3.22 leaves them off.
Every test here runs in both worlds, on whichever GDAL this machine has.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mmlc.core.data.labels import read_labels
from mmlc.core.engine.gdal_errors import gdal_call, gdal_failed
from mmlc.core.engine.grid import Grid
from mmlc.core.engine.io import AlignedReader, open_raster
from mmlc.core.errors import InputError
from osgeo import gdal, ogr, osr

_MODULES = (gdal, ogr, osr)


def _set_exceptions(wanted: list[bool]) -> None:
    """GDAL keeps one stack of error handlers for the three modules: switch off from the top down,
    then on from the bottom up, and only those that change."""
    for m, on in reversed(list(zip(_MODULES, wanted))):
        if not on and m.GetUseExceptions():
            m.DontUseExceptions()
    for m, on in zip(_MODULES, wanted):
        if on and not m.GetUseExceptions():
            m.UseExceptions()


@pytest.fixture(params=[False, True], ids=["exceptions-off", "exceptions-on"])
def gdal_exceptions(request) -> bool:
    """GDAL, OGR and OSR exceptions set as the parameter says, restored afterwards."""
    before = [bool(m.GetUseExceptions()) for m in _MODULES]
    _set_exceptions([request.param] * len(_MODULES))
    yield request.param
    _set_exceptions(before)


@pytest.fixture
def junk(tmp_path: Path) -> Path:
    path = tmp_path / "junk.tif"
    path.write_bytes(b"this is not a raster at all")
    return path


@pytest.fixture
def truncated(tmp_path: Path, spacenet6: Path) -> Path:
    """A deflate TIFF whose header is intact but whose pixel strips stop half-way."""
    raw = (spacenet6 / "ms1_2m_uint16.tif").read_bytes()
    path = tmp_path / "truncated.tif"
    path.write_bytes(raw[: len(raw) // 2])
    return path


def test_gdal_call_returns_none_and_the_reason_in_both_modes(gdal_exceptions: bool, junk: Path) -> None:
    ds, msg = gdal_call(gdal.Open, str(junk))
    assert ds is None
    assert "not recognized as" in msg and "supported file format" in msg  # GDAL 3.10 adds "being in a"
    assert gdal.GetUseExceptions() == int(gdal_exceptions)  # the caller's setting is left alone
    ok, msg = gdal_call(gdal.Open, str(Path(__file__).parent.parent / "resources" / "sample_data" / "share_alike"
                                       / "spacenet6" / "ms1_2m_uint16.tif"))
    assert ok is not None and ok.RasterCount == 4 and msg == ""


def test_gdal_failed_reads_codes_and_objects() -> None:
    assert gdal_failed(None) and gdal_failed(3)
    assert not gdal_failed(0) and not gdal_failed(object())


def test_unreadable_raster_is_an_input_error(gdal_exceptions: bool, junk: Path, spacenet6: Path) -> None:
    with pytest.raises(InputError, match=r"(?s)cannot read raster .*junk.tif: .*not recognized"):
        open_raster(str(junk))
    with pytest.raises(InputError, match="cannot read raster"):
        Grid.from_path(str(junk))
    with pytest.raises(InputError, match="cannot read raster"):
        AlignedReader([str(spacenet6 / "ms1_2m_uint16.tif"), str(junk)])
    with pytest.raises(InputError, match="cannot read raster .*missing.tif"):
        open_raster(str(junk.parent / "missing.tif"))


def test_truncated_raster_fails_on_read_with_the_file_named(gdal_exceptions: bool, truncated: Path) -> None:
    reader = AlignedReader([str(truncated)])
    with pytest.raises(InputError, match=r"(?s)reading .*truncated.tif failed at pixels .*truncated or corrupted"):
        reader.read(0, 0, reader.grid.height, reader.grid.width)


def test_unreadable_labels_are_an_input_error(gdal_exceptions: bool, junk: Path, spacenet6: Path) -> None:
    grid = Grid.from_path(str(spacenet6 / "ms1_2m_uint16.tif"))
    with pytest.raises(InputError, match="cannot open .*junk.tif"):
        read_labels(str(junk), grid)


def test_good_raster_reads_the_same_in_both_modes(gdal_exceptions: bool, spacenet6: Path) -> None:
    path = spacenet6 / "ms1_2m_uint16.tif"
    reader = AlignedReader([str(path)])
    (window,), valid = reader.read(10, 20, 30, 40)
    expected = gdal.Open(str(path)).ReadAsArray(20, 10, 40, 30).astype(np.float32)
    np.testing.assert_array_equal(np.nan_to_num(window, nan=0.0), expected)
    assert valid.shape == (30, 40)
