"""Foundation: the plugin loads in a real QGIS, registers the provider, unloads cleanly,
stays light (no torch at load) and survives a missing torch (the zip: tests/test_package.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from qgis.core import QgsApplication

ROOT = Path(__file__).resolve().parent.parent
PKG_PARENT = ROOT / "build" / "pkg"
ALG_IDS = {"mmlc:classify", "mmlc:train", "mmlc:distill", "mmlc:evaluate"}


def _env(**extra: str) -> dict:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QGIS_PLUGINPATH=str(PKG_PARENT),
               PYTHONPATH=str(PKG_PARENT))
    env.update(extra)
    return env


def test_metadata_is_complete(repo_root: Path) -> None:
    meta = dict(line.split("=", 1) for line in (repo_root / "metadata.txt").read_text().splitlines()
                if "=" in line)
    for key in ("name", "description", "about", "version", "qgisMinimumVersion", "author", "email", "tags",
                "icon", "hasProcessingProvider"):
        assert meta.get(key, "").strip(), f"metadata.txt lacks {key}"
    assert meta["hasProcessingProvider"] == "yes"
    assert meta["qgisMinimumVersion"] == "3.22"
    assert (repo_root / meta["icon"]).is_file()
    for key in ("repository", "tracker", "homepage"):
        assert "example" not in meta.get(key, "") and "TODO" not in meta.get(key, "")


def test_plugin_loads_registers_and_unloads(qgis_iface) -> None:
    import mmlc

    registry = QgsApplication.processingRegistry()
    plugin = mmlc.classFactory(qgis_iface)
    plugin.initGui()
    try:
        provider = registry.providerById("mmlc")
        assert provider is not None and provider.name() == "Multimodal Land Cover"
        assert {a.id() for a in provider.algorithms()} == ALG_IDS
        assert len(plugin.actions) == 6  # four algorithms + Install PyTorch for mmlc + Diagnostics
        assert [a.text() for a in plugin.actions[-2:]] == ["Install PyTorch for mmlc…", "Diagnostics…"]
    finally:
        plugin.unload()
    assert registry.providerById("mmlc") is None
    assert plugin.actions == []


def test_init_processing_alone_registers_the_provider() -> None:
    """qgis_process calls only initProcessing (no GUI, iface None)."""
    import mmlc

    plugin = mmlc.classFactory(None)
    plugin.initProcessing()
    try:
        assert {a.id() for a in QgsApplication.processingRegistry().providerById("mmlc").algorithms()} == ALG_IDS
    finally:
        plugin.unload()


def test_loading_the_plugin_does_not_import_torch() -> None:
    code = textwrap.dedent("""
        import sys
        from qgis.core import QgsApplication
        app = QgsApplication([], False); app.initQgis()
        import mmlc
        p = mmlc.classFactory(None); p.initProcessing()
        assert QgsApplication.processingRegistry().providerById('mmlc') is not None
        print('TORCH_LOADED' if 'torch' in sys.modules else 'TORCH_NOT_LOADED')
        p.unload()
    """)
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert "TORCH_NOT_LOADED" in out.stdout, out.stdout + out.stderr


WARMUP_PROBE = textwrap.dedent("""
    import json, sys
    from qgis.core import QgsApplication, QgsProcessingFeedback
    app = QgsApplication([], False); app.initQgis()
    import mmlc
    from mmlc.ui import warmup
    p = mmlc.classFactory(None); p.initProcessing()
    alg = QgsApplication.processingRegistry().createAlgorithmById('mmlc:classify')
    before = 'torch' in sys.modules
    widget = alg.createCustomParametersWidget(None)  # what Processing asks before opening the dialog
    started = warmup._thread is not None
    again = warmup.start()  # once per session
    messages = []
    class Feedback(QgsProcessingFeedback):
        def pushInfo(self, text):
            messages.append(text)
    alg.call_core(lambda **kw: 'torch' in sys.modules, Feedback())  # a run waits for the warm-up
    from mmlc.core.runtime import torch_blas, torch_preload
    print(json.dumps({"before": before, "widget": widget is None, "started": started, "again": again,
                      "torch": 'torch' in sys.modules, "rebound": torch_blas._result is not None,
                      "preload": torch_preload._result.summary() if torch_preload._result else None,
                      "record": warmup.record, "messages": messages}))
    p.unload()
