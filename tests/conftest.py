"""Shared fixtures: the package root, the shipped sample data, a scratch folder per test."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import torch  # noqa: E402

# One intra-op thread: on the 2-core CI machine (shared with the QGIS event loop and GDAL threads)
# two spinning OpenMP threads make small forward passes several times slower, not faster.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "resources" / "sample_data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def samples() -> Path:
    """resources/sample_data (never ../shared: the repository is self-contained)."""
    return SAMPLES


@pytest.fixture(scope="session")
def bigearthnet(samples: Path) -> Path:
    return samples / "bigearthnet"


@pytest.fixture(scope="session")
def spacenet6(samples: Path) -> Path:
    return samples / "share_alike" / "spacenet6"


@pytest.fixture(scope="session")
def nc_landsat(samples: Path) -> Path:
    return samples / "share_alike" / "nc_landsat"


@pytest.fixture(scope="module")
def provider(qgis_app, qgis_processing):
    """The plugin's Processing provider ``mmlc``, registered for one test module and unloaded after.

    qgis imports stay inside: modules without QGIS tests never load it through this conftest."""
    import mmlc
    from qgis.core import QgsApplication

    plugin = mmlc.classFactory(None)
    plugin.initProcessing()
    yield QgsApplication.processingRegistry().providerById("mmlc")
    plugin.unload()


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session", autouse=True)
def inputs_are_never_modified():
    """After the whole session the shipped sample data is byte-for-byte where it was: no test,
    and no code under test, wrote, changed or left a file among the inputs."""
    before = _snapshot(SAMPLES)
    yield
    after = _snapshot(SAMPLES)
    added = sorted(set(after) - set(before))
    changed = sorted(k for k in before if k in after and after[k] != before[k])
    removed = sorted(set(before) - set(after))
    assert not (added or changed or removed), f"sample data modified: added {added}, changed {changed}, removed {removed}"
