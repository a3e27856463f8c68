"""Scene tables: one row per scene (its inputs and labels), for runs over many scenes.

A CSV file (header row) or any table GDAL/OGR reads (a GeoPackage's attribute table, its first
layer or ``path|layername=...``) with the columns

* ``input_1``, ``input_2``, ...: the scene's rasters in the network's input order
  (``input_optical``/``input_sar`` are accepted for distillation tables);
* ``labels``: a class raster or a vector layer; ``label_field``: the class field of a vector layer;
* ``name`` (optional): the scene's name in logs and reports.

Relative paths are taken from the table's folder. Scenes may differ in CRS and size (each is read
on its own input 1's grid); their inputs must have the same band counts, checked from the file
headers before any pixel is read: :class:`~core.errors.InputError` names the row at fault.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

from ..errors import InputError
from .datasets import Scene

_ALIASES = {"input_optical": "input_1", "input_sar": "input_2", "label": "labels", "field": "label_field"}


def _rows_csv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return [dict(r) for r in csv.DictReader(f)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"cannot read the scene table {path}: {e}") from e


def _rows_ogr(path: Path) -> list[dict[str, str]]:
    from osgeo import gdal

    from ..engine.gdal_errors import gdal_call
    from .labels import split_layer_uri

    base, layer_name = split_layer_uri(str(path))
    ds, msg = gdal_call(gdal.OpenEx, base, gdal.OF_VECTOR)
    if ds is None or ds.GetLayerCount() == 0:
        raise InputError(f"cannot read the scene table {path}: {msg or 'no table in the file'}")
    layer = ds.GetLayerByName(layer_name) if layer_name else ds.GetLayerByIndex(0)
    if layer is None:
        raise InputError(f"the scene table {base} has no layer {layer_name!r}")
    defn = layer.GetLayerDefn()
    names = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    rows = []
    for feat in layer:
        rows.append({n: ("" if not feat.IsFieldSetAndNotNull(i) else str(feat.GetField(i))) for i, n in enumerate(names)})
    return rows


def _normalise(row: dict[str, str]) -> dict[str, str]:
    out = {}
    for k, v in row.items():
        if k is None:
            continue
        key = k.strip().lower().replace("-", "_").replace(" ", "_")
        key = _ALIASES.get(key, key)
        if key.startswith("input") and key[5:].isdigit():  # input1 -> input_1
            key = f"input_{key[5:]}"
        out[key] = (v or "").strip()
    return out


def _resolve(folder: Path, p: str) -> str:
    base, sep, rest = p.partition("|")  # keep a layer suffix (labels.gpkg|layername=x)
    q = Path(base).expanduser()
    return str(q if q.is_absolute() else folder / q) + (sep + rest if sep else "")


def read_scene_table(path: str, n_inputs: int | None = None, labels_required: bool = True) -> list[Scene]:
    """The scenes of a table (see the module docstring), checked: files exist, every row has the
    same number of inputs (``n_inputs`` when given) and the same band counts as row 1.
    ``labels_required=False`` (classification) accepts rows without labels."""
    p = Path(str(path).split("|")[0])
    if not p.is_file():
        raise InputError(f"the scene table {path} does not exist")
    rows = [_normalise(r) for r in (_rows_csv(p) if p.suffix.lower() in (".csv", ".txt") else _rows_ogr(Path(path)))]
    rows = [r for r in rows if any(r.values())]
    if not rows:
        raise InputError(f"the scene table {path} has no row")
    cols = sorted({k for r in rows for k in r if k.startswith("input_") and k[6:].isdigit()}, key=lambda k: int(k[6:]))
    if not cols or labels_required and "labels" not in rows[0]:
        raise InputError(f"the scene table {path} needs the columns input_1 (input_2, ...) and labels; "
                         f"it has {', '.join(rows[0]) or 'none'}")
    scenes = []
    for n, r in enumerate(rows, start=1):
        where = f"row {n}" + (f" ({r['name']})" if r.get("name") else "") + f" of {p.name}"
        inputs = [r.get(c, "") for c in cols]
        while inputs and not inputs[-1]:
            inputs.pop()
        if not inputs or not all(inputs):
            raise InputError(f"{where}: an input column is empty")
        if n_inputs is not None and len(inputs) != n_inputs:
            raise InputError(f"{where}: {len(inputs)} input(s) given but the network takes {n_inputs}")
        if labels_required and not r.get("labels"):
            raise InputError(f"{where}: the labels column is empty")
        inputs = [_resolve(p.parent, x) for x in inputs]
        labels = _resolve(p.parent, r["labels"]) if r.get("labels") else ""
        for f in [*inputs] + ([labels.split("|")[0]] if labels else []):
            if not Path(f).exists():
                raise InputError(f"{where}: {f} does not exist")
        scenes.append(Scene(inputs, labels, r.get("label_field") or None, name=r.get("name", "")))
    check_band_counts(scenes, p.name)
    return scenes


def band_counts(scene: Scene) -> list[int]:
    """Band count of each input of a scene, from the file headers."""
    from ..engine.io import open_raster

    return [int(open_raster(f).RasterCount) for f in scene.inputs]


def check_band_counts(scenes: Sequence[Scene], table: str = "the scene table") -> None:
    """InputError naming the first row whose inputs differ from row 1 in number or bands."""
    first = band_counts(scenes[0])
    for n, s in enumerate(scenes[1:], start=2):
        got = band_counts(s)
        if got != first:
            raise InputError(f"row {n} ({s.name}) of {table} has inputs of {got} band(s) but row 1 has {first}; "
                             "every scene must have the same bands in the same order")
