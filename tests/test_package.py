"""The plugin zip: what `make package` writes holds what QGIS needs and nothing else, passes the
plugin repository's checks (size, files, Bandit, detect-secrets), and the four built-in models run
offline straight from it, unpacked into a plugin folder; the checks themselves can fail."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from mmlc.tools import package  # tools/package.py, which `make package` runs as a script
from osgeo import gdal

ROOT = Path(__file__).resolve().parent.parent

BUILTINS = ["asanet-demo", "das2f-demo", "hfdnet-demo", "prsanet-demo"]
HELD_OUT = "bigearthnet/S1A_IW_GRDH_1SDV_20170617T064724_29UPU_36_85"
#: model -> (inputs under resources/sample_data, window side in pixels of input 1)
TRY = {
    "asanet-demo": ([f"{HELD_OUT}__s2_10band_10m.tif", f"{HELD_OUT}__s1_vv_vh_db.tif"], 32),
    "prsanet-demo": ([f"{HELD_OUT}__s2_10band_10m.tif", f"{HELD_OUT}__s1_vv_vh_db.tif"], 16),
    "hfdnet-demo": ([f"{HELD_OUT}__s1_vv_vh_db.tif"], 32),
    # per-pixel state-space scans: a few pixels at the bottom centre (quay and water, like make demo)
    "das2f-demo": (["share_alike/spacenet6/ms2_2m_uint16.tif", "share_alike/spacenet6/pan2.tif"], 4),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The zip as `make package` builds it (tools/package.py run as a script), and its output."""
    dest = tmp_path_factory.mktemp("dist")
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "package.py"), str(dest)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    (zpath,) = dest.glob("mmlc-*.zip")
    return zpath, out.stdout


@pytest.fixture(scope="module")
def unpacked(built: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zip unpacked as QGIS does into a profile's plugins folder."""
    plugins = tmp_path_factory.mktemp("plugins")
    with zipfile.ZipFile(built[0]) as z:
        z.extractall(plugins)
    return plugins


def test_zip_holds_what_qgis_needs_and_nothing_else(built: tuple[Path, str], unpacked: Path) -> None:
    zpath, _ = built
    infos = zipfile.ZipFile(zpath).infolist()
    names = [i.filename for i in infos]
    assert all(n.startswith("mmlc/") for n in names)
    for required in ("mmlc/metadata.txt", "mmlc/__init__.py", "mmlc/plugin.py", "mmlc/ui/provider.py",
                     "mmlc/ui/qt_compat.py", "mmlc/core/api.py", "mmlc/models/registry.py",
                     "mmlc/resources/icon.png", "mmlc/LICENSE", "mmlc/resources/sample_data/README.md"):
        assert required in names
    for name in BUILTINS:
        assert f"mmlc/resources/models/{name}.mmlc" in names and f"mmlc/resources/models/reports/{name}.html" in names
    for n in names:
        parts = n.split("/")
        assert parts[1] not in ("tests", "bench", ".ci", "tools", "build", ".venv", "dist", "Makefile"), n
        assert "__pycache__" not in parts and not n.endswith(".pyc")
    for info in infos:  # plain files, not executable, not hidden
        mode = info.external_attr >> 16
        assert stat.S_ISREG(mode) and stat.S_IMODE(mode) == 0o644, info.filename
        assert not any(p.startswith(".") for p in info.filename.split("/")), info.filename
    samples = sorted(n.split("resources/sample_data/", 1)[1] for n in names if "/resources/sample_data/" in n)
    assert samples == sorted(package.SHIPPED_SAMPLES)
    # the shipped model files are the repository's, byte for byte
    for name in BUILTINS:
        rel = f"resources/models/{name}.mmlc"
        assert hashlib.sha256((unpacked / "mmlc" / rel).read_bytes()).digest() == \
            hashlib.sha256((ROOT / rel).read_bytes()).digest()
    # the zip unpacks into an importable plugin package
    code = "import mmlc, mmlc.ui.provider, mmlc.core.api, mmlc.models; print(mmlc.__file__)"
    res = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(unpacked)),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and str(unpacked) in res.stdout, res.stderr


def test_zip_passes_the_repository_checks(built: tuple[Path, str]) -> None:
    zpath, stdout = built
    assert zpath.stat().st_size <= package.SIZE_LIMIT == 25_000_000
    report = package.scan_zip(zpath)
    assert report.findings == []
    n_py = sum(1 for n in zipfile.ZipFile(zpath).namelist() if n.endswith(".py"))
    assert report.python_files == n_py > 50  # Bandit really read every Python file
    assert f"Bandit over {n_py} Python files: 0 findings; detect-secrets: 0 findings; file checks: 0" in stdout


def _try_script(unpacked: Path, out_dir: Path) -> str:
    return textwrap.dedent(f"""
        import json, mmlc
        from pathlib import Path
        from mmlc.core.modelfiles.builtin import resolve_model
        from mmlc.core.engine.classify import classify
        from mmlc.core.engine.grid import Grid
        from mmlc.core.modelfiles.modelfile import read_card
        plugin = Path(mmlc.__file__).parent
        assert str(plugin).startswith({str(unpacked)!r}), plugin
        samples = plugin / "resources" / "sample_data"
        report = {{}}
        for name, (inputs, n) in {TRY!r}.items():
            paths = [str(samples / p) for p in inputs]
            g = Grid.from_path(paths[0])
            c0, r0 = (g.width - n) // 2, g.height - n
            (xa, ya), (xb, yb) = g.xy_of(r0, c0), g.xy_of(r0 + n, c0 + n)
            res = classify(name, paths, str(Path({str(out_dir)!r}) / (name + ".tif")),
                           extent=(min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)), device="cpu")
            report[name] = {{"model": str(resolve_model(name)), "output": res.output, "window": [c0, r0, n],
                            "input": paths[0], "classes": [c.value for c in read_card(resolve_model(name)).classes]}}
        print("REPORT" + json.dumps(report))
    """)


