"""The model file: one ``.mmlc`` file = weights + a card that says how to run them.

Format: a safetensors file (no pickle, safe to open from strangers) whose header metadata holds
``mmlc.card`` (JSON, see :class:`ModelCard`) and ``mmlc.sha256`` (digest of the tensor bytes,
so corruption and truncation are refused with a clear message). ``build_model(card.architecture,
**card.build_kwargs)`` plus the weights gives the network back; nothing else is needed.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..classes import ClassInfo, classes_from_dicts
from ..engine.atomic import new_run_id, os_error, remove_temp, temp_path
from ..errors import ModelFileError
from .card_schema import parse_card, validate_card

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
    data_type: str = ""  # numpy name of the training rasters' type ("uint16"); "" in older cards
    value_range: list[float] = field(default_factory=list)  # [min, max] seen in training; [] if unknown


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
        """The card of ``text``, validated against :mod:`.card_schema` first (ModelFileError)."""
        d = parse_card(text)
        version = d.get("format_version", FORMAT_VERSION)
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
            raise ModelFileError(f"was written by a newer mmlc (format {version}); update the plugin")
        validate_card(d)
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


#: Suffix of the per-row scale stored next to an int8-quantised weight.
SCALE_SUFFIX = ".__int8_scale"


def compress_state(state_dict: dict, mode: str = "fp16") -> dict:
    """Smaller storage for shipping: ``fp16`` halves every float tensor; ``int8`` additionally
    stores each weight matrix/kernel with >= 4096 values as int8 with one float16 scale per output
    channel (symmetric, max-abs). Loading undoes it (:func:`expand_state`); an mmlc design choice
    used for the built-in models, whose files must stay small.
    """
    import torch

    out: dict = {}
    for k, v in state_dict.items():
        v = v.detach().cpu()
        if not v.is_floating_point():
            out[k] = v
        elif mode == "int8" and v.dim() >= 2 and v.numel() >= 4096:
            rows = v.reshape(v.shape[0], -1).float()
            scale = rows.abs().amax(dim=1).clamp_min(1e-12) / 127.0
            out[k] = torch.round(rows / scale[:, None]).clamp(-127, 127).to(torch.int8).reshape(v.shape)
            out[k + SCALE_SUFFIX] = scale.half()
        else:
            out[k] = v.half() if mode in ("fp16", "int8") else v
    return out


def expand_state(tensors: dict) -> dict:
    """Undo :func:`compress_state`: float32 tensors under the original keys."""
    out = {}
    for k, v in tensors.items():
        if k.endswith(SCALE_SUFFIX):
            continue
        scale = tensors.get(k + SCALE_SUFFIX)
        if scale is not None:
            v = v.float() * scale.float().reshape(-1, *([1] * (v.dim() - 1)))
        elif v.is_floating_point():
            v = v.float()
        out[k] = v
    return out


def save_model_file(path: str | Path, card: ModelCard, state_dict: dict, storage: str = "fp32") -> Path:
    """Write ``card`` + ``state_dict`` atomically (temp file beside the target, then rename).

    ``storage``: ``fp32`` (exact), ``fp16`` or ``int8`` (see :func:`compress_state`).
    """
    from safetensors.torch import save_file

    path = Path(path)
    if storage != "fp32":
        state_dict = compress_state(state_dict, storage)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    meta = {"mmlc.card": card.to_json(), "mmlc.sha256": _digest(tensors), "format": "pt"}
    tmp = temp_path(path, new_run_id())
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    except OSError as e:
        raise os_error(e, path) from e
    finally:
        remove_temp(tmp)
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
    except ModelFileError as e:
        raise ModelFileError(f"{path}: {e}") from None
    except (ValueError, TypeError, KeyError) as e:
        raise ModelFileError(f"{path}: the model card cannot be read: {e}") from e
    if card.format_version > FORMAT_VERSION:
        raise ModelFileError(f"{path} was written by a newer mmlc (format {card.format_version}); update the plugin")
    if tensors is not None and meta.get("mmlc.sha256") != _digest(tensors):
        raise ModelFileError(f"{path}: the weights do not match their checksum (file corrupted)")
    if tensors is not None:
        tensors = expand_state(tensors)
    return card, tensors


def build_from_file(path: str | Path, device: Any = "cpu"):
    """Return ``(card, model)`` with the model built, weights loaded, in eval mode on ``device``.

    Where ``torch._dynamo`` is already loaded the network is built on torch's ``meta`` device
    (shapes only) and the file's tensors are assigned to it: the random initialisation the
    constructors would run, only to be overwritten, took 70 % of the 0.35 s asanet-demo took to
    load (docs/benchmarks.md). In a fresh process it is built on the CPU instead: the meta
    device runs the constructors' initialisers through Python references that import
    ``torch._dynamo`` and sympy first, 3-6 s on this machine (more under QGIS's import hook),
    which is more than the initialisation it saves (asanet-demo 1.8-3.9 s, the others < 0.3 s).
    """
    import sys

    import torch

    from ...models import build_model

    card, tensors = load_model_file(path)
    on_meta = "torch._dynamo" in sys.modules
    try:
        with torch.device("meta") if on_meta else contextlib.nullcontext():
            model = build_model(card.architecture, **card.build_kwargs)
        model.load_state_dict(tensors, strict=True, assign=True)
    except (KeyError, RuntimeError, TypeError, ValueError, AttributeError, IndexError) as e:
        why = " ".join(str(e).split())  # torch's messages span lines: one line, bounded
        why = why if len(why) <= 300 else why[:300] + "..."
        raise ModelFileError(f"{path}: the weights do not fit architecture {card.architecture!r}: {why}") from e
    return card, model.to(device).eval()
