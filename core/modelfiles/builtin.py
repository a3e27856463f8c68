"""Built-in models: model files shipped in ``resources/models/<name>.mmlc``, found by name.

``classify(model="...")`` accepts a path to a model file or one of these names, so the demo and
the Processing algorithms can offer trained models without the user hunting for files.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ModelFileError
from .modelfile import SUFFIX

#: Folder of the shipped model files (inside the package, so it travels with the plugin).
MODELS_DIR: Path = Path(__file__).resolve().parents[2] / "resources" / "models"


def list_builtin() -> list[str]:
    """Names of the shipped models (file stems), sorted."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.stem for p in MODELS_DIR.glob(f"*{SUFFIX}") if p.is_file())


def resolve_model(name_or_path: str | Path) -> Path:
    """A model file path for a path or a built-in name; ModelFileError listing the built-ins."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    text = str(name_or_path)
    names = list_builtin()
    looks_like_path = p.suffix == SUFFIX or "/" in text or "\\" in text
    if not looks_like_path:
        for n in names:
            if n.lower() == text.lower():
                return MODELS_DIR / f"{n}{SUFFIX}"
    known = ", ".join(names) if names else "none installed"
    what = f"model file {text} does not exist" if looks_like_path else f"unknown model {text!r}"
    raise ModelFileError(f"{what}; give the path of a {SUFFIX} model file or a built-in model name ({known})")
