"""One declarative spec per operation (classify, train, distill, evaluate): see :mod:`.spec`.

The Processing algorithms, the CLI, the docs' parameter tables and the output-path checks are
generated from these. Plain data (no qgis, no torch), importable anywhere.

Adding a parameter (e.g. SCENES to train):

1. a :class:`Param` in the operation's module here, at its place in the dialog's order (ids are
   frozen once released): kind, label, help, cli_help, doc/doc_default, default and range,
   ``advanced``, ``surfaces`` (CLI_ONLY / PROCESSING_ONLY from :mod:`.shared` if not both),
   ``core`` (the core keyword it feeds), ``cli_default_note`` if the CLI, leaving it out, gets
   something else than the dialog's default;
2. read it: ``processAlgorithm`` of ui/algorithms/<op>.py and ``_run_<op>`` of core/cli.py
   (the definitions themselves are generated; an output also gets its side-cars checked by
   core/engine/output_paths.py from ``output=``);
3. the core function's keyword, repeated in core/api.py with its type;
4. its id in tests/test_operations.py (FROZEN_PROCESSING / CLI_ONLY), then
   ``python -m mmlc.tools.param_tables`` and ``python -m mmlc.tools.docs_html`` for the docs.
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
