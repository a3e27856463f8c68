"""The spec of *train*: one of the four networks on your rasters and labels, into one model file."""
from __future__ import annotations

from ...models.registry import list_architectures, list_variants
from .shared import CLI_ONLY, budget_params, device_param, label_params, model_outputs, scenes_param, seed_param
from .spec import Operation, Param

ARCHITECTURES: tuple[str, ...] = list_architectures()
#: Variants per architecture, default first (models/registry.py's name table).
VARIANTS: dict[str, tuple[str, ...]] = {a: list_variants(a) for a in ARCHITECTURES}
ALL_VARIANTS: tuple[str, ...] = tuple(v for a in ARCHITECTURES for v in VARIANTS[a])

TRAIN = Operation(
    id="train",
    name="Train a land-cover model",
    cli_summary="train a model file",
    cli_required=("OUTPUT_MODEL",),
    params=(
        Param("ARCHITECTURE", "enum", "Architecture", default="asanet", choices=ARCHITECTURES, widget="plain",
              cli_help="network: " + ", ".join(ARCHITECTURES),
              doc=", ".join(f"`{a}`" for a in ARCHITECTURES), doc_default="`asanet` (dialog; required on the "
              "command line)", core="architecture",
              cli_default_note="required on the command line (which also takes networks registered at run "
                               "time); the dialog preselects the first"),
        Param("VARIANT", "enum", "Variant", optional=True, choices=ALL_VARIANTS, advanced=True, widget="variant",
              help="Size of the network: ASANet backbone " + ", ".join(VARIANTS["asanet"])
                   + "; DAS2F nanjing/xian; HFD-Net encoder resnet50/34/18; empty = the architecture's default "
                   "(the first listed).",
              cli_help="network variant (e.g. resnet18 for hfdnet)",
              doc="ASANet backbone `convnextv2_atto` … `convnextv2_base` (or the short names `atto` … `base`); "
                  "DAS2F `nanjing`/`xian`; HFD-Net encoder `resnet18/34/50`. The dialog offers only the chosen "
                  "architecture's", doc_default="network default", core="variant"),
        Param("INPUT_1", "raster", "Input 1 (optical / MS / first modality)", optional=True,
              help="ASANet optical, DAS2F multispectral, PRSANet first modality, HFD-Net its only input. The band "
                   "order is recorded in the model file.",
              cli_help="first input raster",
              doc="as in *Classify*: ASANet optical, DAS2F multispectral, PRSANet first modality, HFD-Net its "
                  "only input", doc_default="—"),
        Param("INPUT_2", "raster", "Input 2 (SAR / PAN / second modality)", optional=True,
              help="ASANet SAR (dB), DAS2F panchromatic (4x finer), PRSANet second modality; empty for HFD-Net.",
              cli_help="second input raster (two-modality networks)",
              doc="as in *Classify* (read on Input 1's grid)", doc_default="none"),
        *label_params(cli_raster="class raster (a vector file with LABEL_FIELD is accepted too)",
                      cli_vector="polygons/points with a class field (instead of LABELS)",
                      cli_field="class field of LABELS_VECTOR",
                      doc_raster="class raster (0/nodata = unlabelled; negative values are refused unless declared "
                                 "nodata)",
                      doc_vector="or polygons/points (instead of `LABELS`; negative field values are refused; "
                                 "empty or 0 = unlabelled)",
                      doc_field="class field of `LABELS_VECTOR` (integer values, or text mapped to 1..K)"),
        Param("CLASSES", "file", "Class table (value,name,#rrggbb)", optional=True,
              file_filter="Class tables (*.csv *.txt)",
              cli_help="class table: value,name,#rrggbb per line",
              doc="optional table, one `value,name,#rrggbb` per line", doc_default="from the labels", core="classes"),
        *budget_params(),
        Param("TILE_SIZE", "int", "Tile size (0 = the network's default)", default=0, minimum=0, advanced=True,
              help="Training crop side for segmentation networks; 0 keeps the network's recipe.",
              cli_help="training tile side (dense networks)",
              doc="training crop side for segmentation networks; 0 keeps the network's recipe", doc_default="recipe",
              core="tile_size"),
        Param("VALIDATION_FRACTION", "float", "Validation fraction", default=0.2, minimum=0.0, maximum=0.9,
              decimals=2, advanced=True,
              help="Share of the labelled pixels held out in spatially disjoint blocks to pick the best epoch.",
              cli_help="share of labelled pixels in validation blocks (default 0.2)",
              doc="share of spatial blocks held out for validation (never random pixels)", doc_default="0.2",
              core="validation_fraction"),
        Param("REFIT_EPOCHS", "int", "Refit epochs (empty = default, 0 = off)",
              optional=True, minimum=0, advanced=True,
              help="After the run with validation blocks, train a fresh network on every labelled pixel (the "
                   "validation blocks included) for this many epochs and keep it; the report's scores come from "
                   "the first run. Empty keeps the network's default: PRSANet 20 epochs; ASANet and HFD-Net 50 "
                   "when the labels hold at most 100,000 labelled pixels, where a few validation blocks pick the "
                   "epoch badly; DAS2F none. 0 turns it off.",
              cli_help="after the run with validation, train a fresh network on all labelled pixels for this many "
                       "epochs and keep it (0 = off; default: the network's recipe)",
              doc="after the run with validation, train a fresh network on every labelled pixel (validation "
                  "blocks included) for this many epochs (at most `EPOCHS`) and keep it; the report's scores come "
                  "from the first run (0 = off)",
              doc_default="the network's recipe: PRSANet 20; ASANet and HFD-Net 50 on label sets of at most "
                          "100,000 labelled pixels, else off; DAS2F off", core="refit_epochs"),
        Param("INIT_MODEL", "file", "Initial weights (.mmlc or backbone)", optional=True, advanced=True,
              help="Start from an .mmlc model of the same architecture (fine-tuning) or a pretrained backbone "
                   "checkpoint.",
              cli_help="model file to fine-tune or pretrained backbone weights",
              doc="fine-tune from a model file, or a pretrained backbone file (timm/torchvision layout)",
              doc_default="none", core="init_model"),
        device_param(),
        *model_outputs("output model file (.mmlc)", "output training report (HTML)", "the `.mmlc` file",
                       "HTML report: loss (left axis) with validation accuracy/mIoU/kappa (right axis) per epoch, "
                       "other logged values on axes of their own, confusion matrix, per-epoch diagnostics. On by "
                       "default in the dialog"),
        seed_param(),
        Param("ACCUMULATE", "int", "Gradient accumulation steps", cli_help="gradient accumulation steps (default 1)",
              surfaces=CLI_ONLY, doc="optimiser steps accumulate the gradients of this many batches",
              doc_default="1", core="accumulate"),
        Param("PATIENCE", "int", "Early stopping patience",
              cli_help="early stopping after this many epochs without improvement (0 = off; default: the "
                       "network's recipe)", surfaces=CLI_ONLY,
              doc="stop after this many epochs without a better validation score (0 = every epoch runs)",
              doc_default="the network's recipe (PRSANet 20, the others none)", core="patience"),
        Param("CLASS_BALANCE", "float", "Class-balanced sampling",
              cli_help="draw each labelled pixel with weight count(its class)^-P: 0 = off, 1 = every class "
                       "equally often (default: the network's recipe)", surfaces=CLI_ONLY,
              doc="class-balanced sampling: each labelled pixel is drawn with weight count(its class)^-P "
                  "(0 = off, 1 = every class equally often; in-memory training only)",
              doc_default="the network's recipe", core="class_balance"),
        Param("MAX_STEPS_PER_EPOCH", "int", "Steps per epoch at most", cli_help="cap on optimiser steps per epoch",
              surfaces=CLI_ONLY, doc="cap on optimiser steps per epoch", doc_default="none",
              core="max_steps_per_epoch"),
        Param("LABELS_NOTE", "string", "Note on the labels",
              cli_help="free text about the labels, stored in the model card", surfaces=CLI_ONLY,
              doc="free text about the labels, stored in the model card", doc_default="empty",
              core="labels_note"),
        Param("DATASET", "string", "Benchmark dataset",
              cli_help="train from a benchmark folder instead: KIND:FOLDER (e.g. whu-opt-sar:/data/WHU)",
              surfaces=CLI_ONLY, doc="train from a benchmark folder instead of `INPUT_1`/`INPUT_2`/`LABELS`: "
              "`KIND:FOLDER` (see [benchmark datasets](benchmark-datasets.md))",
              doc_default="none"),
        scenes_param("input_1, input_2 (for two-modality networks)",
                     "; see *Many scenes* below"),
        Param("STREAM", "bool", "Read training windows from disk",
              cli_help="read training windows from disk (default: only for scenes above 4096x4096 pixels)",
              surfaces=CLI_ONLY, doc="read training windows from disk instead of whole scenes",
              doc_default="only for scenes above 4096 × 4096 pixels", core="stream"),
    ),
)
