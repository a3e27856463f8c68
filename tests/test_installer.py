"""The dependency installer (issue 20): paths QGIS uses, interpreter and GPU detection, a real
install of torch into a fresh profile that qgis_process then classifies with (Debian's Python has
no torch of its own), failures and cancel that leave the folder as it was, and the dialogs.

pip runs with its configuration switched off (PIP_CONFIG_FILE=/dev/null), so only the sources a
test names are used. Screenshots of the dialog states go to build/screenshots/ (not in git).
"""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from mmlc.core.runtime import installer, qgisenv

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"  # the interpreter Debian's QGIS embeds
LOCAL_INDEX = Path("/opt/pypi/simple")
WHEELS = Path("/opt/wheels")
SHOTS = ROOT / "build" / "screenshots"


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _system_python_without_torch() -> None:
    if not Path(SYSTEM_PYTHON).is_file():
        pytest.skip("no /usr/bin/python3")
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import importlib.util as u; print(u.find_spec('torch') is None)"],
                           capture_output=True, text=True)
    if probe.stdout.strip() != "True":
        pytest.skip("the system Python has torch, so it cannot play a QGIS without torch")


@pytest.fixture
def pip_isolated(monkeypatch):
    """pip sees only what a test passes: no pip.conf, no PIP_FIND_LINKS, no retries."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "30")


def make_wheel(folder: Path, name: str, version: str, files: dict[str, str], requires: tuple[str, ...] = ()) -> Path:
    """A minimal pure-Python wheel (for fast installs whose outcome the tests can check)."""
    dist = f"{name}-{version}"
    info = f"{dist}.dist-info"
    content = dict(files)
    content[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + \
        "".join(f"Requires-Dist: {r}\n" for r in requires)
    content[f"{info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: mmlc-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for path, text in content.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    content[f"{info}/RECORD"] = "\n".join(record) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    whl = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        for path, text in content.items():
            z.writestr(path, text)
    return whl


@pytest.fixture
def small_wheels(tmp_path: Path) -> Path:
    """A wheel folder with tiny stand-ins named torch and safetensors (version-tagged modules), so the
    installer's full path (pip, pruning, import check, swap) runs in seconds."""
    folder = tmp_path / "wheels"
    make_wheel(folder, "torch", "2.13.0", {
        "torch/__init__.py": "__version__ = '2.13.0'\n\nclass cuda:\n    is_available = staticmethod(lambda: False)\n"})
    make_wheel(folder, "safetensors", "0.4.5", {"safetensors/__init__.py": "__version__ = '0.4.5'\n"})
    return folder


def _plan(profile: Path, **kw) -> installer.InstallPlan:
    return installer.make_plan(profile, python=SYSTEM_PYTHON, with_qgis=False, gpu=qgisenv.GpuInfo(), **kw)


