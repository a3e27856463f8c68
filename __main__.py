"""``python -m mmlc``: the headless command line (see :mod:`mmlc.core.cli`).

``install-deps`` and ``diagnostics`` are dispatched first, before anything imports torch, since
they are what a user without torch runs. For the other commands, when torch is not importable,
the package folder the installer filled in QGIS's default profile is put on ``sys.path``.
"""
from __future__ import annotations

import importlib.util
import sys


def _command(argv: list[str]) -> str:
    return next((a for a in argv if not a.startswith("-")), "")


def run(argv: list[str]) -> int:
    from .core import install_cli
    from .core.runtime import qgisenv

    if _command(argv) in install_cli.COMMANDS:
        return install_cli.main([a for a in argv if a not in ("-q", "--quiet")])
    if importlib.util.find_spec("torch") is None:
        qgisenv.activate_for_profile(qgisenv.default_profile_dir())
    from .core.cli import main

    return main(argv)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
