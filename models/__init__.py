"""Networks in plain PyTorch (no qgis, no raster I/O): tensors in, tensors out.

``build_model(name, **kwargs)`` and ``list_models()`` are the public entry points; see
:mod:`.registry` for the contract every network fulfils.
"""
from .registry import IGNORE_INDEX, ModalitySpec, ModelSpec, Recipe, build_model, get_spec, list_models

__all__ = ["IGNORE_INDEX", "ModalitySpec", "ModelSpec", "Recipe", "build_model", "get_spec", "list_models"]
