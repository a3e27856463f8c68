"""The model file: one ``.mmlc`` file = weights + a card that says how to run them.

Format: a safetensors file (no pickle, safe to open from strangers) whose header metadata holds
``mmlc.card`` (JSON, see :class:`ModelCard`) and ``mmlc.sha256`` (digest of the tensor bytes,
so corruption and truncation are refused with a clear message). ``build_model(card.architecture,
**card.build_kwargs)`` plus the weights gives the network back; nothing else is needed.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from .classes import ClassInfo, classes_from_dicts
from .errors import ModelFileError

FORMAT_VERSION = 1
SUFFIX = ".mmlc"


@dataclass
class ModalityCard:
    """One input of a trained model, in input order.

    mean/std: per-band normalisation applied after ``to_db`` ((x - mean) / std).
    to_db: convert linear intensity to decibels (10*log10) before normalising.
    """

    name: str
    bands: int
    grid_ratio: int = 1
    patch_size: int = 0
    patch_anchor: int = 0
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    to_db: bool = False
    band_names: list[str] = field(default_factory=list)


@dataclass
class ModelCard:
    """Everything needed to run a model, and where it came from."""

    architecture: str
    build_kwargs: dict[str, Any]
    head_kind: str
    modalities: list[ModalityCard]
    classes: list[ClassInfo]
    variant: str = ""
    tile_size: int = 256
    overlap: int = 32
    provenance: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_json(self) -> str:
        d = asdict(self)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelCard":
        d = json.loads(text)
        d["modalities"] = [ModalityCard(**m) for m in d["modalities"]]
        d["classes"] = classes_from_dicts(d["classes"])
        return cls(**d)


def _digest(tensors: dict) -> str:
    import torch

    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_model_file(path: str | Path, card: ModelCard, state_dict: dict) -> Path:
    """Write ``card`` + ``state_dict`` atomically (temp file beside the target, then rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    meta = {"mmlc.card": card.to_json(), "mmlc.sha256": _digest(tensors), "format": "pt"}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_card(path: str | Path) -> ModelCard:
    """Read only the card (cheap: the header), e.g. to validate inputs before loading weights."""
    return load_model_file(path, weights=False)[0]


def load_model_file(path: str | Path, weights: bool = True) -> tuple[ModelCard, Optional[dict]]:
    """Load the card and (optionally) the verified state dict; raise ModelFileError if unusable."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()} if weights else None
    except Exception as e:  # safetensors raises several types for bad headers/lengths
        raise ModelFileError(
            f"{path} is not a readable mmlc model file (corrupted or truncated?): {e}"
        ) from e
    if "mmlc.card" not in meta:
        raise ModelFileError(f"{path} is a safetensors file but not an mmlc model file (no card)")
    try:
        card = ModelCard.from_json(meta["mmlc.card"])
    except (ValueError, TypeError, KeyError) as e:
        raise ModelFileError(f"{path}: the model card cannot be read: {e}") from e
    if card.format_version > FORMAT_VERSION:
        raise ModelFileError(f"{path} was written by a newer mmlc (format {card.format_version}); update the plugin")
    if tensors is not None and meta.get("mmlc.sha256") != _digest(tensors):
        raise ModelFileError(f"{path}: the weights do not match their checksum (file corrupted)")
    return card, tensors


def build_from_file(path: str | Path, device: Any = "cpu"):
    """Return ``(card, model)`` with the model built, weights loaded, in eval mode on ``device``."""
    from ..models import build_model

    card, tensors = load_model_file(path)
    try:
        model = build_model(card.architecture, **card.build_kwargs)
        model.load_state_dict(tensors, strict=True)
    except (KeyError, RuntimeError, TypeError) as e:
        raise ModelFileError(f"{path}: the weights do not fit architecture {card.architecture!r}: {e}") from e
    return card, model.to(device).eval()
