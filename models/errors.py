"""The one error type of the networks: a network refusing its options or its inputs.

``models/`` depends on torch only, so it cannot raise the typed errors of ``core/``; it raises
:class:`NetworkError` instead (a ``ValueError``, so ``except ValueError`` keeps working), and the
callers (``core``'s loops, the CLI, the Processing algorithms) turn exactly this type into their
own clear messages, while any other ``ValueError`` (a bug) stays a bug with its traceback.
"""
from __future__ import annotations


class NetworkError(ValueError):
    """A network's options or inputs are not valid for it (message says what and how to fix)."""
