"""Classify many rasters: one output per scene plus a VRT mosaic of them.

The scenes come from a scene table (``core.data.scene_table``; labels optional here) or a glob
pattern (each match is input 1 of a one-input scene). Each scene is classified on its own grid by
``core.api.classify`` (streamed, memory bounded by the tile), into ``<folder>/<name>.tif``. The
mosaic is a VRT over the outputs (``gdal.BuildVRT``); outputs in another CRS than the first are
referenced through a warped VRT beside them (``<name>.warped.vrt``, nearest neighbour, so class
values stay class values). Nothing is resampled to disk.

Under ``torchrun`` the scenes are shared among the ranks (rank r takes scenes r, r + world, ...),
each rank writes its own outputs, and rank 0 writes the mosaic after a barrier. Every file is
written to a temporary name and renamed when complete (classify does so for its outputs; the
mosaic here).
"""
from __future__ import annotations

import contextlib
import glob as globmod
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import InputError, OutputError
from ..progress import NullProgress, Progress

#: What a scene to classify is: a name and its inputs in the model's order.
SceneInputs = tuple[str, list[str]]


@dataclass
class ManyResult:
    """Outputs of :func:`classify_many` written by this process (all of them on rank 0's mosaic)."""

    outputs: dict[str, str] = field(default_factory=dict)  # scene name -> class raster
    mosaic: str | None = None


def scenes_to_classify(source: str) -> list[SceneInputs]:
    """Scenes from a scene table (``.csv``/``.gpkg``/... with input_1, input_2, ... columns) or a
    glob pattern of input-1 rasters. Names are made unique (``name``, ``name_2``...)."""
    if any(ch in source for ch in "*?["):
        paths = sorted(globmod.glob(source))
        if not paths:
            raise InputError(f"no raster matches {source}")
        found = [(Path(p).stem, [p]) for p in paths]
    else:
        from ..data.scene_table import read_scene_table

        found = [(s.name, list(s.inputs)) for s in read_scene_table(source, labels_required=False)]
    seen: dict[str, int] = {}
    out = []
    for name, inputs in found:
        seen[name] = seen.get(name, 0) + 1
        out.append((name if seen[name] == 1 else f"{name}_{seen[name]}", inputs))
    return out


def _process_group() -> tuple[Any, bool]:
    """(DistContext, whether this call joined the group and must leave it). A group the caller
    already joined is used as it is; otherwise torchrun's is joined (gloo: scenes, not tensors,
    are shared, so only the barrier needs it)."""
    from ..fitting.ddp import DistContext, setup

    with contextlib.suppress(ImportError):
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                               dist.get_backend()), False
    return setup("cpu"), True


def build_mosaic(outputs: Sequence[str], mosaic: str) -> str:
    """A VRT over class rasters, in the first one's CRS; written to a temporary name, then renamed."""
    from osgeo import gdal

    from .atomic import new_run_id, remove_temp, temp_path
    from .gdal_errors import gdal_call
    from .io import _same_crs, open_raster

    if not outputs:
        raise InputError("no classified scene to build a mosaic from")
    first = open_raster(outputs[0])
    crs = first.GetProjection()
    parts = []
    for p in outputs:
        ds = open_raster(p)
        if _same_crs(ds.GetProjection(), crs):
            parts.append(str(Path(p).resolve()))
            continue
        warped = str(Path(p).with_suffix(".warped.vrt").resolve())
        tmp = temp_path(warped, new_run_id())
        nodata = ds.GetRasterBand(1).GetNoDataValue()
        opts = gdal.WarpOptions(format="VRT", dstSRS=crs, resampleAlg="near", multithread=False,
                                srcNodata=nodata, dstNodata=nodata)
        vrt, msg = gdal_call(gdal.Warp, str(tmp), ds, options=opts)
        if vrt is None:
            remove_temp(tmp)
            raise OutputError(f"cannot warp {p} into the mosaic's CRS: {msg}")
        vrt = None  # the VRT names its source relative to its folder, which the rename keeps
        os.replace(tmp, warped)
        parts.append(warped)
    tmp = temp_path(mosaic, new_run_id())
    try:
        vrt, msg = gdal_call(gdal.BuildVRT, str(tmp), parts)
        if vrt is None:
            raise OutputError(f"cannot write the mosaic {mosaic}: {msg}")
        vrt.FlushCache()
        vrt = None
        os.replace(tmp, mosaic)
    finally:
        remove_temp(tmp)
    return str(mosaic)


def classify_many(model: str, source: str | Sequence[SceneInputs], folder: str, *, mosaic: str | None = None,
                  progress: Progress | None = None, **classify_kwargs: Any) -> ManyResult:
    """Classify every scene of ``source`` into ``folder/<name>.tif`` and write ``mosaic`` (a VRT,
    default ``folder/mosaic.vrt``; "" = none). Under torchrun the scenes are shared among the
    ranks and rank 0 writes the mosaic once every rank is done."""
    from .. import api
    from ..fitting.ddp import barrier, teardown

    progress = progress or NullProgress()
    scenes = scenes_to_classify(source) if isinstance(source, str) else list(source)
    if not scenes:
        raise InputError("no scene to classify")
    out_dir = Path(folder)
    if not out_dir.is_dir():
        raise OutputError(f"the output folder {folder} does not exist; create it first")
    mosaic = str(out_dir / "mosaic.vrt") if mosaic is None else mosaic
    outputs = {name: str(out_dir / f"{name}.tif") for name, _ in scenes}
    every_input = {str(Path(p).resolve()) for _, ins in scenes for p in ins}
    clash = [o for o in [*outputs.values(), mosaic] if o and str(Path(o).resolve()) in every_input]
    if clash:
        raise OutputError(f"{clash[0]} is also an input; choose another output folder")
    ctx, joined = _process_group()
    rank, world = ctx.rank, ctx.world_size
    try:
        result = ManyResult()
        mine = scenes[rank::world]
        for i, (name, inputs) in enumerate(mine):
            progress.info(f"classifying scene {i + 1}/{len(mine)} of this process: {name}")
            api.classify(model, inputs, outputs[name], progress=None, **classify_kwargs)
            result.outputs[name] = outputs[name]
            progress.set_fraction((i + 1) / len(mine))
        barrier(ctx)
        if rank == 0 and mosaic:
            result.mosaic = build_mosaic([outputs[n] for n, _ in scenes], mosaic)
        barrier(ctx)
        return result
    finally:
        if joined:
            teardown(ctx)
