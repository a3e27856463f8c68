"""Typed errors of the core. ``ui/`` maps them to QgsProcessingException, the CLI to exit codes.

Every message says what is wrong *and* what to do about it, because it reaches an analyst.
"""
from __future__ import annotations

# A network refusing its options or inputs: ``models/`` raises it (a ``ValueError``, not an
# MmlcError, since ``models/`` does not depend on ``core/``); ui/ and the CLI report it like an
# input error.
from ..models.errors import NetworkError

__all__ = ["MmlcError", "InputError", "GridError", "ModelFileError", "OutputError", "Cancelled", "NetworkError"]


class MmlcError(Exception):
    """Base class of every error the core raises on purpose."""

    exit_code: int = 1


class InputError(MmlcError):
    """An input raster/vector/parameter cannot be used (unreadable, wrong bands, no CRS...)."""

    exit_code = 2


class GridError(InputError):
    """Inputs cannot be aligned on one grid (no overlap, missing CRS, no valid pixel)."""


class ModelFileError(MmlcError):
    """A model file is missing, corrupted, truncated, or does not fit the inputs."""

    exit_code = 3


class OutputError(MmlcError):
    """An output cannot be written (unwritable folder, would overwrite an input...)."""

    exit_code = 4


class Cancelled(MmlcError):
    """The user cancelled the run; nothing was written at the output paths."""

    exit_code = 130
