"""Progress that moves and cancels promptly: core.progress.Steps and the two inference paths."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
from mmlc.core.engine.classify import classify
from mmlc.core.errors import Cancelled
from mmlc.core.progress import CallbackProgress, Steps, format_duration
from test_inference import exact_pan, make_dense_model, make_patch_model


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_steps_move_monotonically_and_log_a_time_estimate() -> None:
    clock = FakeClock()
    progress = CallbackProgress()
    steps = Steps(progress, 10, "tiles", start=0.0, end=0.9, first_log_s=3, log_every_s=10, clock=clock)
    assert progress.fractions == [0.0]  # set at once: no busy bar before the first tile
    for _ in range(10):
        clock.t += 2.0
        steps.advance(1)
    assert progress.fractions == pytest.approx([0.0] + [0.09 * i for i in range(1, 11)])
    # first estimate after 3 s (2 tiles in 4 s -> 16 s left), the next 10 s later (7 tiles in 14 s -> 6 s left)
    assert progress.messages == ["20 % of the tiles done in 4 s, about 16 s left",
                                 "70 % of the tiles done in 14 s, about 6 s left"]


def test_steps_never_go_backwards_across_threads() -> None:
    progress = CallbackProgress()
    steps = Steps(progress, 4000, "pixels")
    threads = [threading.Thread(target=lambda: [steps.advance(1.0) for _ in range(1000)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert progress.fractions == sorted(progress.fractions) and progress.fractions[-1] == pytest.approx(1.0)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (4.4, 65, 3725)] == ["4 s", "1 min 05 s", "1 h 02 min"]


def _patch_inputs(tmp_path: Path, spacenet6: Path) -> tuple[Path, list[str]]:
    ms = spacenet6 / "ms1_2m_uint16.tif"
    return make_patch_model(tmp_path / "patch.mmlc"), [str(ms), str(exact_pan(spacenet6 / "pan1.tif", ms,
                                                                              tmp_path / "pan.tif"))]


def test_patch_progress_moves_within_one_window_and_logs_an_estimate(tmp_path: Path, spacenet6: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """150 x 150 MS pixels in ONE window (tile 256): the bar moves per batch of 256 patches
    (the DAS2F busy bar / 0 -> 100 jump of issue 16), from 0 before the first forward pass."""
    monkeypatch.setattr(Steps, "FIRST_LOG_S", 0.0)
    model, ins = _patch_inputs(tmp_path, spacenet6)
    progress = CallbackProgress()
    classify(model, ins, str(tmp_path / "out.tif"), tile_size=256, batch_size=1, device="cpu", progress=progress)
    f = progress.fractions
    assert f[0] == 0.0 and f[-1] == 1.0 and f == sorted(f)
    inside = [x for x in f if 0.05 < x < 0.95]
    # 22,500 patches / 256 per forward = 88 batches, each in 3 steps: TinyPatchNet's two heads
    # (the members of its ModuleList) and the hand-over
    assert len(inside) >= 3 * 87
    assert any("of the pixels done" in m and "left" in m for m in progress.messages)


def test_dense_progress_moves_per_tile_and_inside_the_network(tmp_path: Path, spacenet6: Path) -> None:
    """0 while the network loads, 0.05 once loaded, then every tile's end (0.05 + 0.9 k / 16), and
    in between a step as each stage of the network finishes (TinyFCN: one stage, so a half tile)."""
    model = make_dense_model(tmp_path / "fcn.mmlc")
    progress = CallbackProgress()
    res = classify(model, [str(spacenet6 / "rgb_unmasked.tif"), str(spacenet6 / "sar_masked.tif")],
                   str(tmp_path / "out.tif"), tile_size=64, overlap=16, batch_size=1, device="cpu",
                   progress=progress, workers=1)
    f = progress.fractions
    assert res.tiles == 16 and f == sorted(f) and f[:2] == [0.0, 0.05] and f[-1] == 1.0
    ends = [0.05 + 0.9 * k / 16 for k in range(1, 17)]
    assert all(any(abs(x - e) < 1e-9 for x in f) for e in ends)
    halves = [x for x in f if all(abs(x - e) > 1e-9 for e in [0.0, 0.05, 1.0] + ends)]
    assert 0 < len(halves) <= 16  # tiles entirely under the SAR's nodata never reach the network
    assert all(abs((x - 0.05) / (0.9 / 16) % 1 - 0.5) < 1e-6 for x in halves)


def test_a_single_tile_raster_moves_while_the_network_runs(tmp_path: Path, spacenet6: Path) -> None:
    """One tile (the 0 -> 100 jump of ASANet on a small raster): the bar moves inside the forward pass."""
    model = make_dense_model(tmp_path / "fcn.mmlc", tile=256, overlap=32)
    progress = CallbackProgress()
    res = classify(model, [str(spacenet6 / "rgb_unmasked.tif"), str(spacenet6 / "sar_masked.tif")],
                   str(tmp_path / "out.tif"), device="cpu", progress=progress)
    assert res.tiles == 1
    assert [x for x in progress.fractions if 0.05 < x < 0.95] == pytest.approx([0.5])


def test_patch_run_cancels_within_the_window(tmp_path: Path, spacenet6: Path) -> None:
    """Cancelled after 5 progress calls inside a single window: it stops there, not at the window's end."""
    model, ins = _patch_inputs(tmp_path, spacenet6)
    progress = CallbackProgress(cancel_after=5)
    with pytest.raises(Cancelled):
        classify(model, ins, str(tmp_path / "out.tif"), tile_size=256, batch_size=1, device="cpu", progress=progress)
    assert progress.calls <= 6 and max(progress.fractions) < 0.1
    assert not (tmp_path / "out.tif").exists()


def test_a_cancel_stops_a_dense_batch_between_network_stages(tmp_path: Path, spacenet6: Path) -> None:
    """Cancelled once the bar has moved inside the forward pass (3rd progress call: 0, 0.05, the
    first stage): the run stops there, before the tile is handed over, and leaves no file."""
    model = make_dense_model(tmp_path / "fcn.mmlc", tile=256, overlap=32)
    progress = CallbackProgress(cancel_after=3)
    with pytest.raises(Cancelled):
        classify(model, [str(spacenet6 / "rgb_unmasked.tif"), str(spacenet6 / "sar_masked.tif")],
                 str(tmp_path / "out.tif"), device="cpu", progress=progress)
    assert progress.fractions == pytest.approx([0.0, 0.05, 0.5]) and not (tmp_path / "out.tif").exists()


def test_the_estimate_uses_whole_batches_not_steps_inside_them() -> None:
    """A fast first network stage must not make the estimate promise the end too early."""
    clock = FakeClock()
    progress = CallbackProgress()
    steps = Steps(progress, 4, "tiles", first_log_s=0, log_every_s=0, clock=clock)
    clock.t += 1.0
    steps.advance(0.5, settle=False)  # a stage inside the first tile: moves the bar, logs nothing
    assert progress.fractions[-1] == pytest.approx(0.125) and progress.messages == []
    clock.t += 9.0
    steps.advance(0.5)  # the tile is handed over: 1 of 4 tiles in 10 s
    assert progress.messages == ["25 % of the tiles done in 10 s, about 30 s left"]
