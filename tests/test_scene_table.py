"""Many scenes in one run: a scene table of three scenes in three CRSs trains (streamed), validates,
resumes after kill -9, and its model classifies each scene (one output each plus a VRT mosaic)."""
from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import test_training  # noqa: F401  (registers the tiny test networks the model files name)
import torch
from mmlc.core.data.scene_table import read_scene_table
from mmlc.core.errors import InputError
from mmlc.core.fitting.checkpoint import resume_path_for
from mmlc.core.modelfiles.modelfile import load_model_file

ROOT = Path(__file__).resolve().parent.parent


def make_table(bigearthnet: Path, folder: Path) -> Path:
    """Three BigEarthNet scenes: UTM 33N as shipped, 35N warped to ETRS89-LAEA (EPSG:3035; its labels
    stay in UTM 35N and are warped on the fly), 29N warped to Web Mercator (labels too)."""
    from osgeo import gdal

    s2 = sorted(glob.glob(str(bigearthnet / "*__s2_10band_10m.tif")))
    picks = [p for p in s2 if "33UUP" in p][:1] + [p for p in s2 if "35VPK_57" in p][:1] + \
        [p for p in s2 if "29UPU" in p][:1]
    rows = ["name,input_1,input_2,labels"]
    for p, epsg, warp_labels in zip(picks, (None, 3035, 3857), (False, False, True)):
        sar, lab = p.replace("s2_10band_10m", "s1_vv_vh_db"), p.replace("s2_10band_10m", "weak_label_s2rules")
        name = Path(p).name.split("__")[0][-11:]
        if epsg:
            out = []
            for src, alg in ((p, "bilinear"), (sar, "bilinear")) + (((lab, "near"),) if warp_labels else ()):
                dst = folder / f"{name}_{Path(src).stem[-10:]}_{epsg}.tif"
                gdal.Warp(str(dst), src, dstSRS=f"EPSG:{epsg}", resampleAlg=alg).FlushCache()
                out.append(str(dst.name))  # relative to the table
            p, sar = out[0], out[1]
            lab = out[2] if warp_labels else lab
        rows.append(f"{name},{p},{sar},{lab}")
    table = folder / "scenes.csv"
    table.write_text("\n".join(rows) + "\n")
    return table


def test_scene_table_rows_and_errors(bigearthnet, nc_landsat, tmp_path):
    from osgeo import osr

    table = make_table(bigearthnet, tmp_path)
    scenes = read_scene_table(str(table), n_inputs=2)
    assert len(scenes) == 3
    crs = set()
    for s in scenes:
        from osgeo import gdal

        srs = osr.SpatialReference(gdal.Open(s.inputs[0]).GetProjection())
        crs.add(srs.GetAuthorityCode(None))
    assert len(crs) == 3  # three CRSs
    bad = tmp_path / "bad.csv"
    bad.write_text(table.read_text() + f"landsat,{nc_landsat / 'lsat7_2000_10.tif'},{scenes[0].inputs[1]},"
                   f"{scenes[0].labels}\n")
    with pytest.raises(InputError, match=r"row 4 \(landsat\).*\[1, 2\].*\[10, 2\]"):
        read_scene_table(str(bad))
    missing = tmp_path / "missing.csv"
    missing.write_text("input_1,labels\nnope.tif,x.tif\n")
    with pytest.raises(InputError, match="row 1 of missing.csv.*does not exist"):
        read_scene_table(str(missing))
    with pytest.raises(InputError, match="network takes 1"):
        read_scene_table(str(table), n_inputs=1)


_RUN = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [{pkg!r}, {tests!r}]
    import test_training  # registers the tiny networks
    from mmlc.core.data.scene_table import read_scene_table
    from mmlc.core.fitting.training import train
    from mmlc.core.progress import CallbackProgress
    slow = CallbackProgress(on_fraction=lambda f: time.sleep({sleep}))
    r = train("t_dense", None, None, sys.argv[1], scenes=read_scene_table(sys.argv[2]), epochs=3, tile_size=32,
              batch_size=4, max_steps_per_epoch=3, seed=2, stream=True, progress=slow)
    print("RESUMED_FROM", r.resumed_from_epoch, "EPOCHS", r.epochs_run, "VALPIX", r.card.provenance["validation_pixels"])
