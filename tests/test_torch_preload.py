"""core.runtime.torch_preload: libtorch_cpu loaded with its own symbols first (RTLD_DEEPBIND) before
torch's import in QGIS processes, whose global scope holds QGIS's libraries and the system BLAS
(simulated here with LD_PRELOAD, as in test_torch_blas.py)."""
from __future__ import annotations

import os
import sys

import pytest
from test_torch_blas import SYSTEM_BLAS, run_probe

LINUX = sys.platform.startswith("linux") and hasattr(os, "RTLD_DEEPBIND")

PROBE = """
import json, sys
from mmlc.core.runtime.torch_preload import preload_torch
first = preload_torch()
import torch
from mmlc.core.runtime.torch_blas import rebind_torch_blas, _plt_table, _loaded_path
own_blas = _plt_table(_loaded_path("libtorch_cpu.so")).find("sgemm_") is not None
r = rebind_torch_blas()
a = torch.randn(257, 129, generator=torch.Generator().manual_seed(0))
b = torch.randn(129, 65, generator=torch.Generator().manual_seed(1))
err = float((a @ b - torch.from_numpy(a.numpy().astype("float64") @ b.numpy().astype("float64")).float()).abs().max())
try:
    torch.zeros(2)[5]
    caught = ""
except IndexError as e:  # a C++ exception from libc10 crosses into Python as before
    caught = str(e)
print(json.dumps({"library": first.library, "skipped": first.skipped, "error": first.error, "summary": first.summary(),
                  "again": preload_torch() is first, "own_blas": own_blas, "rebound": r.rebound, "err": err,
                  "caught": caught}))
"""


def _probe(env_extra: dict[str, str], code: str = PROBE) -> dict:
    """``code`` in a fresh Python; the preload switch is unset unless ``env_extra`` sets it."""
    return run_probe(code, {"MMLC_TORCH_DEEPBIND": None, **env_extra})


@pytest.mark.skipif(not LINUX or SYSTEM_BLAS is None, reason="needs Linux (glibc) + a system BLAS")
def test_preloaded_torch_binds_its_own_blas_and_still_works():
    """With the system BLAS first in the global scope (QGIS's executable), torch's library loaded
    with RTLD_DEEPBIND binds its BLAS calls to its own code: the repair after the import
    (torch_blas) finds nothing to repoint. Products and C++ exceptions behave as usual."""
    got = _probe({"LD_PRELOAD": SYSTEM_BLAS})
    assert "libtorch_cpu" in got["library"] and got["error"] == "" and got["again"]
    assert got["summary"].startswith("libtorch_cpu loaded with its own symbols first")
    assert got["err"] < 1e-3 and "out of bounds" in got["caught"]
    if got["own_blas"]:  # wheels carry MKL; Debian's python3-torch uses the system BLAS by design
        assert got["rebound"] == []
    off = _probe({"LD_PRELOAD": SYSTEM_BLAS, "MMLC_TORCH_DEEPBIND": "0"})
    assert off["library"] == "" and off["skipped"] == "MMLC_TORCH_DEEPBIND=0"
    if off["own_blas"]:  # without the preload the repair is still needed, and done
        assert {"sgemm_", "dgemm_"} <= set(off["rebound"])


@pytest.mark.skipif(not LINUX, reason="Linux (glibc) only")
def test_nothing_is_preloaded_once_torch_is_loaded():
    code = ("import json, torch\nfrom mmlc.core.runtime.torch_preload import preload_torch\n"
            "r = preload_torch()\nprint(json.dumps({'library': r.library, 'skipped': r.skipped}))")
    got = _probe({}, code)
    assert got == {"library": "", "skipped": "torch is already loaded"}
