"""``python -m mmlc install-deps`` and ``python -m mmlc diagnostics``: the commands that must run
without torch (``__main__`` dispatches them before anything imports torch).

Exit codes: 0 done, 2 bad usage, 5 install failed (the folder is as it was), 130 cancelled.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from .runtime import diagnostics, installer, qgisenv

COMMANDS = ("install-deps", "diagnostics")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mmlc", description="mmlc dependency tools (no torch needed)")
    sub = p.add_subparsers(dest="command", required=True)
    add_arguments(sub.add_parser("install-deps", help=INSTALL_HELP))
    d = sub.add_parser("diagnostics", help="print the diagnostics report")
    d.add_argument("--profile", type=Path, default=None, help="QGIS profile folder (default: QGIS's default profile)")
    return p


INSTALL_HELP = "install torch and safetensors into the QGIS profile's mmlc-deps folder"


def add_arguments(sp: argparse.ArgumentParser) -> None:
    """The options of install-deps (also listed by the main CLI's --help)."""
    sp.add_argument("--profile", type=Path, default=None,
                    help="QGIS profile folder (default: QGIS's default profile; QGIS_CUSTOM_CONFIG_PATH honoured)")
    sp.add_argument("--find-links", action="append", default=[], metavar="DIR",
                    help="local folder of wheels (repeatable)")
    sp.add_argument("--index-url", default=None, metavar="URL", help="package index to use instead of PyTorch's + PyPI")
    sp.add_argument("--no-index", action="store_true", help="offline: use only the --find-links folders")
    build = sp.add_mutually_exclusive_group()
    build.add_argument("--cpu", action="store_true", help="install the CPU build even if a GPU is present")
    build.add_argument("--cuda", default=None, metavar="X.Y", help="install the CUDA X.Y build")
    sp.add_argument("--python", default=None, help="QGIS's Python interpreter (default: the running one)")
    sp.add_argument("--yes", "-y", action="store_true", help="do not ask before installing")


def _install(a: argparse.Namespace) -> int:
    profile = a.profile or qgisenv.default_profile_dir()
    try:
        plan = installer.make_plan(profile, python=a.python or sys.executable, cpu=a.cpu, cuda=a.cuda,
                                   index_url=a.index_url, find_links=a.find_links, no_index=a.no_index)
    except installer.InstallError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(plan.describe(), flush=True)
    if not a.yes and sys.stdin.isatty():
        if input("Install? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing installed")
            return 0
    last = [-1]

    def progress(fraction: float) -> None:
        step = int(fraction * 10)
        if step != last[0]:
            last[0] = step
            print(f"progress {fraction * 100:.0f}%", file=sys.stderr, flush=True)

    try:
        result = installer.run_install(plan, on_line=lambda s: print(s, flush=True), on_progress=progress)
    except KeyboardInterrupt:
        print("interrupted; the package folder is as it was", file=sys.stderr)
        return 130
    except installer.InstallError as e:
        print(f"error: {e}\nfull log: {plan.log_path}", file=sys.stderr)
        return e.exit_code
    print(f"done: torch {result.torch_version} (CUDA available: {result.cuda_available}) in {result.target}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    try:
        a = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as e:
        return int(e.code or 0)
    if a.command == "install-deps":
        return _install(a)
    print(diagnostics.report(a.profile or qgisenv.default_profile_dir()))
    return 0
