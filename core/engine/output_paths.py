"""One guard for the output paths of every operation, run before any work starts.

The outputs of each operation come from its spec (core/operations): the output parameters, the
kind of file each writes (:class:`~..operations.spec.Output`) with its side-cars and the
extensions it can be written as. :func:`check_outputs` expands every output into the files it
will place and refuses, with one line naming the parameter:

* a file that is an input of the run or another output of the run, compared after resolving
  symbolic links (``os.path.realpath``) and as the same file on disk (hard links);
* a path that is a folder (``OUTPUT_MODEL=existing_folder``, ``mkdir o.qml`` beside
  ``OUTPUT=o.tif``), a missing or unwritable folder;
* an extension the kind cannot be written as (``OUTPUT=o.png``: the message names the format
  the extension stands for, through GDAL's drivers, and the accepted extensions).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Union

from ..errors import OutputError
from ..operations import get_operation
from ..operations.spec import Output, Param


def operation_outputs(operation: str) -> tuple[Param, ...]:
    """The output parameters of ``operation`` (``classify``...), from its spec."""
    return get_operation(operation).outputs


PathLike = Union[str, os.PathLike]


def input_file(path: str) -> str:
    """The file behind an input URI (``file.gpkg|layername=x`` -> ``file.gpkg``)."""
    return str(path).split("|", 1)[0]


def _real(p: PathLike) -> str:
    return os.path.realpath(os.fspath(p))


def _same(a: str, real_a: str, b: str, real_b: str) -> bool:
    if real_a == real_b:
        return True
    try:
        return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)
    except OSError:
        return False


def format_named_by(ext: str) -> Optional[str]:
    """The GDAL/OGR format whose extensions include ``ext`` (e.g. ``.png`` -> ``Portable Network
    Graphics``), or None."""
    try:
        from osgeo import gdal
    except ImportError:
        return None
    want = ext.lower().lstrip(".")
    if not want:
        return None
    for i in range(gdal.GetDriverCount()):
        drv = gdal.GetDriver(i)
        exts = (drv.GetMetadataItem("DMD_EXTENSIONS") or drv.GetMetadataItem("DMD_EXTENSION") or "").lower().split()
        if want in exts:
            return drv.GetMetadataItem("DMD_LONGNAME") or drv.ShortName
    return None


def check_extension(param: str, path: Path, output: Output) -> None:
    """Refuse an extension ``output``'s kind cannot be written as, naming what it stands for."""
    accepted = output.extensions
    if accepted is None or path.suffix.lower() in accepted:
        return
    named = format_named_by(path.suffix) if path.suffix else None
    what = f"names a {named} file" if named else ("has no extension" if not path.suffix
                                                 else f"has the extension {path.suffix}")
    raise OutputError(f"{param} {path} {what}; mmlc writes it as {output.format or output.kind}: "
                      f"use one of {', '.join(accepted)}")


@dataclass
class PlannedFile:
    """One file a run will place: the parameter it belongs to and what it is."""

    param: str
    path: Path
    what: str  # "" for the output itself, else the side-car's description


def planned_files(operation: str, outputs: Mapping[str, Optional[PathLike]]) -> list[PlannedFile]:
    """Every file ``operation`` will write for the given outputs, side-cars included."""
    params = operation_outputs(operation)
    unknown = set(outputs) - {p.id for p in params}
    if unknown:
        raise ValueError(f"{operation} has no output(s) {sorted(unknown)}")
    files: list[PlannedFile] = []
    for p in params:
        given = outputs.get(p.id)
        if given in (None, ""):
            continue
        path = Path(os.fspath(given))
        files.append(PlannedFile(p.id, path, ""))
        files.extend(PlannedFile(p.id, sidecar.path(path), sidecar.what) for sidecar in p.output.sidecars)
    return files


def _label(f: PlannedFile) -> str:
    return f"{f.param} {f.path}" if not f.what else f"the {f.what} {f.path} that {f.param} writes"


def _flat_inputs(inputs: Mapping[str, Union[None, PathLike, Sequence[PathLike]]]) -> list[tuple[str, str, str]]:
    """(param, file, real path) of every input given."""
    out: list[tuple[str, str, str]] = []
    for param, value in inputs.items():
        if value is None or value == "":
            continue
        values: Iterable = [value] if isinstance(value, (str, os.PathLike)) else value
        for v in values:
            if v is None or v == "":
                continue
            base = input_file(os.fspath(v))
            out.append((param, base, _real(base)))
    return out


def check_outputs(operation: str, outputs: Mapping[str, Optional[PathLike]],
                  inputs: Mapping[str, Union[None, PathLike, Sequence[PathLike]]]) -> list[PlannedFile]:
    """Refuse outputs that would clobber an input or each other, folders and unusable folders.

    outputs: parameter id -> path (None/"" = not asked for). inputs: parameter id -> path or
    list of paths (None skipped; ``|layername=`` suffixes allowed). Returns the planned files.
    """
    files = planned_files(operation, outputs)
    kinds = {p.id: p.output for p in operation_outputs(operation)}
    flat = _flat_inputs(inputs)
    reals = [_real(f.path) for f in files]
    for f, real in zip(files, reals):  # clobbering an input first: the worst outcome
        for param, base, real_in in flat:
            if _same(str(f.path), real, base, real_in):
                other = "" if base == str(f.path) else f" {base}"
                raise OutputError(f"{_label(f)} is an input of this run ({param}{other}): writing it would overwrite "
                                  f"the input; choose another {f.param}")
    for i, (a, ra) in enumerate(zip(files, reals)):
        for b, rb in zip(files[i + 1:], reals[i + 1:]):
            if _same(str(a.path), ra, str(b.path), rb):
                raise OutputError(f"{_label(a)} and {_label(b)} are the same file; give them different names")
    for f, real in zip(files, reals):
        if os.path.isdir(real):
            if f.what:
                raise OutputError(f"{_label(f)} is a folder; remove it or choose another {f.param}")
            raise OutputError(f"{f.param} {f.path} is a folder; give a file name")
        if not f.what:
            check_extension(f.param, f.path, kinds[f.param])
            parent = f.path.parent if str(f.path.parent) else Path(".")
            if not parent.is_dir():
                raise OutputError(f"{f.param}: the folder {parent} does not exist; create it or choose another path")
            if not os.access(parent, os.W_OK):
                raise OutputError(f"{f.param}: the folder {parent} is not writable; choose another path")
    return files
