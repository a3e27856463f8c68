"""Parameters several operations share: labels, training budget, device, model outputs."""
from __future__ import annotations

from .spec import CLI, MODEL, PROCESSING, REPORT, Param

DEVICE_HELP = "auto (CUDA GPU if present, then Apple MPS, then CPU), cpu, cuda or cuda:N"

#: What the command line does with an option it was not given, where the dialog preselects a value.
RECIPE_EPOCHS_NOTE = ("the command line keeps the network's recipe (e.g. 50 epochs) when EPOCHS is not given; "
                      "the dialog preselects a short first run")

CLI_ONLY = frozenset({CLI})
PROCESSING_ONLY = frozenset({PROCESSING})


def label_params(layer_id: str = "LABELS", what: str = "Labels", cli_raster: str = "", cli_vector: str = "",
                 cli_field: str = "", doc_raster: str = "", doc_vector: str = "", doc_field: str = "",
                 core: str = "labels") -> tuple[Param, ...]:
    """Labels as a class raster (``layer_id``) or a vector layer (``<layer_id>_VECTOR``) with its
    class field (LABEL_FIELD, parented on the vector parameter only).

    Two parameters rather than one "raster or vector" map layer: a field widget parented on a
    parameter that accepts rasters crashes QGIS (3.22) as soon as a raster is chosen. A vector given
    in ``layer_id`` by an older script still works (ui/algorithms/common_params.check_label_params).
    """
    vector_id = f"{layer_id}_VECTOR"
    return (
        Param(layer_id, "raster", f"{what} (class raster)", optional=True,
              help="One class value per pixel; 0 or nodata = unlabelled. Leave empty for polygons/points.",
              cli_help=cli_raster, doc=doc_raster, doc_default="—", core=core),
        Param(vector_id, "vector", f"{what} (or polygons/points)", optional=True, geometry="any",
              help="Polygons or points with a class field, any CRS (instead of a class raster).",
              cli_help=cli_vector, doc=doc_vector, doc_default="—"),
        Param("LABEL_FIELD", "field", "Class field of the polygons/points", optional=True, parent=vector_id,
              help="Integer class values, or text names (numbered 1..K in alphabetical order).",
              cli_help=cli_field, doc=doc_field, doc_default="—", core="label_field"),
    )


def budget_params(epochs: int = 20, doc_lr: str = "") -> tuple[Param, ...]:
    """EPOCHS; BATCH_SIZE (0 = the network's recipe) and LEARNING_RATE (empty or 0 = the recipe),
    both Advanced. LEARNING_RATE is optional without a default, so the dialog shows it empty
    rather than "0.000000"; 0 from older scripts and models still means the recipe's rate."""
    return (
        Param("EPOCHS", "int", "Epochs (0 = the network's default)", default=epochs, minimum=0,
              help="Passes over the training tiles/pixels; the best epoch on the validation blocks is kept.",
              cli_help="training epochs (0 = the network's recipe)",
              doc="passes over the training tiles/pixels; 0 keeps the network's recipe. From the command line, "
                  "left out = the recipe", doc_default=f"{epochs} (dialog), recipe (command line)",
              core="epochs", cli_default_note=RECIPE_EPOCHS_NOTE),
        Param("BATCH_SIZE", "int", "Batch size (0 = the network's default)", default=0, minimum=0, advanced=True,
              help="Tiles (segmentation) or pixels (per-pixel networks) per optimisation step; 0 keeps the "
                   "network's recipe. Lower it if memory runs out.",
              cli_help="batch size (0 = the network's recipe)",
              doc="tiles or pixels per optimisation step; 0 keeps the network's recipe", doc_default="recipe",
              core="batch_size"),
        Param("LEARNING_RATE", "float", "Learning rate (empty = default)", optional=True, minimum=0.0, advanced=True,
              decimals=6,
              help="Peak learning rate of the schedule; empty (or 0) keeps the network's recipe "
                   "(e.g. 6e-5 for ASANet, 1e-3 for PRSANet).",
              cli_help="base learning rate",
              doc=doc_lr or "peak learning rate of the schedule; empty or 0 keeps the network's recipe",
              doc_default="recipe", core="learning_rate"),
    )


def device_param() -> Param:
    """DEVICE: in the dialog a dropdown of auto, cpu and what PyTorch sees (each CUDA GPU by name);
    Advanced. The value stays the device string the core takes (``cuda:0``)."""
    return Param("DEVICE", "enum", "Device", default="auto", advanced=True, widget="device",
                 help=DEVICE_HELP + ".", cli_help="auto, cpu, cuda, cuda:N or mps",
                 doc="`auto` (CUDA, then Apple MPS, then CPU), `cpu`, and what PyTorch sees: `cuda`, each GPU as "
                     "`cuda:N` (shown with its name), `mps`. A dropdown in the dialog; scripts pass the string",
                 doc_default="`auto`", core="device")


def model_outputs(model_cli: str, report_cli: str, doc_model: str, doc_report: str) -> tuple[Param, ...]:
    """OUTPUT_MODEL and OUTPUT_REPORT (the HTML training report, on by default in the dialog)."""
    return (
        Param("OUTPUT_MODEL", "output_file", "Model file", output=MODEL, file_filter="mmlc model files (*.mmlc)",
              cli_help=model_cli, doc=doc_model, doc_default="—", core="output_model"),
        Param("OUTPUT_REPORT", "output_file", "Training report", output=REPORT, file_filter="HTML files (*.html)",
              optional=True, create_by_default=True,
              help="HTML report: loss and validation accuracy per epoch, per-class scores, confusion matrix, "
                   "the model card. Uncheck 'Open output file' or skip the output to leave it out.",
              cli_help=report_cli, doc=doc_report,
              doc_default="temporary file (dialog), `<OUTPUT_MODEL>.report.html` (command line)",
              core="output_report"),
    )


def seed_param() -> Param:
    return Param("SEED", "int", "Random seed", cli_help="random seed (default 0)", surfaces=CLI_ONLY,
                 doc="random seed of the split, sampling and initialisation", doc_default="0",
                 core="seed")


def scenes_param(columns: str, doc_extra: str = "") -> Param:
    """SCENES of train and distill: a scene table (``core.data.scene_table``) instead of one scene."""
    return Param("SCENES", "file", "Scene table (instead of the inputs above)", optional=True,
                 file_filter="Scene tables (*.csv *.gpkg)",
                 help=f"A CSV or GeoPackage table, one row per scene: {columns}, labels (class raster or vector "
                      "layer), label_field (for vector labels) and an optional name; paths relative to the table. "
                      "Scenes may differ in CRS and size, not in bands. Leave the single-scene inputs and labels "
                      "empty when you use it.",
                 cli_help=f"many scenes instead: a scene table (CSV/GeoPackage: {columns}, labels, label_field, "
                          "name per row)",
                 doc=f"a scene table (CSV or GeoPackage: {columns}, `labels`, `label_field`, `name` per row; paths "
                     f"relative to the table) instead of the single-scene inputs and labels{doc_extra}",
                 doc_default="none")
