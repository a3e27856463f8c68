"""The vocabulary of an operation spec: :class:`Param`, :class:`Output`, :class:`Operation`.

One spec per operation (classify, train, distill, evaluate) declares each parameter once: its id
(frozen: scripts and Modeler models use it), kind, default, range, choices, the dialog's label and
tooltip, the CLI's help, the docs' row, the *Advanced* flag, and for outputs what file they write
with which side-cars. From it are generated the Processing parameters (``ui/algorithms/spec_params.py``),
the argparse options (``core/cli.py``), the docs' parameter tables (``tools/param_tables.py``) and
the output-path checks (``core/engine/output_paths.py``). Plain data: no qgis, no torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

#: Where a parameter exists: the Processing algorithm, the ``python -m mmlc`` command line.
PROCESSING = "processing"
CLI = "cli"
BOTH: frozenset[str] = frozenset({PROCESSING, CLI})

#: Parameter kinds and what each becomes in Processing (see ui/algorithms/spec_params.py) and on
#: the command line (an option taking a string unless the kind says otherwise).
INPUT_KINDS = {
    "raster": "a raster layer (GDAL file)",
    "vector": "a vector layer (OGR file)",
    "features": "a feature source (selections and memory layers exported)",
    "field": "a field of the vector parameter named by ``parent``",
    "file": "an existing file (``file_filter`` for the dialog's browser)",
    "extent": "xmin,ymin,xmax,ymax (in the first input's CRS)",
    "int": "an integer number",
    "float": "a decimal number",
    "bool": "on/off (a flag on the command line)",
    "enum": "one of ``choices``, passed as the string itself",
    "string": "free text",
}
OUTPUT_KINDS = {
    "output_raster": "a raster written by the operation",
    "output_vector": "a vector layer written by the operation",
    "output_file": "a file written by the operation",
}
KINDS = {**INPUT_KINDS, **OUTPUT_KINDS}


@dataclass(frozen=True)
class Sidecar:
    """A file written beside an output: ``what`` it is and its suffix, either replacing the output's
    extension (``o.tif`` -> ``o.qml``) or appended to its name (``o.tif`` -> ``o.tif.aux.xml``)."""

    what: str
    suffix: str
    replaces_extension: bool = False

    def path(self, output: Path) -> Path:
        return output.with_suffix(self.suffix) if self.replaces_extension else Path(str(output) + self.suffix)


@dataclass(frozen=True)
class Output:
    """The kind of file an output parameter writes: accepted extensions (None: any), the format
    named in messages, and the side-cars written beside it."""

    kind: str
    extensions: Optional[tuple[str, ...]] = None
    format: str = ""
    sidecars: tuple[Sidecar, ...] = ()


QML = Sidecar("style file", ".qml", replaces_extension=True)
AUX = Sidecar("GDAL side-car", ".aux.xml")
RESUME = Sidecar("resume checkpoint", ".resume.pt")

CLASS_RASTER = Output("class_raster", (".tif", ".tiff"), "GeoTIFF", (QML, AUX))
RASTER = Output("raster", (".tif", ".tiff"), "GeoTIFF", (AUX,))
VECTOR = Output("vector", (".gpkg",), "GeoPackage")
MODEL = Output("model", None, "", (RESUME,))
REPORT = Output("report")
TABLE = Output("table")
OUTPUTS_BY_KIND = {o.kind: o for o in (CLASS_RASTER, RASTER, VECTOR, MODEL, REPORT, TABLE)}


@dataclass(frozen=True)
class Param:
    """One parameter of an operation.

    id: the frozen Processing id, also the CLI option ``--ID`` (aliases ``--id``, ``--i-d``).
    kind: a key of :data:`KINDS`. label: the dialog's label (translated through the algorithm's
    ``tr``). help: the dialog's tooltip and ``qgis_process help`` text. cli_help: the line in
    ``python -m mmlc <operation> --help``. doc / doc_default: the docs table's "what" and
    "default" cells (markdown; doc defaults to help).
    default: the dialog's default. The CLI leaves an option it was not given as None ("the core's
    default"); where that differs from ``default`` in effect, ``cli_default_note`` says why (a
    test holds the list). optional: may be left empty in Processing. minimum/maximum: the
    range of a number. choices: the values of an ``enum`` (empty: filled at run time, e.g. the
    devices PyTorch sees). advanced: folded under *Advanced parameters* in the dialog.
    widget: a custom widget hint for the dialog: ``model_chooser``, ``device`` (labelled
    dropdown of the devices seen), ``variant`` (dropdown following ARCHITECTURE), ``plain``
    (an enum without labels). decimals: the dialog's decimals for a float. file_filter: the
    dialog's file browser filter. geometry: ``any`` or ``polygon`` for vector/features/output
    vector. parent: the vector parameter of a ``field``. output: what an output parameter
    writes. create_by_default: an optional output is asked for by default in the dialog.
    surfaces: where the parameter exists (:data:`BOTH`, or one of them; the docs table notes which).
    core: the keyword of the core function the parameter feeds ("" where it is mapped by hand,
    e.g. INPUT_1 and INPUT_2 into ``inputs``).
    """

    id: str
    kind: str
    label: str
    help: str = ""
    cli_help: str = ""
    doc: str = ""
    doc_default: str = ""
    default: Any = None
    optional: bool = False
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: tuple[str, ...] = ()
    advanced: bool = False
    widget: str = ""
    decimals: Optional[int] = None
    file_filter: str = ""
    geometry: str = ""
    parent: str = ""
    output: Optional[Output] = None
    create_by_default: Optional[bool] = None
    surfaces: frozenset[str] = BOTH
    core: str = ""
    cli_default_note: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.id}: unknown kind {self.kind!r}; known: {', '.join(KINDS)}")
        if (self.kind in OUTPUT_KINDS) != (self.output is not None):
            raise ValueError(f"{self.id}: output parameters (and only they) declare the file they write")
        if self.kind == "field" and not self.parent:
            raise ValueError(f"{self.id}: a field parameter names its vector parameter (parent)")

    @property
    def in_processing(self) -> bool:
        return PROCESSING in self.surfaces

    @property
    def in_cli(self) -> bool:
        return CLI in self.surfaces

    @property
    def is_output(self) -> bool:
        return self.output is not None

    @property
    def cli_type(self) -> Any:
        """argparse's ``type`` for the option (``"flag"`` for a store_true switch)."""
        return {"int": int, "float": float, "bool": "flag"}.get(self.kind, str)


@dataclass(frozen=True)
class Operation:
    """One operation: its id (``mmlc:<id>`` in Processing, ``python -m mmlc <id>``), display
    name, CLI summary, parameters in dialog order, the CLI's required ids ("A|B": one of A and
    B), and the numbers Processing returns beside the outputs (id, label)."""

    id: str
    name: str
    cli_summary: str
    params: tuple[Param, ...]
    cli_required: tuple[str, ...] = ()
    numbers: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        ids = [p.id for p in self.params]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"{self.id}: parameter ids given twice: {', '.join(twice)}")
        unknown = {alt for r in self.cli_required for alt in r.split("|")} - set(ids)
        if unknown:
            raise ValueError(f"{self.id}: required ids that are no parameter: {', '.join(sorted(unknown))}")

    def param(self, pid: str) -> Param:
        for p in self.params:
            if p.id == pid:
                return p
        raise KeyError(f"{self.id} has no parameter {pid!r}")

    @property
    def outputs(self) -> tuple[Param, ...]:
        """The output parameters (what the operation writes), in order."""
        return tuple(p for p in self.params if p.is_output)

    def processing_params(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.in_processing)

    def cli_params(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.in_cli)