""")


@pytest.mark.slow
def test_table_of_three_crs_trains_streamed_resumes_and_classifies_each_scene(bigearthnet, tmp_path):
    from mmlc.core.engine.mosaic import classify_many
    from osgeo import gdal

    table = make_table(bigearthnet, tmp_path)
    env = dict(os.environ, PYTHONPATH="", OMP_NUM_THREADS="1")
    kw = dict(pkg=str(ROOT / "build" / "pkg"), tests=str(ROOT / "tests"))
    slow, fast = tmp_path / "slow.py", tmp_path / "fast.py"
    slow.write_text(_RUN.format(sleep=0.3, **kw))
    fast.write_text(_RUN.format(sleep=0.0, **kw))
    out = tmp_path / "many.mmlc"
    ck = resume_path_for(out)
    proc = subprocess.Popen([sys.executable, str(slow), str(out), str(table)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    t0 = time.time()
    while not ck.exists() and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.05)
    assert ck.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no checkpoint in 120 s"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = int(torch.load(ck, weights_only=True)["epoch"])
    assert 1 <= done < 3 and not out.exists()
    r = subprocess.run([sys.executable, str(fast), str(out), str(table)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"RESUMED_FROM {done} EPOCHS 3" in r.stdout
    card, _ = load_model_file(out)
    assert card.provenance["validation_pixels"] > 0 and len(card.provenance["inputs"]) == 9
    hist = card.provenance["best_metrics"]
    assert 0.0 <= hist["miou"] <= 1.0
    # validation blocks come from every scene
    from mmlc.core.data.streamed_prepare import prepare_streamed
    from mmlc.core.data.windows import open_scenes

    st = prepare_streamed(open_scenes(read_scene_table(str(table)), [1, 1]), ["optical", "sar"], [1, 1],
                          table=None, validation_fraction=0.2, seed=2, tile=32)
    assert all(s.val_rows.sum() > 0 for s in st.scenes)
    # the model classifies each scene on its own grid, and the mosaic covers them all
    folder = tmp_path / "classified"
    folder.mkdir()
    res = classify_many(str(out), str(table), str(folder), device="cpu")
    values = {c.value for c in card.classes}
    assert len(res.outputs) == 3
    for s in read_scene_table(str(table)):
        o = gdal.Open(res.outputs[s.name])
        src = gdal.Open(s.inputs[0])
        assert o.GetGeoTransform() == pytest.approx(src.GetGeoTransform())
        assert o.GetProjection() == src.GetProjection()
        a = o.ReadAsArray()
        assert set(np.unique(a[a != o.GetRasterBand(1).GetNoDataValue()]).tolist()) <= values
    mosaic = gdal.Open(res.mosaic)
    assert mosaic.GetProjection() == gdal.Open(res.outputs[read_scene_table(str(table))[0].name]).GetProjection()
    from osgeo import osr

    dst = osr.SpatialReference(mosaic.GetProjection())
    mgt = mosaic.GetGeoTransform()
    for name, path in res.outputs.items():  # the scenes lie far apart: look at each one's centre in the mosaic
        o = gdal.Open(path)
        gt, src = o.GetGeoTransform(), osr.SpatialReference(o.GetProjection())
        for sr in (src, dst):
            sr.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        r, c = o.RasterYSize // 2, o.RasterXSize // 2
        x, y, _ = osr.CoordinateTransformation(src, dst).TransformPoint(gt[0] + (c + 0.5) * gt[1],
                                                                          gt[3] + (r + 0.5) * gt[5])
        mc, mr = int((x - mgt[0]) / mgt[1]), int((y - mgt[3]) / mgt[5])
        got = int(mosaic.ReadAsArray(mc, mr, 1, 1)[0, 0])
        near = o.ReadAsArray(c - 2, r - 2, 5, 5)
        assert got in values and got in near, name
    assert len(glob.glob(str(folder / "*.warped.vrt"))) == 2 and not glob.glob(str(folder / ".*tmp*"))


@pytest.mark.slow
def test_cli_trains_on_a_table_and_classifies_it_and_a_glob(bigearthnet, tmp_path):
    from mmlc.core import cli
    from mmlc.core.engine.mosaic import scenes_to_classify
    from osgeo import gdal

    table = make_table(bigearthnet, tmp_path)
    out = tmp_path / "cli.mmlc"
    rc = cli.main(["-q", "train", "--ARCHITECTURE", "t_dense", "--SCENES", str(table), "--EPOCHS", "1",
                   "--TILE_SIZE", "32", "--BATCH_SIZE", "4", "--MAX_STEPS_PER_EPOCH", "2", "--DEVICE", "cpu",
                   "--OUTPUT_MODEL", str(out), "--OUTPUT_REPORT", ""])
    assert rc == 0 and out.is_file()
    card, _ = load_model_file(out)
    assert len(card.provenance["inputs"]) == 9  # three scenes of two inputs and labels
    folder = tmp_path / "maps"
    folder.mkdir()
    rc = cli.main(["-q", "classify", "--MODEL", str(out), "--SCENES", str(table), "--OUTPUT_FOLDER", str(folder),
                   "--DEVICE", "cpu"])
    assert rc == 0
    names = [s.name for s in read_scene_table(str(table))]
    assert sorted(p.stem for p in folder.glob("*.tif")) == sorted(names)
    assert gdal.Open(str(folder / "mosaic.vrt")).RasterCount == 1
    assert cli.main(["-q", "classify", "--MODEL", str(out), "--SCENES", str(table)]) == 2  # no OUTPUT_FOLDER
    # a glob: one input-1 raster per scene, names from the files, made unique
    found = scenes_to_classify(str(bigearthnet / "*__s1_vv_vh_db.tif"))
    assert len(found) == 4 and all(len(ins) == 1 for _, ins in found)
    with pytest.raises(InputError, match="no raster matches"):
        scenes_to_classify(str(tmp_path / "none*.tif"))
