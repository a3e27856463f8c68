"""The model card's schema, checked before anything is built from a card.

A model file may come from a stranger: its card is untrusted data. :func:`parse_card` bounds
the text's size and nesting, then :func:`validate_card` checks every field's type, size and range
(the bounds below), so a hostile or broken card gives one :class:`ModelFileError` naming the
field instead of a ``RecursionError``, a ``TypeError`` traceback or an allocation of terabytes.
Cards may not carry file paths for the network's constructor (``pretrained`` and the like): a
card must never make mmlc open a local file (weights travel inside the model file).
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

from ..errors import ModelFileError

MAX_CARD_CHARS = 2_000_000
MAX_DEPTH = 12  # of the whole card (provenance holds nested metrics)
MAX_STRING = 4096
MAX_NAME = 128
MAX_LIST = 4096
MAX_MODALITIES = 8
MAX_BANDS = 1024
MAX_CLASSES = 4096
MAX_GRID_RATIO = 16
MAX_TILE = 8192
MAX_PATCH = 1024
MAX_BUILD_KWARGS = 64
MAX_BUILD_INT = 65536  # channels, widths, class counts: a larger size is an allocation attack
MAX_BUILD_LIST = 64
#: Constructor keywords that load files (refused in cards with any value but null/""/false).
PATH_KWARGS = re.compile(r"^(pretrained|checkpoint|weights?|init_weights|backbone_weights|.*_(file|path|url))$",
                         re.IGNORECASE)
#: A string value that looks like a file (refused in build_kwargs whatever the key).
_PATHLIKE = re.compile(r"[/\\~:]|\.(pth|pt|ckpt|bin|safetensors|mmlc|npz|pkl)$", re.IGNORECASE)

_TOP_REQUIRED = {"architecture": str, "build_kwargs": dict, "head_kind": str, "modalities": list, "classes": list}
_TOP_OPTIONAL = {"variant": str, "tile_size": int, "overlap": int, "provenance": dict, "format_version": int}
_MOD_FIELDS = {"name", "bands", "grid_ratio", "patch_size", "patch_anchor", "mean", "std", "to_db", "band_names",
               "data_type", "value_range"}
_IDENT = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")


def _fail(where: str, why: str) -> ModelFileError:
    return ModelFileError(f"the model card is invalid: {where} {why}")


def _depth_ok(obj: Any, limit: int) -> bool:
    """Whether ``obj`` nests no deeper than ``limit`` (iterative: no recursion to exhaust)."""
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > limit:
            return False
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)
    return True


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def _text_depth(text: str) -> int:
    """The bracket nesting depth of JSON text, strings skipped (checked before json.loads
    recurses); only the brackets are walked in Python."""
    depth = best = 0
    for ch in _BRACKETS.findall(_STRING.sub("", text)):
        if ch in "[{":
            depth += 1
            best = max(best, depth)
        else:
            depth -= 1
    return best


def parse_card(text: Any) -> dict:
    """The card's JSON object, size and nesting bounded; ModelFileError otherwise."""
    if not isinstance(text, str):
        raise _fail("text", "is not a string")
    if len(text) > MAX_CARD_CHARS:
        raise _fail("text", f"has {len(text)} characters (at most {MAX_CARD_CHARS})")
    if _text_depth(text) > MAX_DEPTH:
        raise _fail("text", f"nests deeper than {MAX_DEPTH} levels")
    try:
        d = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise _fail("text", f"is not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise _fail("text", "is not a JSON object")
    return d


def _int(v: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _fail(where, f"must be an integer, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise _fail(where, f"= {v} is outside {lo}..{hi}")
    return v


def _str(v: Any, where: str, limit: int = MAX_STRING) -> str:
    if not isinstance(v, str):
        raise _fail(where, f"must be a string, got {type(v).__name__}")
    if len(v) > limit:
        raise _fail(where, f"is {len(v)} characters long (at most {limit})")
    return v


def _floats(v: Any, where: str, n: int | None, positive: bool = False) -> None:
    if not isinstance(v, list):
        raise _fail(where, f"must be a list of numbers, got {type(v).__name__}")
    if n is not None and v and len(v) != n:
        raise _fail(where, f"has {len(v)} values for {n} band(s)")
    if len(v) > MAX_BANDS:
        raise _fail(where, f"has {len(v)} values (at most {MAX_BANDS})")
    for i, x in enumerate(v):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise _fail(f"{where}[{i}]", f"must be a finite number, got {x!r:.40}")
        if positive and x <= 0:
            raise _fail(f"{where}[{i}]", f"must be positive, got {x}")


def _modality(m: Any, where: str) -> None:
    if not isinstance(m, dict):
        raise _fail(where, f"must be an object, got {type(m).__name__}")
    extra = set(m) - _MOD_FIELDS
    if extra:
        raise _fail(where, f"has unknown field(s) {sorted(extra)[:5]}")
    for key in ("name", "bands"):
        if key not in m:
            raise _fail(where, f"lacks {key!r}")
    _str(m["name"], f"{where}.name", MAX_NAME)
    bands = _int(m["bands"], f"{where}.bands", 1, MAX_BANDS)
    _int(m.get("grid_ratio", 1), f"{where}.grid_ratio", 1, MAX_GRID_RATIO)
    ps = _int(m.get("patch_size", 0), f"{where}.patch_size", 0, MAX_PATCH)
    _int(m.get("patch_anchor", 0), f"{where}.patch_anchor", 0, max(ps - 1, 0))
    _floats(m.get("mean", []), f"{where}.mean", bands)
    _floats(m.get("std", []), f"{where}.std", bands, positive=True)
    if not isinstance(m.get("to_db", False), bool):
        raise _fail(f"{where}.to_db", "must be true or false")
    names = m.get("band_names", [])
    if not isinstance(names, list) or len(names) > bands:
        raise _fail(f"{where}.band_names", f"must be a list of at most {bands} names")
    for i, n in enumerate(names):
        _str(n, f"{where}.band_names[{i}]", MAX_NAME)
    _str(m.get("data_type", ""), f"{where}.data_type", 16)
    vr = m.get("value_range", [])
    _floats(vr, f"{where}.value_range", None)
    if len(vr) not in (0, 2):
        raise _fail(f"{where}.value_range", "must be [] or [min, max]")


def _class(c: Any, where: str) -> None:
    if not isinstance(c, dict):
        raise _fail(where, f"must be an object, got {type(c).__name__}")
    extra = set(c) - {"value", "name", "color"}
    if extra or not {"value", "name", "color"} <= set(c):
        raise _fail(where, "must have exactly the fields value, name, color")
    _int(c["value"], f"{where}.value", 1, 65535)
    _str(c["name"], f"{where}.name", MAX_STRING)
    if not _COLOR.match(_str(c["color"], f"{where}.color", 16)):
        raise _fail(f"{where}.color", f"must be #rrggbb, got {c['color']!r:.20}")


def _build_value(v: Any, where: str) -> None:
    if v is None or isinstance(v, bool):
        return
    if isinstance(v, int):
        _int(v, where, -MAX_BUILD_INT, MAX_BUILD_INT)
    elif isinstance(v, float):
        if not math.isfinite(v) or abs(v) > MAX_BUILD_INT:
            raise _fail(where, f"= {v} is not a finite number within ±{MAX_BUILD_INT}")
    elif isinstance(v, str):
        if _PATHLIKE.search(_str(v, where, MAX_NAME)):
            raise _fail(where, f"= {v!r:.60} looks like a file; model cards may not make mmlc open files")
    elif isinstance(v, list):
        if len(v) > MAX_BUILD_LIST:
            raise _fail(where, f"has {len(v)} items (at most {MAX_BUILD_LIST})")
        for i, x in enumerate(v):
            if isinstance(x, (list, dict)):
                raise _fail(f"{where}[{i}]", "must be a number, a string or a boolean")
            _build_value(x, f"{where}[{i}]")
    else:
        raise _fail(where, f"must be a number, a string, a boolean or a list of them, got {type(v).__name__}")


def validate_card(d: dict) -> None:
    """Check every field of a parsed card (see the module docstring); ModelFileError otherwise."""
    if not _depth_ok(d, MAX_DEPTH):
        raise _fail("the card", f"nests deeper than {MAX_DEPTH} levels")
    extra = set(d) - set(_TOP_REQUIRED) - set(_TOP_OPTIONAL)
    if extra:
        raise _fail("the card", f"has unknown field(s) {sorted(map(str, extra))[:5]}")
    for key, typ in _TOP_REQUIRED.items():
        if key not in d:
            raise _fail("the card", f"lacks {key!r}")
        if not isinstance(d[key], typ):
            raise _fail(key, f"must be a {typ.__name__}, got {type(d[key]).__name__}")
    for key, typ in _TOP_OPTIONAL.items():
        if key in d and (not isinstance(d[key], typ) or isinstance(d[key], bool)):
            raise _fail(key, f"must be a {typ.__name__}, got {type(d[key]).__name__}")
    if not _IDENT.match(d["architecture"]):
        raise _fail("architecture", f"{d['architecture']!r:.40} is not a network name")
    if d["head_kind"] not in ("dense", "patch"):
        raise _fail("head_kind", f"{d['head_kind']!r:.40} must be dense or patch")
    _str(d.get("variant", ""), "variant", MAX_NAME)
    _int(d.get("tile_size", 256), "tile_size", 1, MAX_TILE)
    _int(d.get("overlap", 32), "overlap", 0, MAX_TILE)
    _int(d.get("format_version", 1), "format_version", 1, 1_000_000)
    mods = d["modalities"]
    if not 1 <= len(mods) <= MAX_MODALITIES:
        raise _fail("modalities", f"has {len(mods)} entries (1..{MAX_MODALITIES})")
    for i, m in enumerate(mods):
        _modality(m, f"modalities[{i}]")
    classes = d["classes"]
    if not 1 <= len(classes) <= MAX_CLASSES:
        raise _fail("classes", f"has {len(classes)} entries (1..{MAX_CLASSES})")
    for i, c in enumerate(classes):
        _class(c, f"classes[{i}]")
    if len({c["value"] for c in classes}) != len(classes):
        raise _fail("classes", "lists a class value twice")
    bk = d["build_kwargs"]
    if len(bk) > MAX_BUILD_KWARGS:
        raise _fail("build_kwargs", f"has {len(bk)} entries (at most {MAX_BUILD_KWARGS})")
    for k, v in bk.items():
        if not _IDENT.match(k):
            raise _fail("build_kwargs", f"has the key {k!r:.40}, not an identifier")
        if PATH_KWARGS.search(k) and v not in (None, "", False):
            raise _fail(f"build_kwargs.{k}", "names a file; model cards may not make mmlc open files "
                        "(the weights are inside the model file)")
        _build_value(v, f"build_kwargs.{k}")
    prov = d.get("provenance", {})
    if len(json.dumps(prov)) > MAX_CARD_CHARS:
        raise _fail("provenance", "is too large")


def strip_path_kwargs(kwargs: dict) -> dict:
    """``kwargs`` without constructor keywords that name files (for cards written by mmlc)."""
    return {k: v for k, v in kwargs.items() if not PATH_KWARGS.search(k)}