class HangingIndex:
    """A TCP server that accepts connections and never answers: pip waits until cancelled."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/simple"
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.sock.close()


def _closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/simple"


# -- paths, interpreter, GPU -----------------------------------------------------------------------
def test_profile_paths_follow_qgis(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert qgisenv.default_profile_dir("Linux", {}, home) == home / ".local/share/QGIS/QGIS3/profiles/default"
    assert qgisenv.default_profile_dir("Linux", {"XDG_DATA_HOME": "/x"}, home) == Path("/x/QGIS/QGIS3/profiles/default")
    assert qgisenv.default_profile_dir("Windows", {"APPDATA": r"C:\Users\a\AppData\Roaming"}, home) == \
        Path(r"C:\Users\a\AppData\Roaming") / "QGIS" / "QGIS3" / "profiles" / "default"
    assert qgisenv.default_profile_dir("Darwin", {}, home) == \
        home / "Library/Application Support/QGIS/QGIS3/profiles/default"
    custom = tmp_path / "cfg"
    assert qgisenv.default_profile_dir("Linux", {"QGIS_CUSTOM_CONFIG_PATH": str(custom)}, home) == \
        custom / "profiles" / "default"
    (custom / "profiles").mkdir(parents=True)
    (custom / "profiles" / "profiles.ini").write_text("[core]\ndefaultProfile=work\n")
    assert qgisenv.default_profile_dir("Linux", {"QGIS_CUSTOM_CONFIG_PATH": str(custom)}, home) == \
        custom / "profiles" / "work"
    assert qgisenv.deps_dir(custom / "profiles" / "work", "py311") == \
        custom / "profiles" / "work" / "python" / "mmlc-deps" / "py311"


@pytest.mark.parametrize("system,exe,prefix,env,expected", [
    ("Windows", r"C:\OSGeo4W\bin\qgis-bin.exe", r"C:\OSGeo4W\apps\Python312", {},
     str(Path(r"C:\OSGeo4W\apps\Python312") / "python.exe")),
    ("Darwin", "/Applications/QGIS.app/Contents/MacOS/QGIS",
     "/Applications/QGIS.app/Contents/Frameworks/Python.framework/Versions/3.12", {},
     "/Applications/QGIS.app/Contents/MacOS/bin/python3"),
    ("Linux", "/usr/bin/qgis", "/usr", {}, "/usr/bin/python3.12"),
    ("Linux", "/opt/conda/envs/gis/bin/qgis", "/opt/conda/envs/gis", {"CONDA_PREFIX": "/opt/conda/envs/gis"},
     "/opt/conda/envs/gis/bin/python3.12"),
])
def test_interpreter_from_each_installers_layout(system, exe, prefix, env, expected) -> None:
    """sys.executable is the qgis binary: the interpreter is found from the layout of each installer."""
    cands = qgisenv.interpreter_candidates(exe, prefix, prefix, system, (3, 12), env)
    assert cands[0] == expected
    assert exe not in cands
    tried: list[str] = []  # each existing candidate is started in turn; missing ones are skipped
    with pytest.raises(FileNotFoundError, match="looked at"):
        qgisenv.find_qgis_python(exe, prefix, prefix, system, (3, 12), env,
                                 check=lambda c, v, p: tried.append(c) is not None)
    assert tried == [c for c in cands if os.path.isfile(c)]


def test_finds_debian_qgis_python_from_the_qgis_binary() -> None:
    if not Path(SYSTEM_PYTHON).is_file():
        pytest.skip("no /usr/bin/python3")
    version = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True).stdout.strip()
    found = qgisenv.find_qgis_python("/usr/bin/qgis", "/usr", "/usr", "Linux",
                                     tuple(int(v) for v in version.split(".")), {})
    assert Path(found).resolve() == Path(SYSTEM_PYTHON).resolve()
    with pytest.raises(FileNotFoundError, match="looked at"):
        qgisenv.find_qgis_python("/usr/bin/qgis", "/usr", "/usr", "Linux", (2, 9), {})


def test_nvidia_smi_output_chooses_the_build() -> None:
    banner = "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.7 |"
    gpu = qgisenv.parse_nvidia_smi("NVIDIA GeForce RTX 3060, 550.54.15\nNVIDIA A100, 550.54.15\n", banner)
    assert gpu.names == ["NVIDIA GeForce RTX 3060", "NVIDIA A100"] and gpu.driver == "550.54.15"
    assert gpu.cuda == (12, 7)
    assert installer.choose_build(gpu, system="Linux").tag == "cu126"
    assert installer.choose_build(qgisenv.GpuInfo(["x"], "580", (13, 2)), system="Windows").tag == "cu130"
    assert installer.choose_build(qgisenv.GpuInfo(["old"], "470", (11, 4)), system="Linux").tag == "cpu"
    assert installer.choose_build(gpu, cpu=True, system="Linux").tag == "cpu"
    assert installer.choose_build(gpu, system="Darwin").tag == "cpu"
    assert installer.choose_build(qgisenv.GpuInfo(), cuda="12.8", system="Linux").index_url.endswith("/cu128")
    with pytest.raises(installer.InstallError, match="no CUDA 9.9 build"):
        installer.choose_build(gpu, cuda="9.9", system="Linux")
    absent = qgisenv.detect_gpu(run=lambda args: (_ for _ in ()).throw(FileNotFoundError("nvidia-smi")))
    assert not absent.present and "nvidia-smi" in absent.describe()


def test_progress_follows_pip_and_the_downloaded_bytes() -> None:
    seen: list[float] = []
    p = installer._Progress(1000, seen.append)
    p.line("Collecting torch==2.13.0")
    assert 0 < seen[-1] < 0.25
    p.line("  Downloading torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl (191.8 MB)")
    p.downloaded(500)
    assert seen[-1] == pytest.approx(0.5)
    p.downloaded(5000)  # more than expected: capped at the end of the download phase
    assert seen[-1] == pytest.approx(0.75)
    p.line("Installing collected packages: torch")
    p.downloaded(100)  # later byte counts never move it back
    p.line("Successfully installed torch-2.13.0")
    assert seen == sorted(seen) and seen[-1] == pytest.approx(0.9)


def test_activate_puts_the_folder_before_site_packages(tmp_path: Path) -> None:
    path = ["/plugins", "/usr/lib/python311.zip", "/usr/lib/python3/dist-packages", "/x/site-packages"]
    assert not qgisenv.activate(tmp_path / "missing", path)
    assert qgisenv.activate(tmp_path, path)
    assert path.index(str(tmp_path)) == 2
    assert qgisenv.activate(tmp_path, path) and path.count(str(tmp_path)) == 1


# -- plan and pip command -----------------------------------------------------------------------------
def test_plan_pins_numpy_and_installs_only_into_the_profile(tmp_path: Path, small_wheels: Path) -> None:
    _system_python_without_torch()
    plan = _plan(tmp_path / "profile", find_links=[str(small_wheels)], no_index=True,
                 loaded_modules=["numpy", "osgeo"])
    numpy_version = subprocess.run([SYSTEM_PYTHON, "-c", "import numpy; print(numpy.__version__)"],
                                   capture_output=True, text=True).stdout.strip()
    assert plan.probe.pins["numpy"] == numpy_version
    assert f"numpy=={numpy_version}" in plan.constraints_text().splitlines()[1]
    assert plan.target == tmp_path / "profile" / "python" / "mmlc-deps" / plan.probe.tag
    args = plan.pip_args(tmp_path / "staging", tmp_path / "c.txt")
    assert args[:4] == [SYSTEM_PYTHON, "-m", "pip", "install"]
    assert args[args.index("--target") + 1] == str(tmp_path / "staging")
    assert "--no-index" in args and "--break-system-packages" not in args and "--user" not in args
    assert args[-2:] == list(installer.REQUIREMENTS)
    default = _plan(tmp_path / "profile", cpu=True)
    assert default.index_url == "https://download.pytorch.org/whl/cpu" and default.extra_index_urls == [installer.PYPI_INDEX]
    if (WHEELS / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").is_file() and plan.probe.tag == "py311":
        local = _plan(tmp_path / "profile", cpu=True, find_links=[str(WHEELS)])
        assert local.download_bytes > (WHEELS / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").stat().st_size
        assert "torch-2.13.0+cpu" in local.size_source
    with pytest.raises(installer.InstallError, match="not found"):
        _plan(tmp_path / "profile", find_links=[str(tmp_path / "nowhere")])


def test_small_install_swaps_in_and_prunes_what_qgis_has(tmp_path: Path, small_wheels: Path, pip_isolated) -> None:
    """The whole path with small wheels: staging, pruning of a pinned package, import check, swap;
    a reinstall replaces the old folder and leaves no staging or old folder behind."""
    _system_python_without_torch()
    make_wheel(small_wheels, "numpy", "0.0.1", {"numpy_stub_should_not_stay/__init__.py": ""})
    profile = tmp_path / "profile"
    plan = _plan(profile, find_links=[str(small_wheels)], no_index=True)
    plan.requirements = [*installer.REQUIREMENTS, "numpy"]
    plan.probe.pins["numpy"] = "0.0.1"  # as if QGIS had numpy 0.0.1: pip installs it, pruning removes it
    lines, fractions = [], []
    result = installer.run_install(plan, on_line=lines.append, on_progress=fractions.append)
    assert result.target == plan.target and result.torch_version == "2.13.0" and not result.cuda_available
    assert (plan.target / "torch" / "__init__.py").is_file() and (plan.target / "safetensors").is_dir()
    assert not any(p.name.startswith("numpy") for p in plan.target.iterdir()), list(plan.target.iterdir())
    assert sorted(result.packages) == ["safetensors 0.4.5", "torch 2.13.0"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("kept QGIS's own copies of: numpy" in ln for ln in lines)
    assert "Successfully installed" in plan.log_path.read_text()
    assert sorted(p.name for p in plan.target.parent.iterdir()) == [plan.log_path.name, plan.target.name]
    (plan.target / "torch" / "old-marker").write_text("x")
    installer.run_install(_plan(profile, find_links=[str(small_wheels)], no_index=True))
    assert not (plan.target / "torch" / "old-marker").exists()
    assert sorted(p.name for p in plan.target.parent.iterdir()) == [plan.log_path.name, plan.target.name]


@pytest.fixture
def existing_install(tmp_path: Path, small_wheels: Path, pip_isolated) -> installer.InstallPlan:
    _system_python_without_torch()
    plan = _plan(tmp_path / "profile", find_links=[str(small_wheels)], no_index=True)
    installer.run_install(plan)
    return plan


def test_failing_index_leaves_the_folder_as_it_was(tmp_path: Path, existing_install) -> None:
    before = _snapshot(existing_install.target)
    plan = _plan(tmp_path / "profile", index_url=_closed_port_url())
    with pytest.raises(installer.InstallError, match="could not be reached|could not reach") as err:
        installer.run_install(plan)
    assert "pip failed" in str(err.value)
    assert _snapshot(existing_install.target) == before
    assert sorted(p.name for p in plan.target.parent.iterdir()) == [plan.log_path.name, plan.target.name]
    assert "FAILED" in plan.log_path.read_text()


def test_cancel_stops_pip_and_leaves_the_folder_as_it_was(tmp_path: Path, existing_install) -> None:
    before = _snapshot(existing_install.target)
    server = HangingIndex()
    try:
        plan = _plan(tmp_path / "profile", index_url=server.url)
        started = time.monotonic()
        lines: list[str] = []
        with pytest.raises(installer.InstallCancelled):
            installer.run_install(plan, on_line=lines.append, cancelled=lambda: time.monotonic() - started > 3)
        assert time.monotonic() - started < 25
        assert server.conns, "pip never reached the index, so cancel did not interrupt a running pip"
    finally:
        server.close()
    assert _snapshot(existing_install.target) == before
    assert sorted(p.name for p in plan.target.parent.iterdir()) == [plan.log_path.name, plan.target.name]
    assert "CANCELLED" in plan.log_path.read_text()


def test_a_loaded_package_torch_needs_newer_fails_with_what_to_do(tmp_path: Path, pip_isolated) -> None:
    """QGIS has loaded typing-extensions 4.4 and torch needs >= 4.10: the pin wins, pip refuses, and the
    message says why and what to do (nothing of QGIS's is replaced behind its back)."""
    _system_python_without_torch()
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "torch", "2.13.0", {"torch/__init__.py": ""}, requires=("typing-extensions>=4.10",))
    make_wheel(wheels, "safetensors", "0.4.5", {"safetensors/__init__.py": ""})
    for version in ("4.4.0", "4.12.2"):
        make_wheel(wheels, "typing_extensions", version, {"typing_extensions.py": ""})
    plan = _plan(tmp_path / "profile", find_links=[str(wheels)], no_index=True)
    plan.probe.pins["typing-extensions"] = "4.4.0"
    with pytest.raises(installer.InstallError, match="already loaded.*Close QGIS"):
        installer.run_install(plan)
    assert not plan.target.exists()
    assert "typing-extensions==4.4.0" in plan.log_path.read_text()