""")


def test_opening_a_dialog_loads_torch_in_the_background() -> None:
    """Processing asks the algorithm for a custom dialog before opening QGIS's standard one: mmlc
    answers None (standard dialog) and starts importing torch on a thread, once per session; a run
    waits for it. MMLC_NO_WARMUP=1 turns it off."""
    out = subprocess.run([sys.executable, "-c", WARMUP_PROBE], env=_env(), capture_output=True, text=True, timeout=300)
    got = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else pytest.fail(out.stderr[-3000:])
    assert got["before"] is False and got["widget"] is True and got["started"] is True and got["again"] is False
    assert got["torch"] and got["rebound"] and "error" not in got["record"] and got["record"]["seconds"] > 0
    assert not any("first run in a QGIS session" in m for m in got["messages"])  # torch was ready for the run
    if sys.platform.startswith("linux"):  # torch's library was loaded with its own symbols first (torch_preload)
        assert got["preload"].startswith("libtorch_cpu loaded"), got["preload"]
    off = subprocess.run([sys.executable, "-c", WARMUP_PROBE], env=dict(_env(), MMLC_NO_WARMUP="1"),
                         capture_output=True, text=True, timeout=300)
    got = json.loads(off.stdout.strip().splitlines()[-1]) if off.returncode == 0 else pytest.fail(off.stderr[-3000:])
    assert got["started"] is False and got["record"] == {}
    assert any("first run in a QGIS session" in m for m in got["messages"])  # the run imported torch itself
    if sys.platform.startswith("linux"):  # the run preloaded torch's library itself
        assert got["preload"].startswith("libtorch_cpu loaded"), got["preload"]


def test_missing_torch_loads_and_explains_install() -> None:
    """QGIS's own Python without torch (Debian's /usr/bin/python3, outside our venv): the plugin
    loads and the algorithms point to the install dialog and the headless install-deps command. Where
    the system Python has torch itself (Debian 13's python3-torch), the child hides it: a ``None`` in
    ``sys.modules`` is what an uninstalled module looks like to ``find_spec`` and ``import``."""
    system_python = "/usr/bin/python3"
    probe = subprocess.run([system_python, "-c", "import importlib.util as u; print(u.find_spec('torch') is None)"],
                           capture_output=True, text=True)
    hide = "" if probe.stdout.strip() == "True" else "import sys; sys.modules.update(torch=None, safetensors=None)\n"
    code = hide + textwrap.dedent("""
        from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback, QgsProcessingException
        app = QgsApplication([], False); app.initQgis()
        import mmlc
        from mmlc.ui import deps
        print('MISSING', deps.missing_packages())
        p = mmlc.classFactory(None); p.initProcessing()
        alg = QgsApplication.processingRegistry().createAlgorithmById('mmlc:evaluate')
        try:
            alg.call_core(lambda **kw: None, QgsProcessingFeedback())
        except QgsProcessingException as e:
            print('MESSAGE', str(e))
        p.unload()
    """)
    out = subprocess.run([system_python, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert "MISSING ['torch', 'safetensors']" in out.stdout, out.stdout + out.stderr
    assert "Install PyTorch for mmlc" in out.stdout and "torch==2.13.0" in out.stdout
    assert "-m mmlc install-deps --profile" in out.stdout and "mmlc-deps" in out.stdout


def _qgis_process() -> str:
    for name in ("qgis_process.bin", "qgis_process"):
        for d in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin"]:
            p = Path(d) / name
            if p.is_file():
                return str(p)
    pytest.skip("qgis_process not installed")


def test_qgis_process_lists_the_provider(tmp_path: Path) -> None:
    env = _env(HOME=str(tmp_path))
    qp = _qgis_process()
    subprocess.run([qp, "plugins", "enable", "mmlc"], env=env, capture_output=True, text=True, timeout=120)
    out = subprocess.run([qp, "list"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Multimodal Land Cover" in out.stdout
    for alg in ALG_IDS:
        assert alg in out.stdout
