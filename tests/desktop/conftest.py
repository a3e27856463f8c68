"""Runs the real QGIS desktop once per test session, as an analyst would use mmlc.

``qgis`` (the GUI binary, not offscreen) starts under its own Xvfb server (``-displayfd``: a free
display, so parallel runs do not clash) with a private profile in which mmlc is enabled, and runs
``qgis_driver.py`` (``--code``). The driver opens every mmlc dialog with every kind of layer its
inputs accept, fills it, runs it from the dialog, and writes ``results.json`` and screenshots to
``build/desktop-screenshots/`` (kept out of git). The tests in this folder assert on that record.

Inputs are small crops of the shipped BigEarthNet pair (48 x 48 pixels) written to a scratch
folder, with a polygon and a point layer derived from the crop's labels, and the shipped Modeler
model in the profile's models folder (as "Add model to Toolbox" puts it), so the whole run (three
trainings, a distillation, classify, two evaluations, the Modeler chain) stays within minutes.
"""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SCREENSHOTS = ROOT / "build" / "desktop-screenshots"
PAIR = "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48_"
CROP = (0, 0, 48, 48)  # xoff, yoff, width, height: all four weak-label classes but water occur
QGIS_TIMEOUT_S = 600
MODEL3 = ROOT / "resources" / "modeler" / "mmlc_train_classify_evaluate.model3"


@dataclass
class DesktopRun:
    returncode: int
    seconds: float
    results: dict
    out: Path
    data: Path
    stderr: str


def _crop_inputs(data: Path) -> None:
    """48 x 48 crops of the S2/S1/label rasters and vector labels derived from the label crop."""
    from osgeo import gdal, ogr, osr

    src = ROOT / "resources" / "sample_data" / "bigearthnet"
    for kind, name in (("s2_10band_10m", "optical.tif"), ("s1_vv_vh_db", "sar.tif"),
                       ("weak_label_s2rules", "labels.tif")):
        gdal.Translate(str(data / name), str(src / f"{PAIR}_{kind}.tif"), srcWin=list(CROP))
    shutil.copy(ROOT / "resources" / "models" / "classes_bigearthnet_weak.csv", data / "classes.csv")
    labels = gdal.Open(str(data / "labels.tif"))
    srs = osr.SpatialReference(wkt=labels.GetProjection())
    drv = ogr.GetDriverByName("GPKG")
    polys = drv.CreateDataSource(str(data / "label_polygons.gpkg"))
    layer = polys.CreateLayer("label_polygons", srs=srs, geom_type=ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class", ogr.OFTInteger))
    band = labels.GetRasterBand(1)
    gdal.Polygonize(band, band, layer, 0)  # the band as its own mask: unlabelled 0 left out
    polys = None
    gt, arr = labels.GetGeoTransform(), band.ReadAsArray()
    pts = drv.CreateDataSource(str(data / "label_points.gpkg"))
    layer = pts.CreateLayer("label_points", srs=srs, geom_type=ogr.wkbPoint)
    layer.CreateField(ogr.FieldDefn("class", ogr.OFTInteger))
    for row in range(1, arr.shape[0], 4):
        for col in range(1, arr.shape[1], 4):
            if arr[row, col]:
                f = ogr.Feature(layer.GetLayerDefn())
                f.SetField("class", int(arr[row, col]))
                p = ogr.Geometry(ogr.wkbPoint)
                p.AddPoint_2D(gt[0] + (col + 0.5) * gt[1], gt[3] + (row + 0.5) * gt[5])
                f.SetGeometry(p)
                layer.CreateFeature(f)
    pts = None


def _profile(root: Path) -> Path:
    """A private QGIS profile with mmlc enabled and no first-run questions."""
    ini = root / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True, exist_ok=True)
    ini.write_text("[PythonPlugins]\nmmlc=true\n\n"
                   "[qgis]\ncheckVersion=false\nshowTips=false\nallowVersionCheck=false\n"
                   "warnOldProjectVersion=false\naskToSaveProjectChanges=false\n\n"
                   "[core]\nNewsFeed\\httpsfeedqgisorg\\disabled=true\n\n"
                   "[Processing]\nConfiguration\\WARN_UNMATCHING_CRS=false\n")
    models = root / "profiles" / "default" / "processing" / "models"  # the Toolbox's Models provider
    models.mkdir(parents=True)
    shutil.copy(MODEL3, models / MODEL3.name)
    return root


def _start_xvfb() -> tuple[subprocess.Popen, str]:
    """Xvfb on the first free display (it writes the number it took to a pipe)."""
    xvfb = shutil.which("Xvfb")
    if not xvfb:
        pytest.fail("Xvfb is not installed (apt-get install xvfb; `make setup` does it)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen([xvfb, "-displayfd", str(write_fd), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    number = b""
    deadline = time.time() + 30
    while not number.endswith(b"\n") and time.time() < deadline:
        chunk = os.read(read_fd, 16)
        if not chunk:
            break
        number += chunk
    os.close(read_fd)
    if not number.strip():
        proc.kill()
        pytest.fail("Xvfb did not start")
    return proc, f":{number.decode().strip()}"


@pytest.fixture(scope="session")
def desktop(tmp_path_factory) -> DesktopRun:
    qgis = shutil.which("qgis")
    if not qgis:
        pytest.fail("the QGIS desktop (`qgis`) is not installed (`make setup` installs it)")
    work = tmp_path_factory.mktemp("desktop")
    data = work / "data"
    data.mkdir()
    _crop_inputs(data)
    profile = _profile(work / "profile")
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    SCREENSHOTS.mkdir(parents=True)
    xvfb, display = _start_xvfb()
    site_dirs = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    env = dict(os.environ)
    env.pop("QT_QPA_PLATFORM", None)  # the real xcb desktop on Xvfb, not offscreen
    env.update(
        DISPLAY=display, QT_QPA_PLATFORM="xcb", QGIS_CUSTOM_CONFIG_PATH=str(profile),
        QGIS_PLUGINPATH=str(ROOT / "build" / "pkg"), GDAL_PAM_ENABLED="NO",
        PYTHONPATH=os.pathsep.join([str(ROOT / "build" / "pkg"), *dict.fromkeys(site_dirs)]),
        OMP_NUM_THREADS="1", MMLC_DESKTOP_OUT=str(SCREENSHOTS), MMLC_DESKTOP_DATA=str(data),
        MMLC_DESKTOP_MODEL=str(MODEL3),
        XDG_RUNTIME_DIR=str(work),
    )
    start = time.time()
    try:
        proc = subprocess.run([qgis, "--nologo", "--noversioncheck", "--code", str(HERE / "qgis_driver.py")],
                              env=env, cwd=work, capture_output=True, text=True, timeout=QGIS_TIMEOUT_S)
        rc, stderr = proc.returncode, proc.stdout[-5000:] + proc.stderr[-8000:]
    except subprocess.TimeoutExpired as e:
        rc, stderr = -9, f"QGIS did not finish in {QGIS_TIMEOUT_S} s: {(e.stderr or b'')[-4000:]!r}"
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=30)
    seconds = time.time() - start
    (SCREENSHOTS / "qgis-output.txt").write_text(stderr)
    results_file = SCREENSHOTS / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    results.setdefault("harness", {}).update(qgis_seconds=round(seconds, 1), returncode=rc)
    results_file.write_text(json.dumps(results, indent=1))
    return DesktopRun(rc, seconds, results, SCREENSHOTS, data, stderr)
