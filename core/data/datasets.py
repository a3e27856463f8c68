"""Training scenes: what a run trains on, how a scene is loaded, and readers for benchmark folders.

A :class:`Scene` is one set of co-registered inputs plus its labels (a class raster, a vector
layer with a class field, or, for the Xi'an/Nanjing layout, a ``.npy`` array on input 1's grid).
:func:`load_scene` reads it on input 1's grid through ``core.engine.io.AlignedReader`` (other inputs on
their ``grid_ratio``-times finer twin) and the labels through ``core.data.labels.read_labels``.

:func:`scenes_from_dataset` maps the folder layouts of the public benchmarks
(``/work/shared/specs/datasets.md`` in the design notes; summarised in each reader's docstring)
to scenes, so a researcher can train from a dataset folder.

Design choice: a scene is read whole into memory (float32) for training; the sample and typical
analyst scenes are small. Very large scenes should be cut into several scenes (the benchmark
readers already yield one scene per tile).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..classes import ClassInfo, default_classes
from ..engine.gdal_errors import gdal_call, gdal_failed
from ..errors import InputError

#: Dataset kinds understood by :func:`scenes_from_dataset`.
DATASET_KINDS: tuple[str, ...] = ("whu-opt-sar", "pie-rgb-sar", "ddhr", "sen12ms", "spacenet6", "xidian")


@dataclass
class Scene:
    """One training scene: inputs in model input order and their labels.

    label_divisor / label_offset: raw label values v become ``v // label_divisor + label_offset``
    before use (WHU-OPT-SAR stores classes as 10..70: divisor 10; DDHR uses 0 as a real class:
    offset 1). 0 after the mapping means unlabelled.
    unlabelled_value: a raw value that means "no label" before the mapping (e.g. 255), or None.
    burn_value: for a vector layer without a class field (SpaceNet 6 building footprints): every
    feature is burnt as this value and the rest of input 1's grid is ``background_value``
    (so the background is a real class, not unlabelled). None = read labels with ``label_field``.
    class_names: names of the mapped class values, where the layout defines them.
    """

    inputs: list[str]
    labels: str
    label_field: str | None = None
    label_divisor: int = 1
    label_offset: int = 0
    unlabelled_value: int | None = None
    name: str = ""
    burn_value: int | None = None
    background_value: int = 1
    class_names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.inputs = [str(p) for p in self.inputs]
        self.labels = str(self.labels)
        if not self.name:
            self.name = Path(self.inputs[0]).stem if self.inputs else Path(self.labels).stem


@dataclass
class SceneData:
    """A scene in memory, on input 1's grid.

    arrays: one float32 (C_i, ratio_i*H, ratio_i*W) array per input, NaN where nodata.
    values: (H, W) uint16 raw class values after the scene's mapping, 0 = unlabelled/invalid.
    classes: the classes the label source declares (value, name, colour).
    """

    name: str
    arrays: list[np.ndarray]
    values: np.ndarray
    valid: np.ndarray
    classes: list[ClassInfo]
    grid: object = None
    fingerprints: list[dict] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.values.shape[0]), int(self.values.shape[1])


def fingerprint(path: str) -> dict:
    """Provenance of one input file: name, size, mtime and sha256 of its first MiB (cheap, stable)."""
    p = Path(path)
    try:
        st = p.stat()
        with open(p, "rb") as f:
            head = f.read(1 << 20)
    except OSError:
        return {"path": str(path), "exists": False}
    return {
        "path": str(p.resolve()),
        "size": int(st.st_size),
        "mtime": float(st.st_mtime),
        "sha256_first_mib": hashlib.sha256(head).hexdigest(),
    }


def read_label_array(path: str, shape: tuple[int, int]) -> np.ndarray:
    """Labels stored as a numpy array on input 1's grid (Xi'an/Nanjing layout: ``.npy``/``.mat``).

    NaN and negative values count as unlabelled (0). Shared by the dataset readers and core/xidian.
    """
    try:
        if path.lower().endswith(".npy"):
            arr = np.load(path, allow_pickle=False)
        else:
            from scipy.io import loadmat

            mat = loadmat(path)
            key = "label" if "label" in mat else next(k for k in mat if not k.startswith("__"))
            arr = np.asarray(mat[key])
    except (OSError, ValueError, StopIteration) as e:
        raise InputError(f"cannot read the label array {path}: {e}") from e
    arr = np.squeeze(arr)
    if arr.shape != shape:
        raise InputError(
            f"the label array {path} has shape {arr.shape} but must match input 1's {shape[0]} x {shape[1]} "
            "pixels: labels are on input 1's grid (the MS resolution for the Xi'an/Nanjing layout)"
        )
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.where(np.isfinite(arr), arr, 0)
    if (arr < 0).any():
        arr = np.where(arr < 0, 0, arr)
    return arr.astype(np.int64)


def load_scene(scene: Scene, ratios: Sequence[int]) -> SceneData:
    """Read a scene whole on input 1's grid: arrays (NaN = nodata), mapped label values, validity.

    Raises InputError/GridError (from the reader) with the file at fault.
    """
    from ..engine.io import AlignedReader

    for p in scene.inputs:
        if not Path(p).exists():
            raise InputError(f"input {p} does not exist")
    if not Path(scene.labels).exists():
        raise InputError(f"labels {scene.labels} do not exist")
    if len(ratios) != len(scene.inputs):
        raise InputError(f"scene {scene.name}: {len(scene.inputs)} input(s) given but the network takes {len(ratios)}")
    with AlignedReader(scene.inputs, ratios=list(ratios)) as reader:
        grid = reader.grid
        h, w = int(grid.height), int(grid.width)
        arrays, valid = reader.read(0, 0, h, w, halo=0, pad="nan")
    arrays = [np.asarray(a, dtype=np.float32) for a in arrays]
    if scene.labels.lower().endswith((".npy", ".mat")):
        raw = read_label_array(scene.labels, (h, w))
        classes: list[ClassInfo] | None = None
    elif scene.burn_value is not None:
        raw = _burn_features(scene.labels, grid, scene.burn_value, scene.background_value)
        classes = None
    else:
        from .labels import read_labels

        raw_u16, classes = read_labels(scene.labels, grid, scene.label_field)
        raw = np.asarray(raw_u16).astype(np.int64)
    values = raw.copy()
    if scene.unlabelled_value is not None:
        values[raw == scene.unlabelled_value] = -1
    keep = values >= 0
    values = np.where(keep, values // max(1, scene.label_divisor) + scene.label_offset, 0)
    if scene.label_divisor != 1 or scene.label_offset != 0 or classes is None:
        classes = default_classes(np.unique(values[values > 0]).tolist())
    if scene.class_names:
        classes = [ClassInfo(c.value, scene.class_names.get(c.value, c.name), c.color) for c in classes]
    values[~np.asarray(valid, bool)] = 0
    if values.max(initial=0) > 65534:
        raise InputError(f"labels {scene.labels}: class values must be below 65535")
    return SceneData(
        name=scene.name,
        arrays=arrays,
        values=values.astype(np.uint16),
        valid=np.asarray(valid, bool),
        classes=list(classes),
        grid=grid,
        fingerprints=[fingerprint(p) for p in [*scene.inputs, scene.labels]],
    )


def _burn_features(path: str, grid: object, burn: int, background: int) -> np.ndarray:
    """Every feature of a vector layer burnt as ``burn`` over ``background`` on ``grid``.

    GDAL's rasteriser reprojects the features into the grid's CRS (SpaceNet 6 footprints are
    lon/lat, the tiles UTM); pixel-centre rule. A layer without features gives all background.
    """
    from osgeo import gdal

    ds, _ = gdal_call(gdal.OpenEx, str(path), gdal.OF_VECTOR)
    if ds is None or ds.GetLayerCount() == 0:
        raise InputError(f"cannot open the label layer {path} as a vector file")
    dst = gdal.GetDriverByName("MEM").Create("", int(grid.width), int(grid.height), 1, gdal.GDT_UInt16)
    dst.SetGeoTransform(tuple(grid.transform))
    if grid.crs_wkt:
        dst.SetProjection(grid.crs_wkt)
    dst.GetRasterBand(1).Fill(int(background))
    err, msg = gdal_call(gdal.RasterizeLayer, dst, [1], ds.GetLayer(0), burn_values=[int(burn)])
    if gdal_failed(err):
        raise InputError(f"cannot rasterise the features of {path}: {msg}")
    return dst.GetRasterBand(1).ReadAsArray().astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Benchmark folder layouts
# ---------------------------------------------------------------------------------------------

def _need_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise InputError(f"{what}: folder {path} not found; check the dataset root and kind")
    return path


def _list_file(folder: Path, split: str) -> list[str] | None:
    for name in (f"{split}.txt", f"{split}_list.txt", f"splits/{split}.txt", f"splits/{split}_list.txt"):
        p = folder / name
        if p.is_file():
            return [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]
    return None


def _by_stem(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def _paired(dirs: Sequence[Path], label_dir: Path, names: list[str] | None, **scene_kw) -> list[Scene]:
    maps = [_by_stem(d) for d in dirs]
    labels = _by_stem(label_dir)
    stems = names if names is not None else sorted(labels)
    out = []
    for s in stems:
        s = Path(s).stem
        if s not in labels or any(s not in m for m in maps):
            raise InputError(f"tile {s!r} is missing in one of {[str(d) for d in (*dirs, label_dir)]}")
        out.append(Scene([str(m[s]) for m in maps], str(labels[s]), name=s, **scene_kw))
    return out


def _whu(root: Path, split: str) -> list[Scene]:
    """WHU-OPT-SAR: ``optical/``, ``sar/``, ``lbl/`` with the same names; labels 0, 10..70 -> /10.

    0 (background) is treated as unlabelled, as ASANet does (7 classes). Optional split lists
    ``{split}.txt`` / ``splits/{split}_list.txt`` name the tiles; otherwise every tile is used.
    """
    names = _list_file(root, split)
    return _paired(
        [_need_dir(root / "optical", "WHU-OPT-SAR"), _need_dir(root / "sar", "WHU-OPT-SAR")],
        _need_dir(root / "lbl", "WHU-OPT-SAR"),
        names,
        label_divisor=10,
    )


def _pie(root: Path, split: str) -> list[Scene]:
    """PIE-RGB-SAR: ``rgb/``, ``sar/``, ``label/`` and ``train.txt``/``val.txt`` name lists.

    Classes 0..5 are all real (0 background): offset 1 so that 0 stays "unlabelled".
    """
    names = _list_file(root, split)
    if names is None:
        raise InputError(f"PIE-RGB-SAR: {root}/{split}.txt not found (expected train.txt / val.txt)")
    return _paired([_need_dir(root / "rgb", "PIE"), _need_dir(root / "sar", "PIE")],
                   _need_dir(root / "label", "PIE"), names, label_offset=1, unlabelled_value=255)


def _ddhr(root: Path, split: str) -> list[Scene]:
    """DDHR: ``GF2/<id>.jpg``, ``GF3/<id>.jpg``, ``label/<id>.png``; classes 0..4 (offset 1).

    Split as in the ASANet tools: ids in blocks [100j, 100j+99] with j even (200-299, 400-499...)
    are validation, the others training (unless a ``{split}.txt`` list exists). Not georeferenced.
    """
    gf2, gf3, lab = (_need_dir(root / d, "DDHR") for d in ("GF2", "GF3", "label"))
    names = _list_file(root, split)
    if names is None:
        ids = sorted(_by_stem(lab))

        def is_val(s: str) -> bool:
            return s.isdigit() and (int(s) // 100) % 2 == 0 and int(s) >= 200

        names = [s for s in ids if is_val(s) == (split in ("val", "test"))]
    return _paired([gf2, gf3], lab, names, label_offset=1, unlabelled_value=255)


def _sen12ms(root: Path, split: str) -> list[Scene]:
    """SEN12MS: ``ROIs*/s2_<n>/..._s2_<n>_p<k>.tif`` (optical first), ``s1_<n>``, ``lc_<n>`` (band 1 IGBP).

    Design choice: the IGBP band (band 1 of ``lc``) is used as the class raster as is (1..17).
    ``split`` = ``train`` uses every ROI except the hold-out scenes listed in
    ``splits/SEN12MS_holdOutScenes.txt`` when present; ``val``/``test`` use only those and need
    that list (InputError without it, rather than silently validating on the training tiles).
    """
    holdout: set[str] = set()
    hp = root / "splits" / "SEN12MS_holdOutScenes.txt"
    if hp.is_file():
        holdout = {ln.strip() for ln in hp.read_text().splitlines() if ln.strip()}
    elif split != "train":
        raise InputError(
            f"SEN12MS: {hp} not found; the {split!r} split is the hold-out scenes it lists "
            "(copy splits/SEN12MS_holdOutScenes.txt from the SEN12MS repository into the dataset root)"
        )
    out = []
    for roi in sorted(p for p in root.glob("ROIs*") if p.is_dir()):
        for s2dir in sorted(roi.glob("s2_*")):
            sid = s2dir.name[3:]
            # the official list writes "<ROI>/s1_<n>"; "<ROI>_s1_<n>" and "<ROI>_<n>" are accepted too
            keys = {f"{roi.name}/s1_{sid}", f"{roi.name}_s1_{sid}", f"{roi.name}_{sid}"}
            if holdout and (bool(keys & holdout) != (split != "train")):
                continue
            for s2 in sorted(s2dir.glob("*.tif")):
                s1 = roi / f"s1_{sid}" / s2.name.replace("_s2_", "_s1_")
                lc = roi / f"lc_{sid}" / s2.name.replace("_s2_", "_lc_")
                if s1.is_file() and lc.is_file():
                    out.append(Scene([str(s2), str(s1)], str(lc), name=s2.stem))
    if not out:
        raise InputError(f"SEN12MS: no s2/s1/lc triplet found under {root}/ROIs*")
    return out


def _spacenet6(root: Path, split: str) -> list[Scene]:
    """SpaceNet 6: ``{PS-RGBNIR|PS-RGB, SAR-Intensity}/..._tile_<n>.tif`` + ``geojson_buildings``.

    Buildings are rasterised from the GeoJSON (which has no class field): building footprints are
    class 2, the rest of the tile class 1 (background is a real class here, not unlabelled; a
    tile without buildings is all background). Design choice: tiles with an even number ``n`` go
    to validation.
    """
    base = root
    for sub in ("train/AOI_11_Rotterdam", "AOI_11_Rotterdam"):
        if (root / sub).is_dir():
            base = root / sub
    opt_dir = next((base / d for d in ("PS-RGBNIR", "PS-RGB", "RGBNIR") if (base / d).is_dir()), None)
    sar_dir = _need_dir(base / "SAR-Intensity", "SpaceNet 6")
    geo_dir = _need_dir(base / "geojson_buildings", "SpaceNet 6")
    if opt_dir is None:
        raise InputError(f"SpaceNet 6: no PS-RGBNIR/PS-RGB folder under {base}")

    def tile_id(p: Path) -> str:
        return p.stem.split("_tile_")[-1]

    opts = {tile_id(p): p for p in opt_dir.glob("*.tif")}
    sars = {tile_id(p): p for p in sar_dir.glob("*.tif")}
    geos = {tile_id(p): p for p in geo_dir.glob("*.geojson")}
    out = []
    for t in sorted(set(opts) & set(sars) & set(geos), key=lambda s: (len(s), s)):
        is_val = t.isdigit() and int(t) % 2 == 0
        if is_val == (split in ("val", "test")):
            out.append(Scene([str(opts[t]), str(sars[t])], str(geos[t]), name=f"tile_{t}", burn_value=2,
                             background_value=1, class_names={1: "background", 2: "building"}))
    return out


def _xidian(root: Path, split: str) -> list[Scene]:
    """Xi'an/Nanjing MS+PAN layout: ``<city>/ms4.tif``, ``<city>/pan.tif`` (4x finer) and labels
    ``train.npy``/``test.npy`` or ``label.npy``/``label.mat`` at MS resolution (0 = unlabelled).

    ``root`` may be one city folder or a folder of cities. ``split`` = ``train`` uses
    ``train.npy`` (else ``label.*``); ``val``/``test`` use ``test.npy``.
    """
    cities = [root] if (root / "ms4.tif").is_file() else sorted(p for p in root.iterdir() if (p / "ms4.tif").is_file())
    if not cities:
        raise InputError(f"Xi'an/Nanjing layout: no ms4.tif under {root}")
    out = []
    for c in cities:
        names = ["train.npy", "label.npy", "label.mat"] if split == "train" else ["test.npy", "label.npy", "label.mat"]
        lab = next((c / n for n in names if (c / n).is_file()), None)
        if lab is None:
            raise InputError(f"{c}: no {' / '.join(names)} label file")
        out.append(Scene([str(c / "ms4.tif"), str(c / "pan.tif")], str(lab), name=c.name))
    return out


_READERS = {
    "whu-opt-sar": _whu,
    "pie-rgb-sar": _pie,
    "ddhr": _ddhr,
    "sen12ms": _sen12ms,
    "spacenet6": _spacenet6,
    "xidian": _xidian,
}


def scenes_from_dataset(kind: str, folder: str | os.PathLike, split: str = "train") -> list[Scene]:
    """Scenes of a public benchmark folder (``kind`` in :data:`DATASET_KINDS`; ``split`` train/val/test)."""
    key = kind.lower().replace("_", "-")
    aliases = {"whu": "whu-opt-sar", "pie": "pie-rgb-sar", "sn6": "spacenet6", "xian": "xidian", "nanjing": "xidian"}
    key = aliases.get(key, key)
    if key not in _READERS:
        raise InputError(f"unknown dataset kind {kind!r}; known: {', '.join(DATASET_KINDS)}")
    root = _need_dir(Path(folder), f"dataset {kind}")
    scenes = _READERS[key](root, split)
    if not scenes:
        raise InputError(f"dataset {kind} at {root}: no scene for split {split!r}")
    return scenes
