"""Optical -> SAR distillation through the generic loop, on a real BigEarthNet S2/S1 pair."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmlc.core.errors import InputError, ModelFileError
from mmlc.core.fitting.distill import distill
from mmlc.core.fitting.training import train
from mmlc.core.modelfiles.modelfile import build_from_file, load_model_file
from mmlc.models.registry import build_model

PAIR = "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48__"


@pytest.fixture(scope="module")
def pair(bigearthnet: Path) -> dict[str, str]:
    return {k: str(bigearthnet / f"{PAIR}{v}.tif") for k, v in
            (("opt", "s2_10band_10m"), ("sar", "s1_vv_vh_db"), ("lab", "weak_label_s2rules"))}


@pytest.fixture(scope="module")
def teacher(pair, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "teacher.mmlc"
    train("hfdnet", [pair["opt"]], pair["lab"], str(out), variant="resnet18", epochs=1, batch_size=2,
          tile_size=32, max_steps_per_epoch=2, seed=0, output_report="", labels_note="weak S2 rules")
    return out


@pytest.mark.slow
def test_distilled_student_is_an_ordinary_sar_model(teacher, pair, tmp_path):
    out = tmp_path / "student.mmlc"
    res = distill(str(teacher), pair["opt"], pair["sar"], pair["lab"], str(out), epochs=1, batch_size=2,
                  tile_size=32, max_steps_per_epoch=2, seed=0, device="cpu", feature_weight=0.5, kd_weight=1.0,
                  temperature=2.0)
    t_card, _ = load_model_file(teacher)
    card, tensors = load_model_file(out)
    assert card.architecture == "hfdnet" and card.variant == "resnet18"
    assert [m.bands for m in card.modalities] == [2] and card.build_kwargs["in_channels"] == 2
    assert card.classes == t_card.classes
    fresh = build_model("hfdnet", **card.build_kwargs).state_dict()
    assert set(tensors) == set(fresh)  # no adapter, no teacher tensor
    assert card.provenance["distillation"] == {"feature_weight": 0.5, "kd_weight": 1.0, "temperature": 2.0,
                                               "levels": card.provenance["distillation"]["levels"]}
    # logs of the distiller's loss parts reached the history through the generic loop
    assert {"seg", "feat", "kd", "loss"} <= set(res.history[0])
    # both students were validated; the comparison is reported (not judged)
    assert res.sar_only_history is not None and len(res.sar_only_history) == 1
    comp = card.provenance["comparison"]
    assert comp["distilled_miou"] == pytest.approx(res.best_metric)
    assert comp["sar_only_miou"] == pytest.approx(res.sar_only_metric)
    assert 0.0 <= res.best_metric <= 1.0 and 0.0 <= res.sar_only_metric <= 1.0
    assert res.report_path and "SAR" in Path(res.report_path).read_text()
    _, model = build_from_file(out)
    assert model(torch.zeros(1, 2, 32, 32)).shape == (1, len(card.classes), 32, 32)


def test_distill_refuses_wrong_teachers(teacher, pair, tmp_path):
    torch.manual_seed(0)
    other = tmp_path / "other.mmlc"
    card, tensors = load_model_file(teacher)
    card.architecture = "prsanet"
    from mmlc.core.modelfiles.modelfile import save_model_file

    save_model_file(other, card, tensors)
    with pytest.raises(InputError, match="hfdnet teacher"):
        distill(str(other), pair["opt"], pair["sar"], pair["lab"], str(tmp_path / "s.mmlc"), epochs=1)
    raw = teacher.read_bytes()
    broken = tmp_path / "broken.mmlc"
    broken.write_bytes(raw[:-100])
    with pytest.raises(ModelFileError):
        distill(str(broken), pair["opt"], pair["sar"], pair["lab"], str(tmp_path / "s.mmlc"), epochs=1)
    with pytest.raises(InputError, match="bands"):
        distill(str(teacher), pair["sar"], pair["sar"], pair["lab"], str(tmp_path / "s.mmlc"), epochs=1)
    assert not (tmp_path / "s.mmlc").exists()


def test_distill_streams_windows_like_train(teacher, pair, tmp_path):
    """stream=True: the scenes are opened and read window by window (core.data.windows), the
    optical normalisation is the teacher's, the SAR card gets its statistics from sampled windows,
    and the student is an ordinary SAR model of the teacher's classes."""
    out = tmp_path / "streamed.mmlc"
    res = distill(str(teacher), pair["opt"], pair["sar"], pair["lab"], str(out), epochs=1, batch_size=2,
                  tile_size=32, max_steps_per_epoch=2, seed=0, device="cpu", compare_sar_only=False,
                  output_report="", stream=True)
    t_card, _ = load_model_file(teacher)
    card, _ = load_model_file(out)
    assert card.classes == t_card.classes and [m.bands for m in card.modalities] == [2]
    assert len(card.modalities[0].mean) == 2 and all(s > 0 for s in card.modalities[0].std)
    assert card.provenance["train_pixels"] > 0 and len(res.history) == 1
