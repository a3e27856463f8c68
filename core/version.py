"""The plugin's version, read from ``metadata.txt`` beside the package: its one source.

QGIS reads ``version=`` from that file and ``tools/package.py`` names the zip after it; the
package's ``__version__`` and the ``mmlc_version`` recorded in model cards come from here, so
``core/`` never imports the plugin root (``from ... import __version__``) to learn it.
"""
from __future__ import annotations

import functools
from pathlib import Path

#: the QGIS plugin metadata file at the package root
METADATA = Path(__file__).resolve().parent.parent / "metadata.txt"
UNKNOWN = "0.0.0"


@functools.lru_cache(maxsize=1)
def plugin_version(metadata: Path = METADATA) -> str:
    """``version=`` of ``metadata``; ``0.0.0`` when the file or the line is missing (a trimmed copy)."""
    try:
        text = metadata.read_text(encoding="utf-8")
    except OSError:
        return UNKNOWN
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "version" and value.strip():
            return value.strip()
    return UNKNOWN
