"""One declarative spec per operation (classify, train, distill, evaluate): see :mod:`.spec`.

The Processing algorithms, the CLI, the docs' parameter tables and the output-path checks are
generated from these. Plain data (no qgis, no torch), importable anywhere.
"""
from __future__ import annotations

from .classify import CLASSIFY
from .distill import DISTILL
from .evaluate import EVALUATE
from .spec import Operation, Output, Param
from .train import TRAIN

#: The operations in the provider's and the CLI's order.
OPERATIONS: dict[str, Operation] = {op.id: op for op in (CLASSIFY, TRAIN, DISTILL, EVALUATE)}


def get_operation(operation_id: str) -> Operation:
    """The spec of ``operation_id`` (``classify``, ``train``, ``distill``, ``evaluate``)."""
    try:
        return OPERATIONS[operation_id]
    except KeyError:
        raise ValueError(f"unknown operation {operation_id!r}; known: {', '.join(OPERATIONS)}") from None


__all__ = ["CLASSIFY", "DISTILL", "EVALUATE", "OPERATIONS", "TRAIN", "Operation", "Output", "Param", "get_operation"]
