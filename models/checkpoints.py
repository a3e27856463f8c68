"""Reading weight files safely: ``.safetensors`` or pickle-free torch files (``weights_only``).

Shared by the ConvNeXt-V2 and ResNet loaders; each passes its own error class and wording so the
user reads what the file was meant to be.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import torch


def read_tensor_file(path: Union[str, Path], error: type[ValueError], missing: str, unreadable: str) -> object:
    """Load ``path`` on the CPU without executing pickled code.

    Raises ``error(f"{missing}: {path}...")`` when the file does not exist and
    ``error(f"... {path}: {exc}. {unreadable}")`` when it cannot be read (corrupted, truncated,
    or holding pickled objects that ``weights_only`` refuses).
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{missing}: {path}")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise error(f"cannot read {path}: {exc}. {unreadable}") from exc
