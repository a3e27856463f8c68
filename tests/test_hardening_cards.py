"""Issue 17 (D): a model card is data from a stranger. A fuzzer mutates every field of real cards
(types, sizes, nesting, removal, unknown fields) and the text itself: reading and building must
end in a ModelFileError or a usable model, never another exception. Sizes (TILE_SIZE) are cut
to the raster or refused with the figures."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from mmlc.core import api
from mmlc.core.engine.sizes import check_tile_memory, clamp_tile, tile_buffer_bytes
from mmlc.core.errors import InputError, ModelFileError
from mmlc.core.modelfiles.modelfile import _digest, build_from_file, load_model_file, read_card
from osgeo import gdal
from safetensors import safe_open
from safetensors.torch import save_file
from test_inference import make_dense_model, make_patch_model

ROOT = Path(__file__).resolve().parent.parent


def _deep(n: int) -> Any:
    v: Any = 1
    for _ in range(n):
        v = [v]
    return v


MUTATIONS: list[Any] = [None, True, -1, 0, 10**12, 1e308, float("nan"), "x", "x" * 5_000, "/etc/passwd", [], {},
                        [1, "a", None], {"k": {"k": {"k": 1}}}, _deep(40), list(range(5_000))]


def _nodes(obj: Any, path: tuple = ()) -> Iterator[tuple]:
    yield path
    if path == ("provenance",):  # free-form record: mutated as a whole (and one level down)
        for k in list(obj)[:3] if isinstance(obj, dict) else []:
            yield path + (k,)
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _nodes(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):  # the first items of a list stand for the others
            yield from _nodes(v, path + (i,))


def _set(card: dict, path: tuple, value: Any) -> dict:
    out = copy.deepcopy(card)
    if not path:
        return value
    node = out
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return out


def _delete(card: dict, path: tuple) -> dict:
    out = copy.deepcopy(card)
    node = out
    for k in path[:-1]:
        node = node[k]
    del node[path[-1]]
    return out


def _tensors(model: Path) -> dict:
    with safe_open(str(model), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _write(path: Path, tensors: dict, text: str) -> Path:
    save_file(tensors, str(path), metadata={"mmlc.card": text, "mmlc.sha256": _digest(tensors), "format": "pt"})
    return path


def _open_untrusted(path: Path) -> str:
    """Read and build; 'ok' or 'refused' (ModelFileError); anything else propagates."""
    try:
        read_card(path)
        build_from_file(path, "cpu")
    except ModelFileError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return "refused"
    return "ok"


@pytest.fixture(scope="module")
def base_models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("cards")
    return [make_dense_model(d / "dense.mmlc"), make_patch_model(d / "patch.mmlc"),
            ROOT / "resources" / "models" / "hfdnet-demo.mmlc"]


def test_card_fuzzer_every_field(tmp_path: Path, base_models: list[Path]) -> None:
    outcomes: dict[str, int] = {"ok": 0, "refused": 0}
    for m in base_models:
        tensors = _tensors(m)
        card = json.loads(load_model_file(m, weights=False)[0].to_json())
        cases: list[Any] = []
        real_network = m.parent.name == "models"  # a shipped network: its own constructor's keywords
        for path in _nodes(card):
            if real_network and path[:1] != ("build_kwargs",):
                continue  # the rest of the schema is the same as the tiny models' (fuzzed in full)
            for v in MUTATIONS:
                cases.append(_set(card, path, v))
            if path:
                cases.append(_delete(card, path))
        cases.append({**card, "unknown_field": 1})
        cases.append({**card, "build_kwargs": {**card["build_kwargs"], "pretrained": "/etc/passwd"}})
        cases.append({**card, "build_kwargs": {**card["build_kwargs"], "no_such_kwarg": 3}})
        f = tmp_path / "fuzz.mmlc"
        for c in cases:
            outcomes[_open_untrusted(_write(f, tensors, json.dumps(c)))] += 1
    # most mutations must be refused; some (a name, a provenance value, a bool for an int) leave a usable model
    assert outcomes["refused"] > 5 * outcomes["ok"] > 0, outcomes


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000,
                                  "not json", "null", "[]", '"card"', "{}", "x" * 3_000_000,
                                  '{"architecture": "tiny_dense_test", "modalities": NaN}'])
def test_card_text_fuzz(tmp_path: Path, base_models: list[Path], text: str) -> None:
    f = _write(tmp_path / "t.mmlc", _tensors(base_models[0]), text)
    assert _open_untrusted(f) == "refused"


def _variant(base: Path, tmp_path: Path, **changes: Any) -> Path:
    card = json.loads(load_model_file(base, weights=False)[0].to_json())
    for k, v in changes.items():
        if k.startswith("m0_"):
            card["modalities"][0][k[3:]] = v
        elif k.startswith("bk_"):
            card["build_kwargs"][k[3:]] = v
        else:
            card[k] = v
    return _write(tmp_path / "v.mmlc", _tensors(base), json.dumps(card))


@pytest.mark.parametrize("changes,match", [
    ({"tile_size": 1_000_000}, "tile_size = 1000000 is outside 1..8192"),
    ({"m0_grid_ratio": 1000}, "modalities\\[0\\].grid_ratio = 1000 is outside 1..16"),
    ({"m0_bands": 10**9}, "modalities\\[0\\].bands = 1000000000 is outside"),
    ({"bk_pretrained": "/home/someone/.ssh/id_rsa"}, "build_kwargs.pretrained names a file"),
    ({"bk_backbone": "../../weights.pth"}, "build_kwargs.backbone = '../../weights.pth' looks like a file"),
    ({"bk_in_channels": [3, 10**9]}, "build_kwargs.in_channels\\[1\\] = 1000000000 is outside"),
    ({"classes": [{"value": 1, "name": "a", "color": "#000000"}] * 2}, "lists a class value twice"),
    ({"head_kind": "sparse"}, "head_kind 'sparse' must be dense or patch"),
])
def test_hostile_values_are_named(tmp_path: Path, base_models: list[Path], changes: dict, match: str) -> None:
    with pytest.raises(ModelFileError, match=match):
        read_card(_variant(base_models[0], tmp_path, **changes))


def test_old_cards_without_new_fields_still_load(tmp_path: Path, base_models: list[Path]) -> None:
    card = json.loads(load_model_file(base_models[0], weights=False)[0].to_json())
    for m in card["modalities"]:
        m.pop("data_type")
        m.pop("value_range")
    f = _write(tmp_path / "old.mmlc", _tensors(base_models[0]), json.dumps(card))
    assert read_card(f).modalities[0].data_type == ""
    for name in ("asanet-demo", "das2f-demo", "hfdnet-demo", "prsanet-demo"):  # shipped before the fields existed
        build_from_file(ROOT / "resources" / "models" / f"{name}.mmlc")


def test_huge_tile_is_clamped_to_the_raster(tmp_path: Path, base_models: list[Path], spacenet6: Path) -> None:
    pair = [str(spacenet6 / "rgb_unmasked.tif"), str(spacenet6 / "sar_masked.tif")]
    assert clamp_tile(100_000, 200, 150, 64) == 224 and clamp_tile(100_000, 20, 20, 256) == 256
    assert clamp_tile(128, 2000, 2000, 256) == 128
    big = api.classify(base_models[0], pair, str(tmp_path / "big.tif"), tile_size=100_000, device="cpu")
    same = api.classify(base_models[0], pair, str(tmp_path / "same.tif"), tile_size=224, device="cpu")
    assert big.tiles == 1
    assert np.array_equal(gdal.Open(big.output).ReadAsArray(), gdal.Open(same.output).ReadAsArray())


def test_tiles_whose_buffers_do_not_fit_are_refused_with_the_figures() -> None:
    need = tile_buffer_bytes(20_000, 4, [10, 2], [1, 1], 8)
    assert need == 4 * (20_000 ** 2) * (12 * 4 + 2 * 8 * 4 + 4)
    assert f"{need / 2**30:.1f}" == "172.9"
    with pytest.raises(InputError, match="TILE_SIZE 20000 with BATCH_SIZE 4 needs at least 172.9 GiB .* the 16.0 GiB"):
        check_tile_memory(20_000, 4, [10, 2], [1, 1], 8, available=16 * 2**30)
    check_tile_memory(256, 4, [10, 2], [1, 1], 8, available=16 * 2**30)


def test_training_tile_is_checked_before_reading_and_cut_to_the_scenes(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from mmlc.core.data.prepare import training_tile

    nowhere = str(tmp_path / "no_such.tif")
    with pytest.raises(InputError, match="TILE_SIZE 100000 must be between 8 and 8192"):
        api.train("hfdnet", [nowhere], nowhere, str(tmp_path / "m.mmlc"), tile_size=100_000)
    with pytest.raises(InputError, match="TILE_SIZE 100000 must be between 8 and 8192"):
        api.distill("hfdnet-demo", nowhere, nowhere, nowhere, str(tmp_path / "s.mmlc"), tile_size=100_000)
    scenes = [SimpleNamespace(shape=(200, 150)), SimpleNamespace(shape=(90, 300))]
    assert training_tile(8192, scenes) == 320 and training_tile(128, scenes) == 128
