"""Issue 17: classes of bad input, each refused in one line with nothing written and the inputs
intact (A: output paths, B: silent wrong maps, C: concurrent runs and atomic commits, E: small
ones). The model-card fuzzer and size limits (D) are in test_hardening_cards.py."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from mmlc.core import api
from mmlc.core.assessment.evaluate import confusion_csv
from mmlc.core.assessment.metrics import Metrics
from mmlc.core.classes import ClassInfo
from mmlc.core.data.labels import read_labels
from mmlc.core.data.prepare import record_profile
from mmlc.core.engine.atomic import RunFiles, commit_group, temp_path
from mmlc.core.engine.io import AlignedReader
from mmlc.core.engine.output_paths import check_outputs
from mmlc.core.engine.outputs import OutputSet
from mmlc.core.engine.value_checks import type_mismatch
from mmlc.core.errors import InputError, ModelFileError, OutputError
from mmlc.core.fitting.network import resolve_variant
from mmlc.core.modelfiles.modelfile import ModalityCard, ModelCard, read_card, save_model_file
from mmlc.core.progress import NullProgress
from mmlc.models.registry import get_spec
from osgeo import gdal
from test_inference import CLASSES3, TinyFCN, make_dense_model

ROOT = Path(__file__).resolve().parent.parent


class Recorder(NullProgress):
    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.infos: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def info(self, message: str) -> None:
        self.infos.append(message)


def _digest(paths: list[str]) -> dict[str, str]:
    return {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def dense_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dense_model(tmp_path_factory.mktemp("hm") / "fcn.mmlc")


@pytest.fixture()
def pair(spacenet6: Path, tmp_path: Path) -> list[str]:
    """Copies of the spacenet6 optical + SAR pair (tests may link outputs to them)."""
    out = []
    for name in ("rgb_unmasked.tif", "sar_masked.tif"):
        dst = tmp_path / "in" / name
        dst.parent.mkdir(exist_ok=True)
        dst.write_bytes((spacenet6 / name).read_bytes())
        out.append(str(dst))
    return out


# --- A: one output guard -------------------------------------------------------------------------
def test_train_report_over_an_input_or_the_model_is_refused_before_work(tmp_path: Path, pair: list[str]) -> None:
    labels = tmp_path / "in" / "labels.tif"
    gdal.Translate(str(labels), pair[0], bandList=[1])
    inputs = [*pair, str(labels)]
    before = _digest(inputs)
    model = tmp_path / "m.mmlc"
    for report, match in ((pair[1], "is an input of this run \\(INPUT_1"), (str(labels), "input of this run \\(LABELS"),
                          (str(model), "are the same file"),
                          (str(model) + ".resume.pt", "resume checkpoint .* same file")):
        with pytest.raises(OutputError, match=match):
            api.train("hfdnet", [pair[1]], str(labels), str(model), output_report=report, epochs=1, max_steps_per_epoch=1)
    link = tmp_path / "report_link.html"
    link.symlink_to(pair[1])  # a symlink to an input is the input
    with pytest.raises(OutputError, match="is an input of this run \\(INPUT_1"):
        api.train("hfdnet", [pair[1]], str(labels), str(model), output_report=str(link), epochs=1,
                  max_steps_per_epoch=1)
    folder = tmp_path / "model_folder"
    folder.mkdir()
    t0 = time.perf_counter()
    with pytest.raises(OutputError, match="OUTPUT_MODEL .* is a folder"):
        api.train("hfdnet", [pair[1]], str(labels), str(folder), epochs=1, max_steps_per_epoch=1)
    assert time.perf_counter() - t0 < 5  # refused before reading or training anything
    assert _digest(inputs) == before
    assert _files(tmp_path) == ["in", "model_folder", "report_link.html"] and _files(folder) == []


def test_distill_report_over_the_teacher_is_refused(tmp_path: Path, pair: list[str]) -> None:
    teacher = tmp_path / "in" / "teacher.mmlc"
    teacher.write_bytes((ROOT / "resources" / "models" / "hfdnet-demo.mmlc").read_bytes())
    before = _digest([str(teacher)])
    with pytest.raises(OutputError, match="input of this run \\(TEACHER"):
        api.distill(str(teacher), pair[0], pair[1], pair[0], str(tmp_path / "s.mmlc"), output_report=str(teacher))
    assert _digest([str(teacher)]) == before


def test_classify_side_cars_folders_and_formats_are_checked_first(tmp_path: Path, dense_model: Path,
                                                                   pair: list[str]) -> None:
    before = _digest(pair)
    (tmp_path / "o.qml").mkdir()  # the style side-car of OUTPUT=o.tif is a folder
    with pytest.raises(OutputError, match="style file .*o.qml that OUTPUT writes is a folder"):
        api.classify(dense_model, pair, str(tmp_path / "o.tif"), device="cpu")
    with pytest.raises(OutputError, match="OUTPUT_CONFIDENCE .*p.qml.* same file"):
        api.classify(dense_model, pair, str(tmp_path / "p.tif"), confidence=str(tmp_path / "p.qml"), device="cpu")
    with pytest.raises(OutputError, match="OUTPUT .*o.png names a Portable Network Graphics file.*\\.tif, \\.tiff"):
        api.classify(dense_model, pair, str(tmp_path / "o.png"), device="cpu")
    with pytest.raises(OutputError, match="OUTPUT_VECTOR .*v.shp .*GeoPackage: use one of .gpkg"):
        api.classify(dense_model, pair, str(tmp_path / "c.tif"), vector=str(tmp_path / "v.shp"), device="cpu")
    link = tmp_path / "link.tif"
    link.symlink_to(pair[0])
    with pytest.raises(OutputError, match="input of this run \\(INPUT_1"):
        api.classify(dense_model, pair, str(link), device="cpu")
    # the GDAL side-car of the output would replace an input named like it
    aux_input = tmp_path / "in" / "x.tif.aux.xml"
    aux_input.write_text("<PAMDataset/>")
    with pytest.raises(OutputError, match="GDAL side-car"):
        check_outputs("classify", {"OUTPUT": str(tmp_path / "in" / "x.tif")}, {"MASK": str(aux_input)})
    assert _digest(pair) == before
    assert _files(tmp_path) == ["in", "link.tif", "o.qml"] and _files(tmp_path / "o.qml") == []


def test_evaluate_table_hard_linked_to_the_prediction_is_refused(tmp_path: Path, pair: list[str]) -> None:
    pred = tmp_path / "pred.tif"
    gdal.Translate(str(pred), pair[0], bandList=[1])
    table = tmp_path / "table.csv"
    os.link(pred, table)
    before = _digest([str(pred)])
    with pytest.raises(OutputError, match="OUTPUT_TABLE .* input of this run \\(PREDICTION"):
        api.evaluate(str(pred), str(pred), output_table=str(table))
    assert _digest([str(pred)]) == before


def test_cli_refusal_is_one_line_and_non_zero(tmp_path: Path, dense_model: Path, pair: list[str]) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "build" / "pkg"))
    r = subprocess.run([sys.executable, "-m", "mmlc", "classify", "--MODEL", str(dense_model), "--INPUT_1", pair[0],
                        "--INPUT_2", pair[1], "--OUTPUT", str(tmp_path / "o.png")],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    # the tiny test network is registered by the tests only: the refusal must come before the model is built
    assert r.returncode == 4
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: OUTPUT") and "Traceback" not in r.stderr
    assert _files(tmp_path) == ["in"]


# --- B: silent wrong maps ---------------------------------------------------------------------
def _sar_with_fill(src: str, dst: Path, nodata: float | None = None) -> Path:
    ds = gdal.Translate(str(dst), src)
    a = ds.ReadAsArray()
    a[0, 100:120, 100:140] = -3.4e38  # an undeclared Float32 fill value
    a[2, 150:160, 20:30] = np.inf
    a[1, 30:35, 30:35] = -np.inf
    for b in range(a.shape[0]):
        ds.GetRasterBand(b + 1).WriteArray(a[b])
        if nodata is not None:
            ds.GetRasterBand(b + 1).SetNoDataValue(nodata)
    ds = None
    return dst


def test_fill_values_and_infinities_are_nodata(tmp_path: Path, dense_model: Path, pair: list[str]) -> None:
    sar = _sar_with_fill(pair[1], tmp_path / "sar_fill.tif")
    with AlignedReader([pair[0], str(sar)]) as r:
        arrays, valid = r.read(0, 0, 200, 200)
    assert not valid[100:120, 100:140].any() and not valid[150:160, 20:30].any() and not valid[30:35, 30:35].any()
    assert np.isnan(arrays[1][:, 100:120, 100:140]).all()
    rec = Recorder()
    res = api.classify(dense_model, [pair[0], str(sar)], str(tmp_path / "o.tif"), device="cpu", progress=rec)
    out = gdal.Open(res.output).ReadAsArray()
    assert (out[100:120, 100:140] == 0).all() and (out[150:160, 20:30] == 0).all() and (out[30:35, 30:35] == 0).all()
    ref = api.classify(dense_model, pair, str(tmp_path / "ref.tif"), device="cpu")
    ref_valid = gdal.Open(ref.output).ReadAsArray() > 0
    # the SAR is resampled onto the optical grid (bilinear): the fills reach one pixel further
    assert np.array_equal(out > 0, ref_valid & valid) and (ref_valid & ~valid).sum() > 800 + 100 + 25
    assert res.valid_pixels == int((out > 0).sum()) == sum(res.class_pixels.values())
    assert res.nonfinite_pixels == 0


def test_non_finite_network_output_is_never_a_class(tmp_path: Path, spacenet6: Path) -> None:
    from mmlc.core.engine.grid import Grid

    grid = Grid.from_path(str(spacenet6 / "ms1_2m_uint16.tif"))
    probs = np.full((3, 150, 150), 1 / 3, np.float32)
    probs[:, :, 0] = [[0.2], [0.7], [0.1]]
    probs[1, 10:20, 10:20] = np.nan
    probs[2, 50:52, 50:60] = np.inf
    out = OutputSet(grid, CLASSES3, str(tmp_path / "c.tif"), confidence=str(tmp_path / "p.tif"))
    try:
        out.write(0, 0, probs, np.ones((150, 150), bool))
        out.finish()
        out.commit()
    except BaseException:
        out.abort()
        raise
    a = gdal.Open(str(tmp_path / "c.tif")).ReadAsArray()
    assert out.nonfinite == 100 + 20
    assert (a[10:20, 10:20] == 0).all() and (a[50:52, 50:60] == 0).all() and (a[:, 0] == 2).all()
    assert int(out.counts.sum()) == 150 * 150 - 120


def test_a_model_giving_nan_everywhere_is_refused_and_writes_nothing(tmp_path: Path, pair: list[str]) -> None:
    net = TinyFCN([3, 4], 3)
    state = net.state_dict()
    state["body.4.bias"][:] = float("nan")
    card = ModelCard("tiny_dense_test", {"in_channels": [3, 4], "num_classes": 3}, "dense",
                     [ModalityCard("optical", 3, mean=[90.0] * 3, std=[40.0] * 3),
                      ModalityCard("sar", 4, mean=[-12.0] * 4, std=[5.0] * 4)], list(CLASSES3), tile_size=64,
                     overlap=16)
    model = save_model_file(tmp_path / "nan.mmlc", card, state)
    with pytest.raises(ModelFileError, match="non-finite .* every pixel"):
        api.classify(model, pair, str(tmp_path / "o.tif"), device="cpu")
    assert _files(tmp_path) == ["in", "nan.mmlc"]


def test_cards_record_input_types_and_classify_warns_on_a_clear_mismatch(tmp_path: Path, spacenet6: Path,
                                                                        pair: list[str]) -> None:
    mc = ModalityCard("ms", 4)
    ms = str(spacenet6 / "ms1_2m_uint16.tif")
    record_profile(mc, ms, [gdal.Open(ms).ReadAsArray().astype(np.float32)])
    assert mc.data_type == "uint16" and mc.value_range[1] > 255
    assert type_mismatch("uint16", [0, 4000], "uint8") and "trained on uint16" in type_mismatch("uint16", [], "uint8")
    assert type_mismatch("uint16", [], "float32") and type_mismatch("float32", [], "uint8")
    assert not type_mismatch("uint16", [], "int16") and not type_mismatch("float32", [], "float64")
    assert not type_mismatch("", [], "uint8")  # an older card without the field: nothing to compare
    old = read_card(make_dense_model(tmp_path / "old.mmlc"))
    assert old.modalities[0].data_type == "" and old.modalities[0].value_range == []
    mods = [ModalityCard("optical", 3, mean=[90.0] * 3, std=[40.0] * 3, data_type="uint16", value_range=[0, 3000]),
            ModalityCard("sar", 4, mean=[-12.0] * 4, std=[5.0] * 4, data_type="float32", value_range=[-30, 5])]
    card = ModelCard("tiny_dense_test", {"in_channels": [3, 4], "num_classes": 3}, "dense", mods, list(CLASSES3),
                     tile_size=64, overlap=16)
    model = save_model_file(tmp_path / "typed.mmlc", card, TinyFCN([3, 4], 3).state_dict())
    assert read_card(model).modalities[0].value_range == [0, 3000]
    rec = Recorder()
    api.classify(model, pair, str(tmp_path / "o.tif"), device="cpu", progress=rec)
    hits = [w for w in rec.warnings if "input 1" in w]
    assert len(hits) == 1 and "uint8 but the model was trained on uint16 data (values 0..3000)" in hits[0]
    assert not [w for w in rec.warnings if "input 2" in w]


def test_evaluate_refuses_a_prediction_that_is_no_class_raster(tmp_path: Path, spacenet6: Path,
                                                               nc_landsat: Path) -> None:
    ref = str(nc_landsat / "landsat96_labelled_pixels.tif")
    with pytest.raises(InputError, match="PREDICTION .* has 3 bands"):
        api.evaluate(str(spacenet6 / "rgb_unmasked.tif"), ref, output_table=str(tmp_path / "t.csv"))
    fractional = tmp_path / "reflectance.tif"
    gdal.Translate(str(fractional), str(spacenet6 / "sar_masked.tif"), bandList=[1])  # one float band of dB
    with pytest.raises(InputError, match="non-integer values; the prediction must be a class raster"):
        api.evaluate(str(fractional), str(spacenet6 / "sar_masked.tif"), output_report=str(tmp_path / "r.html"))
    cint = tmp_path / "cint.tif"
    gdal.Translate(str(cint), ref, outputType=gdal.GDT_CInt16)
    with pytest.raises(InputError, match="PREDICTION .* is a CInt16 raster"):
        api.evaluate(str(cint), ref, output_report=str(tmp_path / "r.html"))
    assert _files(tmp_path) == ["cint.tif", "reflectance.tif"]
    # a float band of whole numbers (what raster calculators write) is a class raster
    assert api.evaluate(ref, ref).metrics.overall_accuracy == 1.0


def test_macro_precision_counts_never_predicted_classes_as_zero() -> None:
    # reference rows, prediction columns: class 3 occurs but is never predicted
    cm = np.array([[5, 1, 0], [1, 3, 0], [2, 1, 0]])
    m = Metrics.from_confusion(cm, [1, 2, 3])
    # scikit-learn precision_score(average="macro", zero_division=0): (5/8 + 3/5 + 0) / 3
    assert m.macro_precision == pytest.approx((5 / 8 + 3 / 5 + 0) / 3)
    assert np.isnan(m.precision[2])  # the per-class figure stays undefined (0/0)
    # a class absent from both reference and prediction still counts nowhere
    m4 = Metrics.from_confusion(np.pad(cm, ((0, 1), (0, 1))), [1, 2, 3, 4])
    assert m4.macro_precision == pytest.approx(m.macro_precision)


# --- C: concurrent runs, atomic commits ---------------------------------------------------------
def test_two_threads_writing_one_output_never_mix(tmp_path: Path, pair: list[str]) -> None:
    models = [make_dense_model(tmp_path / f"m{i}.mmlc", seed=i) for i in (1, 2)]
    refs = []
    for i, m in enumerate(models):
        r = api.classify(m, pair, str(tmp_path / f"ref{i}.tif"), confidence=str(tmp_path / f"refc{i}.tif"),
                         device="cpu")
        refs.append((gdal.Open(r.output).ReadAsArray(), gdal.Open(r.confidence).ReadAsArray()))
    assert not np.array_equal(refs[0][0], refs[1][0])
    out, conf = tmp_path / "shared.tif", tmp_path / "shared_conf.tif"
    for _ in range(3):
        results: list[object] = [None, None]
        start = threading.Barrier(2)

        def run(i: int) -> None:
            start.wait()
            try:
                results[i] = api.classify(models[i], pair, str(out), confidence=str(conf), device="cpu",
                                          background_writer=False, workers=1)
            except Exception as e:  # noqa: BLE001 - the test inspects what came out
                results[i] = e

        threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ok = [i for i, r in enumerate(results) if not isinstance(r, Exception)]
        for r in results:
            if isinstance(r, Exception):
                assert isinstance(r, OutputError) and "being written by another run" in str(r)
        assert ok, results
        got = gdal.Open(str(out)).ReadAsArray(), gdal.Open(str(conf)).ReadAsArray()
        winners = [i for i in ok if np.array_equal(got[0], refs[i][0]) and np.array_equal(got[1], refs[i][1])]
        assert winners, "the output is not one run's whole output"
        leftovers = [n for n in _files(tmp_path) if n.startswith(".")]
        assert leftovers == []


def test_stale_temporaries_of_dead_runs_are_cleaned(tmp_path: Path) -> None:
    final = tmp_path / "o.tif"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".o.tif.mmlc-{dead.pid}-0123456789ab.tmp.tif"
    legacy = tmp_path / f".o.tmp{dead.pid}.tif"
    alive = tmp_path / f".o.tif.mmlc-{os.getppid()}-0123456789ab.tmp.tif"
    other = tmp_path / f".p.tif.mmlc-{dead.pid}-0123456789ab.tmp.tif"
    for p in (stale, legacy, alive, other):
        p.write_bytes(b"x")
        os.utime(p, (time.time() - 60, time.time() - 60))
    with RunFiles([final]) as run:
        assert run.temp(final).name.startswith(".o.tif.mmlc-")
    assert _files(tmp_path) == sorted([alive.name, other.name])


def test_commit_is_all_or_none(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    b.write_text("old b")
    ta = temp_path(a, "aaaaaaaaaaaa")
    ta.write_text("new a")
    tb = temp_path(b, "aaaaaaaaaaaa")  # never written: the commit must fail and restore a
    with pytest.raises(OutputError, match="disappeared"):
        commit_group([(ta, a), (tb, b)])
    assert a.read_text() == "old a" and b.read_text() == "old b"
    tb.write_text("new b")
    commit_group([(ta, a), (tb, b)])
    assert a.read_text() == "new a" and b.read_text() == "new b"
    assert _files(tmp_path) == ["a.txt", "b.txt"]


def test_one_run_claims_its_outputs(tmp_path: Path) -> None:
    with RunFiles([tmp_path / "x.tif"]):
        with pytest.raises(OutputError, match="being written by another run"):
            RunFiles([tmp_path / "x.tif"])
        link = tmp_path / "y.tif"
        link.symlink_to(tmp_path / "x.tif")
        with pytest.raises(OutputError, match="being written by another run"):
            RunFiles([link])
    RunFiles([tmp_path / "x.tif"]).release()  # given back at the end of the first run


_SIGTERM_SCRIPT = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import test_inference  # registers the tiny test network
from mmlc.core import cli
from mmlc.core.engine import outputs
real = outputs.OutputSet._write_block
def killing(self, *a):
    os.kill(os.getpid(), signal.SIGTERM)
    return real(self, *a)
outputs.OutputSet._write_block = killing
sys.exit(cli.main(sys.argv[3:]))
"""


