"""The SCENES parameter of mmlc:train and mmlc:distill: a scene table instead of one scene.

A file parameter beside the single-scene parameters (input rasters + labels): one or the other
(the parameter itself comes from the operation specs, ``core.operations.shared.scenes_param``).
The table's format is ``core.data.scene_table`` (CSV or GeoPackage, one row per scene with its
input paths, labels and class field).
"""
from __future__ import annotations

from typing import Sequence

from qgis.core import QgsProcessingException

from .common_params import _given, check_label_params

SCENES = "SCENES"


def check_scene_source(parameters: dict, context, single: Sequence[str]) -> tuple[bool, str, dict]:
    """Either SCENES alone or the single scene (``single``: its input ids): the label checks of
    ``check_label_params`` first (they say what to fix in the labels), then the first input required."""
    if _given(parameters.get(SCENES)):
        given = [p for p in [*single, "LABELS", "LABELS_VECTOR"] if _given(parameters.get(p))]
        if given:
            return False, (f"give either a scene table (SCENES) or a single scene ({', '.join(given)}), "
                           "not both"), dict(parameters)
        return True, "", dict(parameters)
    no_scene = (f"choose {single[0]} and its labels (a class raster in LABELS or polygons/points in "
                "LABELS_VECTOR), or a scene table (SCENES)")
    if not any(_given(parameters.get(p)) for p in (single[0], "LABELS", "LABELS_VECTOR")):
        return False, no_scene, dict(parameters)
    ok, msg, checked = check_label_params(parameters, context)
    if ok and not _given(parameters.get(single[0])):
        return False, no_scene, dict(parameters)
    return ok, msg, checked


def scene_table_value(alg, parameters: dict, context, n_inputs: int | None = None):
    """The scenes of SCENES (core.data.scene_table), or None when it is empty."""
    path = alg.parameterAsFile(parameters, SCENES, context)
    if not path:
        return None
    from ...core.data.scene_table import read_scene_table
    from ...core.errors import MmlcError

    try:
        return read_scene_table(path, n_inputs=n_inputs)
    except MmlcError as e:
        raise QgsProcessingException(str(e)) from e
