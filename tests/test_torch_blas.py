"""core.runtime.torch_blas: torch keeps its own BLAS when the host process put another one in the global
scope (QGIS's executable links the system OpenBLAS; simulated here with LD_PRELOAD)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_BLAS = next((p for p in ("/usr/lib/x86_64-linux-gnu/libblas.so.3", "/usr/lib/aarch64-linux-gnu/libblas.so.3")
                    if Path(p).exists()), None)

PROBE = """
import ctypes, json, sys
import torch
from mmlc.core.runtime.torch_blas import rebind_torch_blas, _loaded_path
def owner_of_torch_sgemm():
    # where libtorch_cpu's own PLT slot for sgemm_ points now
    from mmlc.core.runtime import torch_blas as tb
    path = _loaded_path("libtorch_cpu.so")
    own = ctypes.CDLL(path, mode=__import__("os").RTLD_NOLOAD | __import__("os").RTLD_LAZY)
    table = tb._plt_table(path)
    i = table.find("sgemm_")
    if i is None:  # a torch without a BLAS of its own (Debian's links the system's)
        return None
    off, val = int(table.offsets[i]), int(table.values[i])
    base = ctypes.cast(own.sgemm_, ctypes.c_void_p).value - val
    return tb._library_of(ctypes.CDLL(None), ctypes.c_void_p.from_address(base + off).value)
before = owner_of_torch_sgemm()
r = rebind_torch_blas()
after = owner_of_torch_sgemm()
a = torch.randn(257, 129, generator=torch.Generator().manual_seed(0))
b = torch.randn(129, 65, generator=torch.Generator().manual_seed(1))
err = float((a @ b - torch.from_numpy(a.numpy().astype("float64") @ b.numpy().astype("float64")).float()).abs().max())
print(json.dumps({"own_blas": before is not None, "before": before, "after": after, "rebound": r.rebound, "interposers": r.interposers,
                  "skipped": r.skipped, "again": rebind_torch_blas() is r, "err": err, "summary": r.summary()}))
"""


def run_probe(code: str, env_extra: dict[str, str | None]) -> dict:
    """Run ``code`` in a fresh Python with mmlc importable and ``env_extra`` set (None: unset); its
    last stdout line is JSON."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "build" / "pkg"))
    for key, value in env_extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def _probe(env_extra: dict[str, str]) -> dict:
    return run_probe(PROBE, env_extra)


@pytest.mark.skipif(not sys.platform.startswith("linux") or SYSTEM_BLAS is None, reason="needs Linux + a system BLAS")
def test_interposed_blas_is_pointed_back_at_torch():
    got = _probe({"LD_PRELOAD": SYSTEM_BLAS})
    if not got["own_blas"]:
        pytest.skip("this torch has no BLAS of its own (test_torch_without_own_blas_is_left_alone covers it)")
    assert "libtorch_cpu" not in got["before"]  # the preloaded BLAS had captured torch's sgemm_
    assert "libtorch_cpu" in got["after"]
    assert {"sgemm_", "dgemm_", "sgetrf_"} <= set(got["rebound"])
    assert got["interposers"] and all("libtorch" not in p for p in got["interposers"])
    assert got["again"] and got["err"] < 1e-3
    assert "pointed back" in got["summary"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_plain_process_is_left_alone_and_switch_off_works():
    got = _probe({})
    if not got["own_blas"]:
        pytest.skip("this torch has no BLAS of its own (test_torch_without_own_blas_is_left_alone covers it)")
    assert got["rebound"] == [] and got["skipped"] == "" and "libtorch_cpu" in got["after"]
    assert got["summary"] == "torch uses its own BLAS"
    if SYSTEM_BLAS is not None:
        off = _probe({"LD_PRELOAD": SYSTEM_BLAS, "MMLC_KEEP_TORCH_BLAS_BINDING": "1"})
        assert off["rebound"] == [] and "MMLC_KEEP_TORCH_BLAS_BINDING" in off["skipped"]
        assert "libtorch_cpu" not in off["after"]


@pytest.mark.skipif(not sys.platform.startswith("linux") or SYSTEM_BLAS is None, reason="needs Linux + a system BLAS")
def test_torch_without_own_blas_is_left_alone():
    """A torch built against the system BLAS (Debian's python3-torch) defines no sgemm_ of its
    own: nothing BLAS-like is rebound, and its products stay right, even with the system BLAS
    preloaded as QGIS's executable has it."""
    got = _probe({"LD_PRELOAD": SYSTEM_BLAS})
    if got["own_blas"]:
        pytest.skip("this torch carries its own BLAS (the tests above cover it)")
    assert not {"sgemm_", "dgemm_", "sgetrf_"} & set(got["rebound"])
    assert got["skipped"] == "" and got["err"] < 1e-3