def test_the_builtin_models_run_offline_from_the_unpacked_zip(unpacked: Path, tmp_path: Path) -> None:
    """Each built-in, found by name in the unpacked plugin (not the repository), classifies a
    window of its held-out sample shipped in the zip, with an empty torch cache and no network use."""
    env = dict(os.environ, PYTHONPATH=str(unpacked), TORCH_HOME=str(tmp_path / "torch-home"),
               HOME=str(tmp_path / "home"), no_proxy="*", http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
               GDAL_PAM_ENABLED="NO")
    (tmp_path / "home").mkdir()
    res = subprocess.run([sys.executable, "-c", _try_script(unpacked, tmp_path)], env=env, cwd=str(tmp_path),
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads(res.stdout.split("REPORT", 1)[1])
    assert sorted(report) == BUILTINS
    for name, r in report.items():
        assert r["model"] == str(unpacked / "mmlc" / "resources" / "models" / f"{name}.mmlc")
        out, src = gdal.Open(r["output"]), gdal.Open(r["input"])
        c0, r0, n = r["window"]
        gt = src.GetGeoTransform()
        assert out.RasterXSize == out.RasterYSize == n
        assert out.GetGeoTransform() == pytest.approx((gt[0] + c0 * gt[1], gt[1], 0.0, gt[3] + r0 * gt[5], 0.0, gt[5]))
        values = out.ReadAsArray()
        assert (values > 0).any(), name
        assert set(np.unique(values[values > 0]).tolist()) <= set(r["classes"]), name
    # the same map as the repository's copy of the model gives (hfdnet-demo: the cheapest one)
    from mmlc.core.engine.classify import classify

    ref = classify("hfdnet-demo", [str(ROOT / "resources" / "sample_data" / TRY["hfdnet-demo"][0][0])],
                   str(tmp_path / "ref.tif"), extent=_extent(report["hfdnet-demo"]), device="cpu")
    np.testing.assert_array_equal(gdal.Open(ref.output).ReadAsArray(),
                                  gdal.Open(report["hfdnet-demo"]["output"]).ReadAsArray())


def _extent(r: dict) -> tuple[float, float, float, float]:
    from mmlc.core.engine.grid import Grid

    g = Grid.from_path(r["input"])
    c0, r0, n = r["window"]
    (xa, ya), (xb, yb) = g.xy_of(r0, c0), g.xy_of(r0 + n, c0 + n)
    return min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)


# -- the checks can fail -------------------------------------------------------------------------
BAD_MODULE = '''
import sqlite3
import subprocess


def lookup(db, table, key):
    assert key, "key needed"
    return db.execute("SELECT value FROM " + table + " WHERE key = '%s'" % key)


def run(cmd):
    return subprocess.call(cmd, shell=True)


api_password = "Zq8vL2mX9pW4rT7y"
'''


def test_a_plugin_with_findings_is_refused_and_no_zip_is_left(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "core").mkdir(parents=True)
    (root / "metadata.txt").write_text("[general]\nname=x\nversion=9.9\n", encoding="utf-8")
    (root / "__init__.py").write_text("", encoding="utf-8")
    (root / "core" / "bad.py").write_text(BAD_MODULE, encoding="utf-8")
    dest = tmp_path / "dist"
    with pytest.raises(package.PackageError) as err:
        package.build(dest, root)
    text = str(err.value)
    for expected in ("B101", "B608", "B602", "B105", "detect-secrets: mmlc/core/bad.py:15: Secret Keyword"):
        assert expected in text, text
    assert not list(dest.glob("*.zip*"))
    # the same tree without the bad module is accepted
    (root / "core" / "bad.py").write_text('"""Nothing to report."""\n', encoding="utf-8")
    path, report = package.build(dest, root)
    assert path.is_file() and report is not None and report.findings == [] and report.python_files == 2


def test_file_checks_catch_hidden_executable_and_script_entries(tmp_path: Path) -> None:
    zpath = tmp_path / "bad.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        ok = zipfile.ZipInfo("mmlc/core/fine.py")
        ok.external_attr = (stat.S_IFREG | 0o644) << 16
        z.writestr(ok, "x = 1\n")
        exe = zipfile.ZipInfo("mmlc/core/run.py")
        exe.external_attr = (stat.S_IFREG | 0o755) << 16
        z.writestr(exe, "x = 2\n")
        z.writestr("mmlc/.env", "A=1\n")
        z.writestr("mmlc/tools/go.sh", "echo hi\n")
        z.writestr("other/x.txt", "outside\n")
    found = "\n".join(package.check_entries(zpath))
    assert "mmlc/core/run.py: executable permission" in found
    assert "mmlc/.env: hidden file" in found
    assert "mmlc/tools/go.sh: executable or binary code type" in found
    assert "other/x.txt: outside the plugin folder" in found
    assert "fine.py" not in found


def test_an_oversized_zip_is_a_finding() -> None:
    assert package.ScanReport(size=package.SIZE_LIMIT).findings == []
    assert package.ScanReport(size=package.SIZE_LIMIT + 1).findings == [
        f"size: {package.SIZE_LIMIT + 1:,} bytes > the limit of {package.SIZE_LIMIT:,}"]
