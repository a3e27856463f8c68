"""Headless command line: ``python -m mmlc train|classify|distill|evaluate|models``, plus
``install-deps`` and ``diagnostics`` (:mod:`.install_cli`, which runs without torch).

The same ``core.api`` functions as the Processing algorithms, with the same parameter ids as
options (``--INPUT_1``, ``--OUTPUT_MODEL``...; lower-case aliases ``--input-1``/``--input_1``
work too). Progress goes to a tqdm bar when tqdm is importable and stderr is a terminal, else to
plain lines. Exit codes: 0 success, ``MmlcError.exit_code`` for typed errors (2 input, 3 model
file, 4 output, 130 cancelled), 2 for bad command-line usage (argparse), 1 for anything else.

``torchrun --nproc_per_node=N -m mmlc train ...`` trains with DistributedDataParallel
(``core/fitting/ddp.py``); only rank 0 prints progress and writes files. ``python -m mmlc.core.torchrun``
takes the same arguments and also works with a torch built without libuv (Debian's python3-torch).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Sequence

from .errors import Cancelled, MmlcError, NetworkError
from .operations import OPERATIONS, Operation
from .progress import NullProgress

OptionTable = list[tuple[str, Any, str]]


def option_table(operation: Operation) -> OptionTable:
    """(id, type, help) of each command-line option of ``operation``, from its spec
    (core/operations): the parameter ids as options, type ``"flag"`` = store_true."""
    return [(p.id, p.cli_type, p.cli_help) for p in operation.cli_params()]


# Options per operation, generated from the operation specs (the Processing parameters come from
# the same specs; tests/test_operations.py checks both agree).
_CLASSIFY = option_table(OPERATIONS["classify"])
_TRAIN = option_table(OPERATIONS["train"])
_DISTILL = option_table(OPERATIONS["distill"])
_EVALUATE = option_table(OPERATIONS["evaluate"])
# "A|B": one of A and B.
_REQUIRED = {op.id: set(op.cli_required) for op in OPERATIONS.values()}


class TerminalProgress(NullProgress):
    """Progress on a terminal: a tqdm bar if available (and stderr is a TTY), else plain lines."""

    def __init__(self, quiet: bool = False, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.stop_requested = False  # set by SIGTERM: the run stops at its next cancel check
        self._bar = None
        self._last = -1
        if not quiet and getattr(self.stream, "isatty", lambda: False)():
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=1000, file=self.stream, unit="‰", leave=True)
            except ImportError:
                self._bar = None

    def cancelled(self) -> bool:
        return self.stop_requested

    def set_fraction(self, fraction: float) -> None:
        if self.quiet:
            return
        permille = int(max(0.0, min(1.0, fraction)) * 1000)
        if self._bar is not None:
            self._bar.update(permille - self._bar.n)
        elif permille // 100 != self._last // 100 or permille == 1000 and self._last != 1000:
            print(f"progress {permille / 10:.0f}%", file=self.stream, flush=True)
        self._last = permille

    def info(self, message: str) -> None:
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def warn(self, message: str) -> None:
        if self._bar is not None:
            self._bar.write(f"warning: {message}", file=self.stream)
        else:
            print(f"warning: {message}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _add(parser: argparse.ArgumentParser, specs: Sequence[tuple[str, Any, str]]) -> None:
    for pid, typ, help_ in specs:
        names = [f"--{pid}"]
        for alias in (f"--{pid.lower()}", f"--{pid.lower().replace('_', '-')}"):
            if alias not in names:
                names.append(alias)
        if typ == "flag":
            parser.add_argument(*names, dest=pid, action="store_true", help=help_)
        else:
            parser.add_argument(*names, dest=pid, type=typ, default=None, help=help_)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``python -m mmlc``."""
    p = argparse.ArgumentParser(prog="python -m mmlc", description="multimodal land-cover classification (mmlc)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    sub = p.add_subparsers(dest="command", required=True)
    for op in OPERATIONS.values():
        _add(sub.add_parser(op.id, help=op.cli_summary), option_table(op))
    sub.add_parser("models", help="list architectures and built-in models")
    from . import install_cli  # torch-free commands (python -m mmlc dispatches them before torch loads)

    install_cli.add_arguments(sub.add_parser("install-deps", help=install_cli.INSTALL_HELP))
    sub.add_parser("diagnostics", help="print the diagnostics report").add_argument("--profile", default=None)
    return p


def _extent(text: str | None) -> tuple[float, float, float, float] | None:
    if not text:
        return None
    from .errors import InputError

    core = text.split("[")[0].strip()
    try:
        xmin, ymin, xmax, ymax = (float(v) for v in core.replace(";", ",").split(","))
    except ValueError as e:
        raise InputError(f"EXTENT {text!r} must be xmin,ymin,xmax,ymax") from e
    return xmin, ymin, xmax, ymax


def _inputs(*paths: str | None) -> list[str]:
    return [p for p in paths if p]


def _labels(a: argparse.Namespace, raster_id: str = "LABELS") -> str | None:
    """The labels file: ``raster_id`` or ``<raster_id>_VECTOR`` (the Processing split), not both."""
    raster, vector = getattr(a, raster_id), getattr(a, f"{raster_id}_VECTOR")
    if raster and vector:
        from .errors import InputError

        raise InputError(f"give either --{raster_id} (class raster) or --{raster_id}_VECTOR (polygons/points), "
                         "not both")
    return raster or vector


def _run_train(a: argparse.Namespace, progress: Any) -> str:
    from . import api

    scenes = None
    if a.DATASET:
        from .data.datasets import scenes_from_dataset
        from .errors import InputError

        kind, sep, folder = a.DATASET.partition(":")
        if not sep:
            raise InputError("DATASET must be KIND:FOLDER, e.g. whu-opt-sar:/data/WHU-OPT-SAR")
        scenes = scenes_from_dataset(kind, folder, "train")
    if a.SCENES:
        from .data.scene_table import read_scene_table

        scenes = read_scene_table(a.SCENES)
    if not a.ARCHITECTURE:
        from .errors import InputError

        raise InputError(f"--ARCHITECTURE is required ({', '.join(OPERATIONS['train'].param('ARCHITECTURE').choices)})")
    kwargs: dict[str, Any] = dict(
        scenes=scenes, variant=a.VARIANT, label_field=a.LABEL_FIELD, classes=a.CLASSES, epochs=a.EPOCHS,
        batch_size=a.BATCH_SIZE, learning_rate=a.LEARNING_RATE, tile_size=a.TILE_SIZE,
        init_model=a.INIT_MODEL, device=a.DEVICE or "auto", output_report=a.OUTPUT_REPORT,
        seed=a.SEED or 0, accumulate=a.ACCUMULATE or 1, patience=a.PATIENCE, class_balance=a.CLASS_BALANCE, refit_epochs=a.REFIT_EPOCHS,
        max_steps_per_epoch=a.MAX_STEPS_PER_EPOCH, labels_note=a.LABELS_NOTE or "", progress=progress,
        stream=True if a.STREAM else None,
    )
    if a.VALIDATION_FRACTION is not None:
        kwargs["validation_fraction"] = a.VALIDATION_FRACTION
    r = api.train(a.ARCHITECTURE, _inputs(a.INPUT_1, a.INPUT_2) or None, _labels(a), a.OUTPUT_MODEL, **kwargs)
    best = "n/a" if r.best_metric != r.best_metric else f"{r.best_metric:.4f}"
    return f"model written to {r.model_path} (best {r.metric_name} {best} at epoch {r.best_epoch})"


def _run_classify(a: argparse.Namespace, progress: Any) -> str:
    from . import api

    kwargs: dict[str, Any] = dict(
        confidence=a.OUTPUT_CONFIDENCE, vector=a.OUTPUT_VECTOR, extent=_extent(a.EXTENT), mask=a.MASK or None,
        tile_size=a.TILE_SIZE,
        overlap=a.OVERLAP, device=a.DEVICE or "auto", progress=progress,
    )
    if a.BATCH_SIZE:
        kwargs["batch_size"] = a.BATCH_SIZE
    if a.SCENES:
        from .engine.mosaic import classify_many

        if not a.OUTPUT_FOLDER:
            from .errors import InputError

            raise InputError("--SCENES writes one output per scene: give --OUTPUT_FOLDER")
        if a.OUTPUT_CONFIDENCE or a.OUTPUT_VECTOR or a.EXTENT:
            from .errors import InputError

            raise InputError("--SCENES writes class rasters only: leave out --OUTPUT_CONFIDENCE, --OUTPUT_VECTOR "
                             "and --EXTENT")
        for key in ("progress", "confidence", "vector", "extent"):
            kwargs.pop(key)
        r = classify_many(a.MODEL, a.SCENES, a.OUTPUT_FOLDER, progress=progress, **kwargs)
        return f"{len(r.outputs)} scene(s) classified into {a.OUTPUT_FOLDER}" + (f", mosaic {r.mosaic}" if r.mosaic else "")
    api.classify(a.MODEL, _inputs(a.INPUT_1, a.INPUT_2), a.OUTPUT, **kwargs)
    return f"classification written to {a.OUTPUT}"


def _run_distill(a: argparse.Namespace, progress: Any) -> str:
    from . import api

    scenes = None
    if a.SCENES:
        from .data.scene_table import read_scene_table

        scenes = read_scene_table(a.SCENES, n_inputs=2)
    r = api.distill(
        a.TEACHER, a.INPUT_OPTICAL, a.INPUT_SAR, _labels(a), a.OUTPUT_MODEL, label_field=a.LABEL_FIELD, scenes=scenes,
        epochs=a.EPOCHS, batch_size=a.BATCH_SIZE, learning_rate=a.LEARNING_RATE, temperature=a.TEMPERATURE,
        feature_weight=a.FEATURE_WEIGHT, kd_weight=a.KD_WEIGHT, device=a.DEVICE or "auto",
        output_report=a.OUTPUT_REPORT, compare_sar_only=not a.NO_COMPARE, seed=a.SEED or 0, progress=progress,
        stream=True if a.STREAM else None,
    )
    return f"student written to {getattr(r, 'model_path', a.OUTPUT_MODEL)}"


def _run_evaluate(a: argparse.Namespace, progress: Any) -> str:
    from . import api

    r = api.evaluate(a.PREDICTION, _labels(a, "REFERENCE"), label_field=a.LABEL_FIELD, output_report=a.OUTPUT_REPORT,
                     output_table=a.OUTPUT_TABLE, progress=progress)
    m = getattr(r, "metrics", None)
    if m is not None and hasattr(m, "summary"):
        return " ".join(f"{k}={v:.4f}" for k, v in m.summary().items())
    return "evaluation done"


def _list_models() -> str:
    from ..models.registry import get_spec, list_models, list_variants

    lines = ["architectures:"]
    for name in list_models():
        try:
            spec = get_spec(name)
            mods = "+".join(f"{m.name}" + (f"(x{m.grid_ratio})" if m.grid_ratio != 1 else "") for m in spec.modalities)
            names = list_variants(name)  # the registry's name table, default first
            variants = f" variants: {', '.join(names)}" if names else ""
            lines.append(f"  {name:<10} {spec.head_kind:<6} {mods}{variants}")
        except Exception as e:  # a network that fails to import is listed, not fatal
            lines.append(f"  {name:<10} (unavailable: {e})")
    try:
        from .modelfiles.builtin import list_builtin

        builtins = list_builtin()
    except Exception:  # built-ins are optional
        builtins = []
    lines.append("built-in models:" + ("" if builtins else " none"))
    lines.extend(f"  {b}" for b in builtins)
    return "\n".join(lines)


_COMMANDS: dict[str, Callable[[argparse.Namespace, Any], str]] = {
    "train": _run_train, "classify": _run_classify, "distill": _run_distill, "evaluate": _run_evaluate,
}


def _terminate_like_interrupt(progress: TerminalProgress) -> Any:
    """SIGTERM (``kill``, a scheduler's time limit) ends the run like a cancel: the first one asks
    the run to stop at its next cancel check (between batches), so every thread and writer closes
    in order, temporary files are removed, nothing is placed at the output paths, exit 130. Raising
    KeyboardInterrupt at once instead could land inside a clean-up and leave a reader thread inside
    GDAL at exit (seen as a crash in GDAL's shutdown). A second SIGTERM interrupts at once. Only
    the main thread can set it; returns the previous handler (None when not set)."""
    import signal
    import threading

    def on_sigterm(signum: int, frame: Any) -> None:
        if progress.stop_requested:
            raise KeyboardInterrupt
        progress.stop_requested = True

    if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGTERM"):
        return signal.signal(signal.SIGTERM, on_sigterm)
    return None


def _restore_sigterm(previous: Any) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code (see the module docstring)."""
    parser = build_parser()
    try:
        a = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as e:  # argparse: --help (0) or bad usage (2)
        return int(e.code or 0)
    if a.command in ("install-deps", "diagnostics"):
        from . import install_cli

        args = list(argv) if argv is not None else sys.argv[1:]
        return install_cli.main([x for x in args if x not in ("-q", "--quiet")])
    if a.command == "models":
        print(_list_models())
        return 0
    missing = [pid for pid in sorted(_REQUIRED[a.command])
               if all(getattr(a, alt, None) in (None, "") for alt in pid.split("|"))]
    if missing:
        parser.print_usage(sys.stderr)
        wanted = [" or ".join("--" + alt for alt in m.split("|")) for m in missing]
        print(f"error: {a.command} needs {', '.join(wanted)}", file=sys.stderr)
        return 2
    rank = int(os.environ.get("RANK", "0"))
    progress = TerminalProgress(quiet=a.quiet or rank != 0)
    previous = _terminate_like_interrupt(progress)
    try:
        message = _COMMANDS[a.command](a, progress)
    except Cancelled:
        progress.close()
        print("interrupted", file=sys.stderr)
        return 130
    except MmlcError as e:
        progress.close()
        print(f"error: {e}", file=sys.stderr)
        return int(e.exit_code)
    except NetworkError as e:  # a network's own input checks (models/ cannot raise core errors)
        progress.close()
        print(f"error: the network refused its inputs: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        progress.close()
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        _restore_sigterm(previous)
    progress.close()
    if rank == 0 and not a.quiet:
        print(message)
    return 0
