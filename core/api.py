"""The four operations of mmlc, with plain-value signatures shared by Processing and the CLI.

Each lives in its own module; this module is the single entry point ``ui/`` and ``core/cli.py``
call. Imports are lazy so importing ``mmlc.core.api`` does not import torch.
"""
from __future__ import annotations

from typing import Any


def classify(*args: Any, **kwargs: Any):
    """Classify rasters with a model file; see :func:`mmlc.core.engine.classify.classify`."""
    from .engine.classify import classify as _classify

    return _classify(*args, **kwargs)


def train(*args: Any, **kwargs: Any):
    """Train a model file; see :func:`mmlc.core.fitting.training.train`."""
    from .fitting.training import train as _train

    return _train(*args, **kwargs)


def distill(*args: Any, **kwargs: Any):
    """Distil a SAR student from an optical teacher; see :func:`mmlc.core.fitting.distill.distill`."""
    from .fitting.distill import distill as _distill

    return _distill(*args, **kwargs)


def evaluate(*args: Any, **kwargs: Any):
    """Compare a class raster with reference labels; see :func:`mmlc.core.assessment.evaluate.evaluate`."""
    from .assessment.evaluate import evaluate as _evaluate

    return _evaluate(*args, **kwargs)
