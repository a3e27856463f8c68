"""``python -m mmlc``: the headless command line (see :mod:`mmlc.core.cli`)."""
from __future__ import annotations

import sys

from .core.cli import main

if __name__ == "__main__":
    sys.exit(main())