def test_sigterm_leaves_nothing(tmp_path: Path, dense_model: Path, pair: list[str]) -> None:
    out = tmp_path / "o.tif"
    r = subprocess.run([sys.executable, "-c", _SIGTERM_SCRIPT, str(ROOT / "build" / "pkg"), str(ROOT / "tests"),
                        "classify", "--MODEL", str(dense_model), "--INPUT_1", pair[0], "--INPUT_2", pair[1],
                        "--OUTPUT", str(out), "--OUTPUT_CONFIDENCE", str(tmp_path / "c.tif")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 130, r.stderr
    assert "interrupted" in r.stderr and "Traceback" not in r.stderr
    assert _files(tmp_path) == ["in"]


def test_disk_full_is_reported_with_nothing_left(tmp_path: Path, dense_model: Path, pair: list[str]) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        with pytest.raises(OutputError, match="disk full at .*small"):
            api.classify(dense_model, pair, str(mnt / "o.tif"), confidence=str(mnt / "c.tif"), device="cpu")
        assert _files(mnt) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# --- E: smaller ones -----------------------------------------------------------------------------
def test_negative_label_values_are_refused_unless_declared_nodata(tmp_path: Path, spacenet6: Path) -> None:
    from mmlc.core.engine.grid import Grid

    src = str(spacenet6 / "rgb_unmasked.tif")
    grid = Grid.from_path(src)
    lab = tmp_path / "lab.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(lab), 200, 200, 1, gdal.GDT_Int16)
    ds.SetGeoTransform(grid.transform)
    ds.SetProjection(grid.crs_wkt)
    a = np.ones((200, 200), np.int16)
    a[:160] = -1
    ds.GetRasterBand(1).WriteArray(a)
    ds = None
    with pytest.raises(InputError, match="negative values \\(32000 pixels, e.g. -1\\).*nodata"):
        read_labels(str(lab), grid)
    ds = gdal.Open(str(lab), gdal.GA_Update)
    ds.GetRasterBand(1).SetNoDataValue(-1)
    ds = None
    labels, _ = read_labels(str(lab), grid)
    assert int((labels == 1).sum()) == 40 * 200 and int((labels == 0).sum()) == 160 * 200


def test_zero_means_the_default_for_batch_and_epochs(tmp_path: Path, dense_model: Path, pair: list[str]) -> None:
    a = api.classify(dense_model, pair, str(tmp_path / "a.tif"), batch_size=0, device="cpu")
    b = api.classify(dense_model, pair, str(tmp_path / "b.tif"), batch_size=4, device="cpu")
    assert a.batch_size == b.batch_size == 4
    assert np.array_equal(gdal.Open(a.output).ReadAsArray(), gdal.Open(b.output).ReadAsArray())
    with pytest.raises(InputError, match="0 = the default"):
        api.classify(dense_model, pair, str(tmp_path / "c.tif"), batch_size=-1, device="cpu")
    missing = str(tmp_path / "missing" / "m.mmlc")
    # EPOCHS/BATCH_SIZE 0 pass the budget check (the run stops at the output folder instead)
    with pytest.raises(OutputError, match="does not exist"):
        api.train("hfdnet", [pair[1]], pair[0], missing, epochs=0, batch_size=0)
    with pytest.raises(InputError, match="0 = the network's default"):
        api.train("hfdnet", [pair[1]], pair[0], missing, epochs=-1)
    from mmlc.core import cli

    for specs in (cli._TRAIN, cli._DISTILL):
        helps = {pid: h for pid, _, h in specs}
        assert "0 = the network's recipe" in helps["EPOCHS"] and "0 = the network's recipe" in helps["BATCH_SIZE"]


def test_confusion_csv_escapes_formula_cells() -> None:
    classes = [ClassInfo(1, '=HYPERLINK("http://x","y")', "#000000"), ClassInfo(2, "+1", "#111111"),
               ClassInfo(3, "-2", "#222222"), ClassInfo(4, "@SUM(A1)", "#333333"), ClassInfo(5, "water", "#444444")]
    text = confusion_csv(np.eye(5, dtype=np.int64), classes)
    import csv
    import io

    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][1:] == ["'=HYPERLINK(\"http://x\",\"y\")", "'+1", "'-2", "'@SUM(A1)", "water"]
    assert [r[0] for r in rows[1:]] == rows[0][1:]
    assert rows[1][1:] == ["1", "0", "0", "0", "0"]


def test_variant_short_names_are_accepted_and_checked_before_reading(tmp_path: Path) -> None:
    spec = get_spec("asanet")
    assert resolve_variant(spec, "atto") == "convnextv2_atto"
    assert resolve_variant(spec, "ATTO") == "convnextv2_atto"
    assert resolve_variant(spec, "convnextv2_femto") == "convnextv2_femto"
    assert resolve_variant(get_spec("hfdnet"), "resnet18") == "resnet18"
    nowhere = str(tmp_path / "no_such_input.tif")
    with pytest.raises(InputError, match="unknown asanet variant 'zepto'; choose one of atto \\(convnextv2_atto\\)"):
        api.train("asanet", [nowhere, nowhere], nowhere, str(tmp_path / "m.mmlc"), variant="zepto")
    with pytest.raises(InputError, match="prsanet has no variants"):
        api.train("prsanet", [nowhere, nowhere], nowhere, str(tmp_path / "m.mmlc"), variant="atto")


def test_distill_teacher_takes_built_in_names(tmp_path: Path, pair: list[str]) -> None:
    # the built-in name resolves (the run then stops at the missing output folder, before any work)
    with pytest.raises(OutputError, match="does not exist"):
        api.distill("hfdnet-demo", pair[0], pair[1], pair[0], str(tmp_path / "missing" / "s.mmlc"))
    with pytest.raises(ModelFileError, match="unknown model 'no-such-model'"):
        api.distill("no-such-model", pair[0], pair[1], pair[0], str(tmp_path / "s.mmlc"))


def test_gdal_write_failures_become_one_line_output_errors(tmp_path: Path) -> None:
    from mmlc.core.engine.atomic import checked_gdal_write

    with pytest.raises(OutputError, match="^disk full at .*o.tif; free some space"):
        with checked_gdal_write(tmp_path / "o.tif"):  # GDAL with exceptions enabled raises RuntimeError
            raise RuntimeError("TIFFAppendToStrip: No space left on device")
    with pytest.raises(OutputError, match="^cannot write .*o.tif: Write error at scanline 0$"):
        with checked_gdal_write(tmp_path / "o.tif"):
            raise RuntimeError("Write error\nat scanline 0")
    with pytest.raises(OutputError, match="^cannot write .*x.tif: .*"):
        with checked_gdal_write(tmp_path / "x.tif"):  # GDAL's own error state, exceptions off
            gdal.PushErrorHandler("CPLQuietErrorHandler")
            gdal.Open(str(tmp_path / "missing.tif"))
            gdal.PopErrorHandler()


def test_negative_values_in_a_vector_class_field_are_refused(tmp_path: Path, nc_landsat: Path) -> None:
    from mmlc.core.engine.grid import Grid
    from osgeo import ogr

    grid = Grid.from_path(str(nc_landsat / "landsat96_labelled_pixels.tif"))
    src = ogr.Open(str(nc_landsat / "landsat96_polygons.shp"))
    layer = src.GetLayer(0)
    path = tmp_path / "neg.gpkg"
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    out = ds.CreateLayer("neg", srs=layer.GetSpatialRef(), geom_type=ogr.wkbPolygon)
    out.CreateField(ogr.FieldDefn("cls", ogr.OFTInteger))
    for i, f in enumerate(layer):
        g = ogr.Feature(out.GetLayerDefn())
        g.SetGeometry(f.GetGeometryRef().Clone())
        g.SetField("cls", -1 if i % 2 else 2)
        out.CreateFeature(g)
    ds = None
    with pytest.raises(InputError, match="field 'cls' .* holds the value -1; class values must be 1..65535"):
        read_labels(str(path), grid, "cls")
