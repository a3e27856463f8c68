"""Print the stack this Python runs on, in one line: QGIS, Python, GDAL, numpy, torch.

``make test`` prints it before each stack's run so a log says which stack passed or failed.
Run with the interpreter under test: ``.venv/bin/python tools/stack.py``.
"""
from __future__ import annotations

import platform


def _version(module: str, attribute: str = "__version__") -> str:
    try:
        mod = __import__(module, fromlist=["_"])
        return str(getattr(mod, attribute))
    except Exception as exc:  # a missing piece is reported, not fatal: this is a log line
        return f"missing ({type(exc).__name__})"


def describe() -> str:
    try:
        from qgis.core import Qgis

        qgis = Qgis.version()
    except Exception as exc:
        qgis = f"missing ({type(exc).__name__})"
    return (f"QGIS {qgis}, Python {platform.python_version()}, GDAL {_version('osgeo.gdal')}, "
            f"numpy {_version('numpy')}, torch {_version('torch')}")


if __name__ == "__main__":
    print(describe())
