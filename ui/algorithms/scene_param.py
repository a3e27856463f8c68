"""The SCENES parameter of mmlc:train and mmlc:distill: a scene table instead of one scene.

A file parameter beside the single-scene parameters (input rasters + labels): one or the other.
The table's format is ``core.data.scene_table`` (CSV or GeoPackage, one row per scene with its
input paths, labels and class field).
"""
from __future__ import annotations

from typing import Sequence

from qgis.core import QgsProcessingException, QgsProcessingParameterFile

from .common_params import _given, check_label_params, helped

SCENES = "SCENES"


def add_scenes_param(alg, columns: str) -> None:
    """Add the optional SCENES file parameter (``columns``: the table's input columns, for the help)."""
    param = QgsProcessingParameterFile(SCENES, "Scene table (many scenes instead of the inputs above)", optional=True)
    param.setFileFilter("Scene tables (*.csv *.gpkg)")
    alg.addParameter(helped(param, f"A CSV or GeoPackage table, one row per scene: {columns}, labels (class raster "
                                   "or vector layer), label_field (for vector labels) and an optional name; paths "
                                   "relative to the table. Scenes may differ in CRS and size, not in bands. "
                                   "Leave the single-scene inputs and labels empty when you use it."))


def check_scene_source(parameters: dict, context, single: Sequence[str]) -> tuple[bool, str, dict]:
    """Either SCENES alone or the single scene (``single``: its input ids, the first required,
    then the label checks of ``check_label_params``)."""
    if _given(parameters.get(SCENES)):
        given = [p for p in [*single, "LABELS", "LABELS_VECTOR"] if _given(parameters.get(p))]
        if given:
            return False, (f"give either a scene table (SCENES) or a single scene ({', '.join(given)}), "
                           "not both"), dict(parameters)
        return True, "", dict(parameters)
    if not _given(parameters.get(single[0])):
        return False, f"choose {single[0]} (and labels), or a scene table (SCENES)", dict(parameters)
    return check_label_params(parameters, context)


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
