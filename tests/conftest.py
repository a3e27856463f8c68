"""Shared fixtures: the package root, the shipped sample data, a scratch folder per test."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

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
