"""Reading a card without PyTorch, rewriting it without touching the weights, and the built-in
cards' band names (tools/card_bands.py)."""
from __future__ import annotations

import hashlib
import shutil
import struct
from pathlib import Path

import pytest
from mmlc.core.errors import ModelFileError
from mmlc.core.modelfiles.cardinfo import read_card_light, rewrite_card
from mmlc.core.modelfiles.modelfile import load_model_file, read_card
from mmlc.tools.card_bands import BUILTIN_INPUTS, annotate

MODELS = Path(__file__).resolve().parent.parent / "resources" / "models"


def _data_digest(path: Path) -> str:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return hashlib.sha256(raw[8 + n:]).hexdigest()


@pytest.mark.parametrize("name", sorted(BUILTIN_INPUTS))
def test_builtin_cards_carry_band_names_and_expected_inputs(name: str) -> None:
    card = read_card_light(MODELS / f"{name}.mmlc")
    assert card == read_card(MODELS / f"{name}.mmlc")  # same card as the safetensors reader
    for m, (names, info) in zip(card.modalities, BUILTIN_INPUTS[name]):
        assert m.band_names == names and len(m.band_names) == m.bands
    expected = card.provenance["expected_inputs"]
    assert [e["modality"] for e in expected] == [m.name for m in card.modalities]
    assert all(e["data_type"] and e["pixel_size_m"] > 0 for e in expected)


def test_asanet_demo_band_order_is_the_sample_rasters_band_order(bigearthnet: Path) -> None:
    from osgeo import gdal

    card = read_card_light(MODELS / "asanet-demo.mmlc")
    for modality, kind in zip(card.modalities, ("s2_10band_10m", "s1_vv_vh_db")):
        ds = gdal.Open(str(next(bigearthnet.glob(f"*87_48__{kind}.tif"))))
        descriptions = [ds.GetRasterBand(i + 1).GetDescription() for i in range(ds.RasterCount)]
        assert descriptions == modality.band_names


def test_rewrite_keeps_the_weights_and_their_checksum(tmp_path: Path) -> None:
    src = MODELS / "prsanet-demo.mmlc"
    path = Path(shutil.copy(src, tmp_path / "m.mmlc"))
    before_data = _data_digest(path)
    _, before = load_model_file(path)

    def edit(card) -> None:
        card.modalities[0].band_names = [f"b{i}" for i in range(card.modalities[0].bands)]
        card.provenance["note"] = "x" * 1001  # a header length that needs padding

    assert rewrite_card(path, edit) is True
    assert _data_digest(path) == before_data
    card, after = load_model_file(path)  # verifies the stored sha256 against the tensors
    assert card.modalities[0].band_names[0] == "b0" and card.provenance["note"] == "x" * 1001
    assert sorted(after) == sorted(before) and all((after[k] == before[k]).all() for k in before)
    assert rewrite_card(path, edit) is False  # nothing to change: file untouched
    assert annotate(path, BUILTIN_INPUTS["prsanet-demo"]) is True
    assert annotate(path, BUILTIN_INPUTS["prsanet-demo"]) is False


def test_annotate_refuses_a_wrong_band_count(tmp_path: Path) -> None:
    path = Path(shutil.copy(MODELS / "hfdnet-demo.mmlc", tmp_path / "m.mmlc"))
    with pytest.raises(ValueError, match="2 bands, 3 names"):
        annotate(path, [(["a", "b", "c"], {})])


def test_light_reader_refuses_foreign_and_truncated_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mmlc"
    bad.write_bytes(b"\x10\x00")
    with pytest.raises(ModelFileError, match="shorter than 8 bytes"):
        read_card_light(bad)
    bad.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(ModelFileError, match="bad header length"):
        read_card_light(bad)
    bad.write_bytes(struct.pack("<Q", 2) + b"{}")
    with pytest.raises(ModelFileError, match="no card"):
        read_card_light(bad)
    with pytest.raises(ModelFileError, match="does not exist"):
        read_card_light(tmp_path / "nope.mmlc")
