"""The spec of *distill*: a SAR-only HFD-Net student distilled from an optical teacher (paired images)."""
from __future__ import annotations

from .shared import CLI_ONLY, budget_params, device_param, label_params, model_outputs, scenes_param, seed_param
from .spec import Operation, Param

_DISTILLER_DEFAULT = ("left out on the command line, the distiller's own default applies "
                      "(models/hfd_distill.py; the same value)")

DISTILL = Operation(
    id="distill",
    name="Distill a SAR model from an optical teacher",
    cli_summary="distil a SAR student from an optical teacher",
    cli_required=("TEACHER", "INPUT_OPTICAL|SCENES", "INPUT_SAR|SCENES", "LABELS|LABELS_VECTOR|SCENES", "OUTPUT_MODEL"),
    params=(
        Param("TEACHER", "file", "Teacher model (hfdnet trained on optical)", file_filter="mmlc model files (*.mmlc)",
              help="An hfdnet .mmlc file from Train on optical images; it stays frozen.",
              cli_help="teacher model file or built-in model name (hfdnet trained on optical)",
              doc="hfdnet model file trained on the optical input, or a built-in model name (as classify's `MODEL`)",
              doc_default="—", core="teacher"),
        Param("INPUT_OPTICAL", "raster", "Optical image (teacher input)", optional=True,
              help="The optical raster the teacher was trained on (same bands, same order).",
              cli_help="optical raster (teacher input)", doc="the optical image of the co-registered pair",
              doc_default="—", core="input_optical"),
        Param("INPUT_SAR", "raster", "SAR image (student input)", optional=True,
              help="The co-registered SAR raster (dB); the distilled model needs only this one.",
              cli_help="SAR raster (student input)", doc="the SAR image of the pair (dB)", doc_default="—",
              core="input_sar"),
        *label_params(cli_raster="class raster (a vector file with LABEL_FIELD is accepted too)",
                      cli_vector="polygons/points with a class field (instead of LABELS)",
                      cli_field="class field of LABELS_VECTOR",
                      doc_raster="as in *Train*: a class raster", doc_vector="or polygons/points (instead of `LABELS`)",
                      doc_field="class field of `LABELS_VECTOR`"),
        *budget_params(),
        Param("TEMPERATURE", "float", "KD temperature", default=1.0, minimum=0.1, advanced=True,
              help="Softens teacher and student class probabilities in the logit distillation term (higher = "
                   "softer).",
              cli_help="distillation temperature", doc="KD temperature τ (the KL term is scaled by τ²)",
              doc_default="1", core="temperature", cli_default_note=_DISTILLER_DEFAULT),
        Param("FEATURE_WEIGHT", "float", "Feature loss weight", default=1.0, minimum=0.0, advanced=True,
              help="Weight of the feature-imitation term (student features vs the teacher's) next to the class "
                   "loss.",
              cli_help="weight of the feature distillation loss", doc="weight λ_f of the feature term",
              doc_default="1", core="feature_weight", cli_default_note=_DISTILLER_DEFAULT),
        Param("KD_WEIGHT", "float", "Logit KD weight", default=1.0, minimum=0.0, advanced=True,
              help="Weight of the logit distillation term (student vs teacher probabilities) next to the class "
                   "loss.",
              cli_help="weight of the logit distillation loss", doc="weight λ_kd of the logit term",
              doc_default="1", core="kd_weight", cli_default_note=_DISTILLER_DEFAULT),
        device_param(),
        *model_outputs("output SAR-only model file (.mmlc)", "output report (HTML)",
                       "the SAR-only `.mmlc` file",
                       "HTML report comparing the distilled student with a student trained on SAR alone"),
        seed_param(),
        Param("NO_COMPARE", "bool", "Skip the SAR-only comparison",
              cli_help="skip training the SAR-only comparison student", surfaces=CLI_ONLY,
              doc="skip training the SAR-only comparison student", doc_default="off"),
        scenes_param("input_optical, input_sar"),
        Param("STREAM", "bool", "Read training windows from disk",
              cli_help="read training windows from disk (default: only for scenes above 4096x4096 pixels)",
              surfaces=CLI_ONLY, doc="read training windows from disk instead of whole scenes",
              doc_default="only for scenes above 4096 × 4096 pixels", core="stream"),
    ),
)
