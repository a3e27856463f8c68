"""One classify call through the raster engine: each input and the mask opened once, the modules
passed in one direction (classify -> head_paths -> paths -> forward/prefetch/tiling/pipeline ->
aligned_inputs -> io/grid), and no module of the engine a function that nothing calls."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import mmlc.core.data.labels as labels
import mmlc.core.engine.io as io
import numpy as np
import pytest
from mmlc.core.engine.classify import classify
from mmlc.core.engine.grid import Grid
from osgeo import gdal
from test_inference import make_dense_model, make_patch_model

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "core" / "engine"

#: The engine's modules on a classify call, top (called first) to bottom: a module may import
#: only modules below it (a tuple: modules on one level, which do not import each other).
#: mosaic (issue 19) classifies many rasters through classify().
ORDER: list[tuple[str, ...]] = [
    ("mosaic",),
    ("classify",),
    ("head_paths",),
    ("paths",),
    ("forward", "prefetch"),
    ("tiling", "pipeline", "normalize"),
    ("aligned_inputs",),
    ("io", "outputs"),
    ("output_paths", "sizes", "heap", "value_checks", "atomic", "areas", "gdal_errors", "grid"),
]
#: Imports against the direction allowed: Grid.from_path, a convenience for callers outside a
#: classify call, opens a file through io (a local import).
ALLOWED = {("grid", "io")}


def _engine_imports(path: Path) -> set[str]:
    """The sibling modules of core/engine that ``path`` imports (``from .x import``/``from . import x``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(a.name for a in node.names)
    return out


def test_the_engine_is_passed_in_one_direction() -> None:
    rank = {m: i for i, level in enumerate(ORDER) for m in level}
    upward = []
    for name, r in rank.items():
        if not (ENGINE / f"{name}.py").exists():
            continue
        for dep in _engine_imports(ENGINE / f"{name}.py"):
            if dep in rank and rank[dep] <= r and dep != name and (name, dep) not in ALLOWED:
                upward.append(f"{name} imports {dep}")
    assert not upward, "imports against the direction of a classify call:\n" + "\n".join(upward)


def test_every_engine_module_has_its_place() -> None:
    """A new module of core/engine must be given its level above, so the direction test sees it."""
    known = {m for level in ORDER for m in level} | {"__init__"}
    assert {p.stem for p in ENGINE.glob("*.py")} <= known


def test_the_direction_check_can_fail(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("from .classify import classify\nfrom . import paths, tiling\nfrom ..errors import InputError\n")
    assert _engine_imports(f) == {"classify", "paths", "tiling"}


def _uncalled(defining: list[Path], texts: dict[Path, str]) -> list[str]:
    """Functions and methods defined in ``defining`` whose name appears nowhere in ``texts``
    but in its own ``def`` line (dunder methods excepted)."""
    out = []
    for p in defining:
        for node in ast.walk(ast.parse(texts[p])):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("__"):
                name = re.compile(rf"\b{node.name}\b")
                own = re.compile(rf"\bdef {node.name}\b")
                if sum(len(name.findall(t)) - len(own.findall(t)) for t in texts.values()) == 0:
                    out.append(f"{p.name}: {node.name}")
    return out


def test_no_engine_function_without_a_caller() -> None:
    """Every function and method defined in core/engine is used somewhere in the plugin, its
    tools, benchmarks or tests (dead code goes)."""
    roots = [ROOT / d for d in ("core", "ui", "tools", "bench", "tests")]
    texts = {p: p.read_text(encoding="utf-8") for r in roots for p in r.rglob("*.py")}
    texts.update({p: p.read_text(encoding="utf-8") for p in ROOT.glob("*.py")})
    unused = _uncalled(sorted(ENGINE.glob("*.py")), texts)
    assert not unused, "functions nothing calls:\n" + "\n".join(unused)


def test_the_caller_check_can_fail(tmp_path: Path) -> None:
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("def used():\n    pass\n\n\ndef orphan():\n    pass\n")
    b.write_text("from a import used\nused()\n")
    texts = {a: a.read_text(), b: b.read_text()}
    assert _uncalled([a], texts) == ["a.py: orphan"]


@pytest.mark.parametrize("kind", ["dense", "patch"])
def test_each_input_and_the_mask_opened_once(tmp_path: Path, spacenet6: Path, kind: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A classify call with an extent and a mask opens every input raster and the mask file
    once (the checks, the cut grid and the reader share the handles), and still classifies."""
    if kind == "dense":
        model = make_dense_model(tmp_path / "m.mmlc")
        inputs = [str(spacenet6 / "rgb_unmasked.tif"), str(spacenet6 / "sar_masked.tif")]
    else:
        from test_inference import exact_pan

        ms = spacenet6 / "ms1_2m_uint16.tif"
        model = make_patch_model(tmp_path / "m.mmlc")
        inputs = [str(ms), str(exact_pan(spacenet6 / "pan1.tif", ms, tmp_path / "pan.tif"))]
    g = Grid.from_path(inputs[0])
    x0, dx, _, y0, _, dy = g.transform
    mask = tmp_path / "mask.tif"  # a raster mask on input 1's pixels 80..120: its rows/cols 4..36 inside
    ds = gdal.GetDriverByName("GTiff").Create(str(mask), 40, 40, 1, gdal.GDT_Byte)
    ds.SetGeoTransform((x0 + 80 * dx, dx, 0.0, y0 + 80 * dy, 0.0, dy))
    ds.SetProjection(g.crs_wkt)
    a = np.zeros((40, 40), np.uint8)
    a[4:36, 4:36] = 1
    ds.GetRasterBand(1).WriteArray(a)
    ds = None
    opened: list[str] = []
    real_open, real_label = io.open_raster, labels.LabelSource.__init__

    def counting_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    def counting_label(self, path, *args, **kwargs):
        opened.append(str(path))
        real_label(self, path, *args, **kwargs)

    monkeypatch.setattr(io, "open_raster", counting_open)
    monkeypatch.setattr(labels.LabelSource, "__init__", counting_label)
    extent = (x0 + 60 * dx, y0 + 140 * dy, x0 + 140 * dx, y0 + 60 * dy)  # input 1's pixels 60..140
    res = classify(model, inputs, str(tmp_path / "o.tif"), extent=extent, mask=str(mask), device="cpu")
    assert sorted(opened) == sorted(inputs + [str(mask)])
    out = gdal.Open(res.output)
    assert (out.RasterXSize, out.RasterYSize) == (40, 40) and 0 < res.valid_pixels <= 32 * 32
    assert (out.ReadAsArray()[:4] == 0).all()  # outside the mask: nodata


def test_regrid_reads_what_a_new_reader_reads(spacenet6: Path) -> None:
    """AlignedReader.regrid onto a cut grid (same handles) reads what a reader opened on that grid
    reads, row cache on, and refuses a grid an input does not overlap."""
    from mmlc.core.engine.io import AlignedReader
    from mmlc.core.errors import GridError

    paths = [str(spacenet6 / "rgb_unmasked.tif"), str(spacenet6 / "sar_masked.tif")]
    with AlignedReader(paths) as fresh_src:
        cut = fresh_src.grid.cut_to_extent(*_pixels(fresh_src.grid, 50, 70, 170, 150))
    with AlignedReader(paths) as r, AlignedReader(paths, grid=cut) as fresh:
        r.regrid(cut, row_cache=True)
        assert r.grid == cut and (cut.width, cut.height) == (120, 80)
        for row0, col0 in ((0, 0), (40, 60), (70, 110)):  # the last window runs past the grid
            (a1, a2), va = r.read(row0, col0, 32, 32, halo=2)
            (b1, b2), vb = fresh.read(row0, col0, 32, 32, halo=2)
            np.testing.assert_array_equal(a1, b1)
            np.testing.assert_array_equal(a2, b2)
            np.testing.assert_array_equal(va, vb)
        far = cut.cut_to_extent(*_pixels(cut, 0, 0, 10, 10))
        x0, dx, _, y0, _, dy = far.transform
        far = Grid(far.crs_wkt, (x0 + 1e5, dx, 0.0, y0, 0.0, dy), far.width, far.height)
        with pytest.raises(GridError, match="does not overlap"):
            r.regrid(far)
        assert r.grid == cut  # still on the cut grid, still reading
        np.testing.assert_array_equal(r.read(0, 0, 8, 8)[0][0], fresh.read(0, 0, 8, 8)[0][0])


def _pixels(grid: Grid, c0: int, r0: int, c1: int, r1: int) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of the pixel block [r0, r1) x [c0, c1) of ``grid``."""
    x0, dx, _, y0, _, dy = grid.transform
    return x0 + c0 * dx, y0 + r1 * dy, x0 + c1 * dx, y0 + r0 * dy