def test_not_enough_disk_space_is_refused_before_anything_changes(tmp_path: Path, existing_install) -> None:
    before = _snapshot(existing_install.target)
    plan = _plan(tmp_path / "profile", find_links=[str(WHEELS)], no_index=True)
    plan.download_bytes = shutil.disk_usage(tmp_path).free  # x DISK_FACTOR: more than the disk has
    with pytest.raises(installer.InstallError, match="not enough free disk space"):
        installer.run_install(plan)
    assert _snapshot(existing_install.target) == before
    assert "FAILED: not enough free disk space" in plan.log_path.read_text()  # Diagnostics shows it


def test_no_pip_in_qgis_python_says_what_to_do(tmp_path: Path) -> None:
    probe = installer.PythonProbe(SYSTEM_PYTHON, "3.11.2", None, "1.24.2", {"numpy": "1.24.2"})
    with pytest.raises(installer.InstallError, match="has no pip.*apt install python3-pip"):
        installer._pip_runner(SYSTEM_PYTHON, probe, [str(tmp_path)])
    (tmp_path / "pip-24.0-py3-none-any.whl").write_bytes(b"")
    assert installer._pip_runner(SYSTEM_PYTHON, probe, [str(tmp_path)]) == \
        [SYSTEM_PYTHON, str(tmp_path / "pip-24.0-py3-none-any.whl" / "pip")]


