"""Classes: value, name, colour. One place for palettes and class tables.

A class table file is CSV-like text, one class per line: ``value,name,#rrggbb`` (colour
optional; ``#`` comments and a header line starting with ``value`` are skipped).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .errors import InputError

#: A qualitative palette with distinguishable colours (hand-picked, colour-blind aware order).
DEFAULT_PALETTE: tuple[str, ...] = (
    "#1f78b4", "#33a02c", "#e31a1c", "#ff7f00", "#6a3d9a", "#b15928", "#a6cee3", "#b2df8a",
    "#fb9a99", "#fdbf6f", "#cab2d6", "#ffff99", "#8dd3c7", "#bebada", "#80b1d3", "#fccde5",
)


@dataclass(frozen=True)
class ClassInfo:
    """One class: the raster value written for it, a human name, and a ``#rrggbb`` colour."""

    value: int
    name: str
    color: str

    def rgb(self) -> tuple[int, int, int]:
        c = self.color.lstrip("#")
        return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)

    def to_dict(self) -> dict:
        return asdict(self)


def default_color(index: int) -> str:
    """Colour for the index-th class of a table without colours."""
    return DEFAULT_PALETTE[index % len(DEFAULT_PALETTE)]


def default_classes(values: Iterable[int], names: Sequence[str] | None = None) -> list[ClassInfo]:
    """Classes for the given raster values, named ``class N`` unless ``names`` are given."""
    out = []
    for i, v in enumerate(sorted(set(int(x) for x in values))):
        name = names[i] if names is not None and i < len(names) else f"class {v}"
        out.append(ClassInfo(v, name, default_color(i)))
    return out


def _check_color(color: str, where: str) -> str:
    c = color.strip()
    if not c.startswith("#"):
        c = "#" + c
    if len(c) != 7 or any(ch not in "0123456789abcdefABCDEF" for ch in c[1:]):
        raise InputError(f"{where}: colour {color!r} is not of the form #rrggbb")
    return c.lower()


def read_class_table(path: str | Path) -> list[ClassInfo]:
    """Read a ``value,name[,#rrggbb]`` table; raise InputError with the line at fault."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read the class table {p}: {e.strerror}") from e
    classes: list[ClassInfo] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or line.lower().startswith("value"):
            continue
        parts = [s.strip() for s in line.replace(";", ",").split(",")]
        try:
            value = int(parts[0])
        except ValueError:
            raise InputError(f"{p}:{n}: the first column must be an integer class value, got {parts[0]!r}")
        if not 1 <= value <= 65534:
            raise InputError(f"{p}:{n}: class value {value} must be between 1 and 65534 (0 means unlabelled)")
        name = parts[1] if len(parts) > 1 and parts[1] else f"class {value}"
        color = _check_color(parts[2], f"{p}:{n}") if len(parts) > 2 and parts[2] else default_color(len(classes))
        classes.append(ClassInfo(value, name, color))
    if not classes:
        raise InputError(f"the class table {p} lists no class; expected lines like '1,water,#1f78b4'")
    if len({c.value for c in classes}) != len(classes):
        raise InputError(f"the class table {p} lists a class value twice")
    return classes


def classes_from_dicts(items: Iterable[dict]) -> list[ClassInfo]:
    return [ClassInfo(int(d["value"]), str(d["name"]), str(d["color"])) for d in items]
