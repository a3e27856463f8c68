"""The four operations of mmlc, the single entry point ``ui/`` and ``core/cli.py`` call.

``api.classify``, ``api.train``, ``api.distill`` and ``api.evaluate`` ARE the core functions (same
objects, so the same typed signatures and docstrings, nothing repeated here), loaded on first use
(PEP 562): importing ``mmlc.core.api`` does not import numpy, GDAL or torch (the plugin loads
without torch and offers to install it; the CLI's ``install-deps`` runs without it).
tests/test_operations.py checks that every parameter of the operation specs (core/operations)
names a keyword of these functions.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what a type checker and an IDE see; at run time the functions load on first use
    pass

#: operation -> the module that holds it
_HOMES: dict[str, str] = {
    "classify": ".engine.classify",
    "train": ".fitting.training",
    "distill": ".fitting.distill",
    "evaluate": ".assessment.evaluate",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    """The operation ``name``, imported from its module the first time it is asked for."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    fn = getattr(importlib.import_module(_HOMES[name], __package__), name)
    globals()[name] = fn  # later lookups skip this function
    return fn


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
