"""Device choice in one place: ``auto`` = CUDA if available, then Apple MPS, then CPU.

Every operation resolves its device here before computing, so this is also where torch is kept
on its own BLAS inside hosts (QGIS) that bind it to theirs (:mod:`.torch_blas`).
"""
from __future__ import annotations

from .errors import InputError
from .runtime.torch_blas import rebind_torch_blas


def resolve_device(name: str = "auto"):
    """Turn ``auto``/``cpu``/``cuda``/``cuda:N``/``mps`` into a ``torch.device``.

    Raises InputError when the requested device does not exist on this machine.
    """
    import torch

    rebind_torch_blas()

    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(
                f"device {name!r} was requested but this PyTorch sees no CUDA GPU; "
                "use DEVICE=auto or cpu, or install a CUDA build of torch"
            )
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return dev
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InputError("device 'mps' was requested but Apple MPS is not available")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise InputError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")


def autocast_dtype(device, precision: str = "auto"):
    """The autocast dtype for ``device``: bf16 where supported on CUDA, else fp16; None on CPU.

    ``precision``: ``auto`` (mixed precision on CUDA only), ``fp32`` (never), ``bf16``/``fp16``.
    """
    import torch

    if precision == "fp32" or device.type != "cuda":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16
