"""``make models``: train the four built-in demo models with mmlc's own train/distill code on the
shipped samples, and write them (with their training reports) to ``resources/models/``.

Honesty first: the sample labels are rule-based weak labels (NDVI/NDWI or brightness thresholds),
not ground truth, and the models are small variants trained for minutes on a 2-core CPU. They
exist to show the workflow end to end; every model card says so in ``labels_note``.
The BigEarthNet pair ``..._36_85`` (Ireland, June 2017) is held out of training so ``make demo`` runs on unseen data.
Weights are stored in float16 (ASANet: int8 per channel) to keep each file under 20 MB; loading expands them.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "resources" / "models"
SAMPLES = ROOT / "resources" / "sample_data"
BEN = SAMPLES / "bigearthnet"
XIDIAN = SAMPLES / "share_alike" / "spacenet6" / "xidian_layout_tile1"
TRAIN_PAIRS = ("S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48", "S1A_IW_GRDH_1SDV_20170925T043256_35VPK_69_24",
               "S1A_IW_GRDH_1SDV_20180204T043253_35VPK_57_38")
WEAK_BEN = ("BigEarthNet sample pairs (3 of 4; the Irish pair ..._36_85 held out) with rule-based weak labels from "
            "Sentinel-2 NDVI/NDWI thresholds (1 water, 2 dense vegetation, 3 sparse vegetation/crop, "
            "4 other). NOT ground truth: a demonstration model.")
WEAK_SN6 = ("SpaceNet 6 Rotterdam MS/PAN tile 1 (CC BY-SA 4.0) with rule-based weak labels (vegetation, bright "
            "and dark non-vegetated) derived from the MS image itself, 240 training pixels. NOT ground truth: "
            "a demonstration model; share-alike like its data.")


def ben(pair: str, kind: str) -> str:
    return str(BEN / f"{pair}__{kind}.tif")


def compress(path: Path, storage: str) -> None:
    """Re-save a model file with smaller weights (fp16, or int8 per-channel for the big ones)."""
    from ..core.modelfiles.modelfile import load_model_file, save_model_file

    card, tensors = load_model_file(path)
    card.provenance["storage"] = storage
    if card.head_kind == "dense":  # fully convolutional: infer on larger tiles than the 64-px training crops
        card.tile_size, card.overlap = 256, 32
    save_model_file(path, card, tensors, storage=storage)


def main(argv: list[str] | None = None) -> int:
    from ..core.data.datasets import Scene, scenes_from_dataset
    from ..core.fitting.distill import distill
    from ..core.fitting.training import train
    from ..core.progress import NullProgress
    from .card_bands import BUILTIN_INPUTS, annotate

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", nargs="*", help="asanet das2f prsanet hfdnet")
    ap.add_argument("--epochs-scale", type=float, default=1.0)
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    reports = OUT / "reports"
    reports.mkdir(exist_ok=True)
    ben_classes = str(OUT / "classes_bigearthnet_weak.csv")
    ben_scenes = [Scene([ben(p, "s2_10band_10m"), ben(p, "s1_vv_vh_db")], ben(p, "weak_label_s2rules"))
                  for p in TRAIN_PAIRS]
    want = set(args.only or ["asanet", "prsanet", "hfdnet", "das2f"])
    ep = lambda n: max(1, round(n * args.epochs_scale))  # noqa: E731
    progress = NullProgress()
    done = []

    def timed(name: str, fn, storage: str = "fp16") -> None:
        t0 = time.perf_counter()
        fn()
        path = OUT / f"{name}.mmlc"
        compress(path, storage)
        if name in BUILTIN_INPUTS:  # band names and expected inputs on the card
            annotate(path, BUILTIN_INPUTS[name])
        print(f"[ok] {name}: {time.perf_counter() - t0:.0f} s, {path.stat().st_size / 1e6:.1f} MB -> {path}")
        done.append(name)

    if "asanet" in want:
        timed("asanet-demo", lambda: train(
            "asanet", None, None, str(OUT / "asanet-demo.mmlc"), scenes=ben_scenes, variant="convnextv2_atto",
            classes=ben_classes, epochs=ep(25), batch_size=4, tile_size=64, learning_rate=4e-4,
            validation_fraction=0.2, device="cpu", output_report=str(reports / "asanet-demo.html"),
            max_steps_per_epoch=12, build_kwargs={"decoder_channels": 64, "aux_channels": 32, "drop_path_rate": 0.1},
            refit_epochs=0,  # built before the recipe's refit (session 9): the shipped file is its best epoch
            labels_note=WEAK_BEN, progress=progress, resume=False), storage="int8")
    if "prsanet" in want:
        timed("prsanet-demo", lambda: train(
            "prsanet", None, None, str(OUT / "prsanet-demo.mmlc"), scenes=ben_scenes, classes=ben_classes,
            epochs=ep(12), batch_size=64, learning_rate=1e-3, validation_fraction=0.2, device="cpu",
            output_report=str(reports / "prsanet-demo.html"), max_steps_per_epoch=20,
            build_kwargs={"embed_dim": 64}, labels_note=WEAK_BEN, progress=progress, resume=False))
    if "hfdnet" in want:
        small = {"channels": 64, "encoder_width": 32}
        teacher = OUT / "reports" / "hfdnet-teacher-s2.mmlc"
        sar_scenes = [Scene([ben(p, "s2_10band_10m"), ben(p, "s1_vv_vh_db")], ben(p, "weak_label_s2rules"))
                      for p in TRAIN_PAIRS]
        opt_scenes = [Scene([ben(p, "s2_10band_10m")], ben(p, "weak_label_s2rules")) for p in TRAIN_PAIRS]

        def hfd() -> None:
            train("hfdnet", None, None, str(teacher), scenes=opt_scenes, variant="resnet18", classes=ben_classes,
                  epochs=ep(15), batch_size=4, tile_size=64, learning_rate=1e-3, device="cpu",
                  output_report=str(reports / "hfdnet-teacher-s2.html"), max_steps_per_epoch=12,
                  build_kwargs=small, labels_note=WEAK_BEN + " Stage-1 optical teacher.", progress=progress,
                  refit_epochs=0, resume=False)  # as the shipped teacher was built: its best epoch
            distill(str(teacher), None, None, None, str(OUT / "hfdnet-demo.mmlc"), scenes=sar_scenes,
                    epochs=ep(15), batch_size=4, tile_size=64, learning_rate=1e-3, device="cpu",
                    output_report=str(reports / "hfdnet-demo.html"), max_steps_per_epoch=12,
                    compare_sar_only=True, progress=progress)
            teacher.unlink()  # the teacher is not shipped (its report is)

        timed("hfdnet-demo", hfd)
    if "das2f" in want:
        scenes = scenes_from_dataset("xidian", XIDIAN, "train")
        timed("das2f-demo", lambda: train(
            "das2f", None, None, str(OUT / "das2f-demo.mmlc"), scenes=scenes, variant="xian",
            classes=str(OUT / "classes_spacenet6_weak.csv"), epochs=ep(6), batch_size=32, learning_rate=5e-4,
            validation_fraction=0.25, device="cpu", output_report=str(reports / "das2f-demo.html"),
            build_kwargs={"classifier_hidden": 128}, labels_note=WEAK_SN6, progress=progress, resume=False))
    print(f"built: {', '.join(done)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
