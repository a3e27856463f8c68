"""A model file's card read without PyTorch, and rewritten in place without touching the weights.

The Processing dialogs show a model's card (inputs, bands, classes, provenance) as soon as the
user picks a model, and check band counts before a run: that must work in a QGIS whose Python
has no PyTorch yet (``safetensors.safe_open(framework="pt")`` imports torch). A safetensors file
is an 8-byte little-endian header length, a JSON header (whose ``__metadata__`` holds the mmlc
card) and the tensor bytes, so the card is read from the header alone here.

:func:`rewrite_card` replaces the card of an existing file and copies the tensor bytes as they
are: the weights stay byte-identical, so the stored checksum (``mmlc.sha256``, a digest of the
tensors) stays valid. ``tools/card_bands.py`` uses it to put band names into the built-in cards.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, Callable

from ..errors import ModelFileError
from .modelfile import FORMAT_VERSION, ModelCard

#: Headers larger than this are refused (safetensors itself caps them at 100 MB).
MAX_HEADER_BYTES: int = 100_000_000


def _read_header(path: Path) -> tuple[dict[str, Any], int]:
    """(header JSON, byte offset where the tensor data starts)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise ModelFileError(f"{path} is not a model file (shorter than 8 bytes)")
            (n,) = struct.unpack("<Q", raw)
            if n > MAX_HEADER_BYTES or 8 + n > size:
                raise ModelFileError(f"{path} is not a readable mmlc model file (bad header length; truncated?)")
            text = f.read(n)
    except OSError as e:
        raise ModelFileError(f"cannot read the model file {path}: {e.strerror or e}") from e
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ModelFileError(f"{path} is not a readable mmlc model file (its header is not JSON)") from e
    if not isinstance(header, dict):
        raise ModelFileError(f"{path} is not a readable mmlc model file (unexpected header)")
    return header, 8 + n


def read_card_light(path: str | Path) -> ModelCard:
    """The card of a model file from its header only (no PyTorch, no weights read).

    Raises ModelFileError for a missing, truncated or foreign file, like ``modelfile.read_card``.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"model file {p} does not exist")
    header, _ = _read_header(p)
    meta = header.get("__metadata__") or {}
    if "mmlc.card" not in meta:
        raise ModelFileError(f"{p} is a safetensors file but not an mmlc model file (no card)")
    try:
        card = ModelCard.from_json(meta["mmlc.card"])
    except (ValueError, TypeError, KeyError) as e:
        raise ModelFileError(f"{p}: the model card cannot be read: {e}") from e
    if card.format_version > FORMAT_VERSION:
        raise ModelFileError(f"{p} was written by a newer mmlc (format {card.format_version}); update the plugin")
    return card


def rewrite_card(path: str | Path, edit: Callable[[ModelCard], None]) -> bool:
    """Apply ``edit`` to the card of ``path`` and rewrite the file atomically if it changed.

    The tensor entries of the header and the tensor bytes are copied unchanged (offsets are
    relative to the data section, so a longer card does not move them); returns whether the
    file was rewritten.
    """
    p = Path(path)
    header, data_start = _read_header(p)
    meta = dict(header.get("__metadata__") or {})
    if "mmlc.card" not in meta:
        raise ModelFileError(f"{p} is not an mmlc model file (no card)")
    card = ModelCard.from_json(meta["mmlc.card"])
    edit(card)
    text = card.to_json()
    if text == meta["mmlc.card"]:
        return False
    meta["mmlc.card"] = text
    header = {**header, "__metadata__": meta}
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # safetensors aligns the data section to 8 bytes
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    try:
        with p.open("rb") as src, tmp.open("wb") as dst:
            dst.write(struct.pack("<Q", len(blob)))
            dst.write(blob)
            src.seek(data_start)
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return True
