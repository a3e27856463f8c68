"""Run ``qgis_process`` against this checkout: the plugin on QGIS_PLUGINPATH, enabled in a private
profile, and the venv's packages (torch) visible to QGIS's embedded Python.

Debian 12's ``/usr/bin/qgis_process`` wrapper passes ``--noversioncheck``, which the 3.22 binary
rejects, so ``qgis_process.bin`` is used when it exists.
"""
from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG_PARENT = ROOT / "build" / "pkg"


def qgis_process_binary() -> str:
    for name in ("qgis_process.bin", "qgis_process"):
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if found:
            return found
    raise FileNotFoundError("qgis_process not found: install QGIS (apt-get install qgis)")


def environment(profile_dir: Path) -> dict[str, str]:
    """Environment for qgis_process: plugin path, private profile, venv site-packages."""
    site_dirs = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    env = dict(os.environ)
    env.update(
        QT_QPA_PLATFORM="offscreen",
        GDAL_PAM_ENABLED="NO",  # no .aux.xml histogram caches written beside the inputs
        QGIS_PLUGINPATH=str(PKG_PARENT),
        QGIS_CUSTOM_CONFIG_PATH=str(profile_dir),
        PYTHONPATH=os.pathsep.join([str(PKG_PARENT), *dict.fromkeys(site_dirs)]),
    )
    return env


def enable_plugin(profile_dir: Path) -> dict[str, str]:
    """Enable mmlc once in ``profile_dir`` (idempotent) and return the environment to use."""
    env = environment(profile_dir)
    subprocess.run([qgis_process_binary(), "plugins", "enable", "mmlc"], env=env, capture_output=True,
                   text=True, timeout=300)
    return env


def run_algorithm(alg: str, params: dict[str, str], profile_dir: Path, timeout: int = 1800
                  ) -> subprocess.CompletedProcess:
    """``qgis_process run alg -- KEY=VALUE ...`` with the plugin enabled."""
    env = enable_plugin(profile_dir)
    args = [qgis_process_binary(), "run", alg, "--"] + [f"{k}={v}" for k, v in params.items()]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


if __name__ == "__main__":  # e.g. python -m mmlc.tools.qgis_env list
    prof = ROOT / "build" / "qgis-profile"
    sys.exit(subprocess.run([qgis_process_binary(), *sys.argv[1:]], env=enable_plugin(prof)).returncode)