# -- headless -------------------------------------------------------------------------------------
def _cli(*args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(env or os.environ, PYTHONPATH=str(ROOT / "build" / "pkg"))
    return subprocess.run([SYSTEM_PYTHON, "-m", "mmlc", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_cli_runs_without_torch(tmp_path: Path) -> None:
    _system_python_without_torch()
    res = _cli("install-deps", "--help")
    assert res.returncode == 0 and "--find-links" in res.stdout and "--cuda" in res.stdout, res.stderr
    res = _cli("diagnostics", env=dict(os.environ, QGIS_CUSTOM_CONFIG_PATH=str(tmp_path)))
    assert res.returncode == 0, res.stderr
    assert "torch: not installed" in res.stdout
    assert str(tmp_path / "profiles" / "default" / "python" / "mmlc-deps") in res.stdout
    res = _cli("install-deps", "--cpu", "--cuda", "12.6")
    assert res.returncode == 2 and "not allowed with" in res.stderr


@pytest.mark.slow
def test_install_torch_into_a_fresh_profile_then_qgis_process_classifies(tmp_path: Path, samples: Path) -> None:
    """The real thing: Debian's Python (QGIS's, without torch) installs torch from the local wheel
    folder into a fresh profile; qgis_process, with nothing else on its path, then classifies."""
    _system_python_without_torch()
    torch_wheels = sorted(WHEELS.glob("torch-2.13.0*-cp311-*.whl"))
    if not torch_wheels:
        pytest.skip("no local torch wheel in /opt/wheels")
    from mmlc.tools.qgis_env import qgis_process_binary

    base = tmp_path / "qgis-config"  # QGIS_CUSTOM_CONFIG_PATH: the profile is base/profiles/default
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, QGIS_CUSTOM_CONFIG_PATH=str(base))
    env.pop("PIP_FIND_LINKS", None)
    sources = ["--find-links", str(WHEELS)] + (["--index-url", LOCAL_INDEX.as_uri()] if LOCAL_INDEX.is_dir() else [])
    started = time.monotonic()
    res = _cli("install-deps", "--cpu", *sources, env=env)
    seconds = time.monotonic() - started
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    target = base / "profiles" / "default" / "python" / "mmlc-deps" / "py311"
    assert (target / "torch" / "__init__.py").is_file() and (target / "safetensors").is_dir()
    assert not (target / "numpy").exists()  # QGIS's numpy stays the only one
    print(f"install took {seconds:.0f} s")

    qp_env = dict(os.environ, QT_QPA_PLATFORM="offscreen", GDAL_PAM_ENABLED="NO", QGIS_CUSTOM_CONFIG_PATH=str(base),
                  QGIS_PLUGINPATH=str(ROOT / "build" / "pkg"), PYTHONPATH=str(ROOT / "build" / "pkg"))
    qp = qgis_process_binary()
    subprocess.run([qp, "plugins", "enable", "mmlc"], env=qp_env, capture_output=True, text=True, timeout=300)
    sar = tmp_path / "sar.tif"
    shutil.copy(sorted((samples / "bigearthnet").glob("*__s1_vv_vh_db.tif"))[0], sar)
    out = tmp_path / "classes.tif"
    res = subprocess.run([qp, "run", "mmlc:classify", "--", "MODEL=hfdnet-demo", f"INPUT_1={sar}", "DEVICE=cpu",
                          f"OUTPUT={out}"], env=qp_env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    from osgeo import gdal

    src, ds = gdal.Open(str(sar)), gdal.Open(str(out))
    assert (ds.RasterXSize, ds.RasterYSize) == (src.RasterXSize, src.RasterYSize)
    assert ds.GetGeoTransform() == src.GetGeoTransform()
    values = set(ds.GetRasterBand(1).ReadAsArray().ravel().tolist())
    assert values and values <= set(range(1, 256)), values


# -- dialogs --------------------------------------------------------------------------------------
def _shot(widget, name: str) -> Path:
    from qgis.PyQt.QtWidgets import QApplication

    for _ in range(3):  # let the layout follow the last text changes
        QApplication.processEvents()
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    assert widget.grab().save(str(path)), path
    return path


def _wait(dialog, qgis_app, seconds: float = 120) -> None:
    end = time.monotonic() + seconds
    while dialog.state == "installing" and time.monotonic() < end:
        qgis_app.processEvents()
        time.sleep(0.05)
    assert dialog.state != "installing"


def test_install_dialog_states(qgis_app, tmp_path: Path, small_wheels: Path, pip_isolated) -> None:
    """ready -> installing -> done; a failing index -> failed; cancel -> cancelled; each screenshotted."""
    _system_python_without_torch()
    from mmlc.ui.dialogs.diagnostics import DiagnosticsDialog
    from mmlc.ui.dialogs.install import InstallDialog

    profile = tmp_path / "profile"
    dialog = InstallDialog(profile, python=SYSTEM_PYTHON, gpu=qgisenv.GpuInfo(note="test"))
    dialog.show()
    assert dialog.state == "ready" and dialog.plan is not None
    assert "Nothing installed yet" in dialog.status.text() and "numpy" in dialog.plan_label.text()
    assert not dialog.cancel_button.isEnabled() and dialog.install_button.isEnabled()
    _shot(dialog, "install-1-ready")

    dialog.build_combo.setCurrentIndex(dialog.build_combo.findData("cpu"))
    dialog.find_links.setText(str(small_wheels))
    dialog.offline.setChecked(True)  # refreshes the plan
    assert dialog.plan.no_index and dialog.plan.find_links == [str(small_wheels)]
    assert dialog.install_button.isEnabled(), (dialog.state, dialog.status.text())
    dialog.install_button.click()
    assert dialog.state == "installing" and dialog.cancel_button.isEnabled() and not dialog.close_button.isEnabled()
    qgis_app.processEvents()
    _shot(dialog, "install-2-installing")
    _wait(dialog, qgis_app)
    assert dialog.state == "done", dialog.status.text() + dialog.log.toPlainText()[-2000:]
    assert "torch 2.13.0" in dialog.status.text() and dialog.progress.value() == 1000
    # this test process has imported the venv's torch, which a running Python cannot swap: restart asked
    assert dialog.result.restart_needed == ("torch" in sys.modules)
    assert ("restart QGIS" in dialog.status.text()) == dialog.result.restart_needed
    assert "Successfully installed" in dialog.log.toPlainText()
    assert str(dialog.result.target) in sys.path  # the algorithms see it at once
    target = dialog.result.target
    sys.path.remove(str(target))
    _shot(dialog, "install-3-done")
    before = _snapshot(target)

    dialog.offline.setChecked(False)
    dialog.find_links.setText("")
    dialog.index_url.setText(_closed_port_url())
    dialog.refresh_plan()
    dialog.install_button.click()
    _wait(dialog, qgis_app)
    assert dialog.state == "failed" and "index could not be reached" in dialog.status.text()
    _shot(dialog, "install-4-failed")
    assert _snapshot(target) == before

    server = HangingIndex()
    try:
        dialog.index_url.setText(server.url)
        dialog.refresh_plan()
        dialog.install_button.click()
        end = time.monotonic() + 20
        while not server.conns and time.monotonic() < end:
            qgis_app.processEvents()
            time.sleep(0.05)
        dialog.cancel_button.click()
        _wait(dialog, qgis_app, 30)
    finally:
        server.close()
    assert dialog.state == "cancelled" and "nothing was changed" in dialog.status.text()
    assert _snapshot(target) == before
    _shot(dialog, "install-5-cancelled")
    dialog.close()

    diag = DiagnosticsDialog(profile)
    diag.show()
    text = diag.view.toPlainText()
    for needle in ("QGIS:", "Qt:", "Python:", "numpy:", "GDAL:", "torch", "NVIDIA", "plugin version",
                   "torch 2.13.0", "safetensors 0.4.5", "CANCELLED"):
        assert needle in text, needle
    diag.copy_button.click()
    from qgis.PyQt.QtGui import QGuiApplication

    assert QGuiApplication.clipboard().text() == diag.text
    _shot(diag, "diagnostics")
    diag.close()


def test_algorithm_without_torch_offers_the_dialog_in_the_main_thread(qgis_app, qgis_iface, monkeypatch) -> None:
    """An algorithm finding torch missing (in a Processing worker thread) asks for the install dialog;
    it opens in the main thread, and the algorithm fails with the install instructions."""
    import mmlc
    from mmlc.plugin import MmlcPlugin
    from mmlc.ui import deps
    from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback

    opened: list[threading.Thread] = []
    monkeypatch.setattr(MmlcPlugin, "show_install_help", lambda self: opened.append(threading.current_thread()))
    monkeypatch.setattr(deps, "missing_packages", lambda: ["torch"])
    plugin = mmlc.classFactory(qgis_iface)
    plugin.initGui()
    try:
        alg = QgsApplication.processingRegistry().createAlgorithmById("mmlc:evaluate")
        errors: list[str] = []

        def worker() -> None:
            try:
                alg.call_core(lambda **kw: None, QgsProcessingFeedback())
            except QgsProcessingException as e:
                errors.append(str(e))

        t = threading.Thread(target=worker)
        t.start()
        t.join(30)
        assert errors and "install-deps" in errors[0] and "Install PyTorch for mmlc" in errors[0]
        assert not opened  # queued: nothing ran in the worker thread
        end = time.monotonic() + 10
        while not opened and time.monotonic() < end:
            qgis_app.processEvents()
        assert opened == [threading.main_thread()]
    finally:
        plugin.unload()
    assert deps.offer_install() is False  # unloaded: no desktop to offer it in


def test_dialog_in_a_qgis_without_torch_needs_no_restart(tmp_path: Path, small_wheels: Path, pip_isolated) -> None:
    """Debian's Python (QGIS's, no torch): after the dialog's install, ``import torch`` works in the same
    process at once, from the new folder, and the dialog says so (no restart)."""
    _system_python_without_torch()
    shot = SHOTS / "install-3b-done-no-restart.png"
    SHOTS.mkdir(parents=True, exist_ok=True)
    code = f"""
import sys, time
from qgis.core import QgsApplication
app = QgsApplication([], True); app.initQgis()
from mmlc.core.runtime import qgisenv
from mmlc.ui.dialogs.install import InstallDialog
d = InstallDialog({str(tmp_path / 'profile')!r}, python={SYSTEM_PYTHON!r}, gpu=qgisenv.GpuInfo(note='test'))
d.show()
d.find_links.setText({str(small_wheels)!r}); d.offline.setChecked(True)
d.install_button.click()
end = time.monotonic() + 120
while d.state == 'installing' and time.monotonic() < end:
    app.processEvents(); time.sleep(0.05)
for _ in range(3):
    app.processEvents()
d.grab().save({str(shot)!r})
print('STATE', d.state, d.result.restart_needed)
print('STATUS', d.status.text())
import torch
print('TORCH', torch.__version__, torch.__file__)
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "build" / "pkg"), QT_QPA_PLATFORM="offscreen")
    res = subprocess.run([SYSTEM_PYTHON, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert "STATE done False" in res.stdout, res.stdout + res.stderr[-3000:]
    assert "The mmlc algorithms work now" in res.stdout
    target = tmp_path / "profile" / "python" / "mmlc-deps" / "py311"
    assert f"TORCH 2.13.0 {target / 'torch' / '__init__.py'}" in res.stdout
    assert shot.is_file()
