"""The Processing algorithms of the mmlc provider."""
from __future__ import annotations


def all_algorithms() -> list:
    """One fresh instance of every algorithm (the provider calls this in loadAlgorithms)."""
    from .classify import ClassifyAlgorithm
    from .distill import DistillAlgorithm
    from .evaluate import EvaluateAlgorithm
    from .train import TrainAlgorithm

    return [ClassifyAlgorithm(), TrainAlgorithm(), DistillAlgorithm(), EvaluateAlgorithm()]
