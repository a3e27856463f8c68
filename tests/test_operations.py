"""The operation specs (core/operations) against what is generated from them: the frozen parameter
ids, the Processing parameters and the CLI options agreeing, core.api's signatures, the defaults
the CLI leaves to the core, the name table of architectures and variants, the docs' tables."""
from __future__ import annotations

import argparse
import dataclasses
import inspect
from pathlib import Path

import pytest
from mmlc.core import api, cli
from mmlc.core.operations import OPERATIONS, Operation, get_operation
from mmlc.core.operations.spec import Param

#: The frozen contract: scripts, Modeler models and shell scripts use these ids. Processing ids in
#: the dialog's order; the command line has the same ids as options plus its own.
FROZEN_PROCESSING = {
    "classify": ["MODEL", "INPUT_1", "INPUT_2", "EXTENT", "MASK", "TILE_SIZE", "OVERLAP", "BATCH_SIZE", "DEVICE",
                 "OUTPUT", "OUTPUT_CONFIDENCE", "OUTPUT_VECTOR", "OUTPUT_AREAS"],
    "train": ["ARCHITECTURE", "VARIANT", "INPUT_1", "INPUT_2", "LABELS", "LABELS_VECTOR", "LABEL_FIELD", "CLASSES",
              "EPOCHS", "BATCH_SIZE", "LEARNING_RATE", "TILE_SIZE", "VALIDATION_FRACTION", "REFIT_EPOCHS", "INIT_MODEL",
              "DEVICE", "OUTPUT_MODEL", "OUTPUT_REPORT", "SCENES"],
    "distill": ["TEACHER", "INPUT_OPTICAL", "INPUT_SAR", "LABELS", "LABELS_VECTOR", "LABEL_FIELD", "EPOCHS",
                "BATCH_SIZE", "LEARNING_RATE", "TEMPERATURE", "FEATURE_WEIGHT", "KD_WEIGHT", "DEVICE", "OUTPUT_MODEL",
                "OUTPUT_REPORT", "SCENES"],
    "evaluate": ["PREDICTION", "REFERENCE", "REFERENCE_VECTOR", "LABEL_FIELD", "OUTPUT_REPORT", "OUTPUT_TABLE"],
}
CLI_ONLY = {"classify": {"SCENES", "OUTPUT_FOLDER"},
            "train": {"SEED", "ACCUMULATE", "PATIENCE", "CLASS_BALANCE", "MAX_STEPS_PER_EPOCH", "LABELS_NOTE", "DATASET", "STREAM"},
            "distill": {"SEED", "NO_COMPARE", "STREAM"}, "evaluate": set()}
PROCESSING_ONLY = {"classify": {"OUTPUT_AREAS"}, "train": set(), "distill": set(), "evaluate": set()}
#: Where the command line, left without the option, does not get the dialog's default (each with
#: its reason in the spec's cli_default_note).
CLI_DEFAULT_DIFFERS = {"classify": {"MODEL"}, "train": {"ARCHITECTURE", "EPOCHS"},
                       "distill": {"EPOCHS", "TEMPERATURE", "FEATURE_WEIGHT", "KD_WEIGHT"}, "evaluate": set()}
CORE = {"classify": "mmlc.core.engine.classify", "train": "mmlc.core.fitting.training",
        "distill": "mmlc.core.fitting.distill", "evaluate": "mmlc.core.assessment.evaluate"}


# --- the spec itself ---------------------------------------------------------------------------
@pytest.mark.parametrize("op_id", sorted(FROZEN_PROCESSING))
def test_ids_are_frozen(op_id: str) -> None:
    op = get_operation(op_id)
    assert [p.id for p in op.processing_params()] == FROZEN_PROCESSING[op_id]
    assert {p.id for p in op.cli_params()} == (set(FROZEN_PROCESSING[op_id]) - PROCESSING_ONLY[op_id]) | CLI_ONLY[op_id]


def test_operations_in_provider_order_and_spec_checks_itself() -> None:
    assert list(OPERATIONS) == ["classify", "train", "distill", "evaluate"]
    with pytest.raises(ValueError, match="given twice"):
        Operation("x", "X", "x", (Param("A", "int", "a"), Param("A", "int", "a")))
    with pytest.raises(ValueError, match="unknown kind"):
        Param("A", "number", "a")
    with pytest.raises(ValueError, match="declare the file"):
        Param("O", "output_file", "o")
    with pytest.raises(ValueError, match="no parameter"):
        Operation("x", "X", "x", (Param("A", "int", "a"),), cli_required=("B",))
    with pytest.raises(ValueError, match="unknown operation"):
        get_operation("segment")


def test_every_parameter_says_what_it_is_everywhere() -> None:
    for op in OPERATIONS.values():
        for p in op.params:
            assert p.label and (p.doc or p.help), (op.id, p.id)
            assert not p.in_cli or p.cli_help, (op.id, p.id)
            if p.kind == "enum" and p.widget != "device":
                assert p.default is None or p.default in p.choices, (op.id, p.id)


def test_name_table_matches_the_networks() -> None:
    from mmlc.core.fitting.network import variant_kwarg
    from mmlc.models.registry import get_spec, list_architectures, list_models, list_variants

    assert sorted(list_architectures()) == list_models()
    assert get_operation("train").param("ARCHITECTURE").choices == list_architectures()
    for arch in list_architectures():
        spec = get_spec(arch)
        assert sorted(list_variants(arch)) == sorted(spec.variants), arch
        if spec.variants:  # the first listed is the builder's default
            assert list_variants(arch)[0] == inspect.signature(spec.builder).parameters[variant_kwarg(spec)].default
    with pytest.raises(KeyError, match="unknown model"):
        list_variants("nope")


# --- core.api ----------------------------------------------------------------------------------
def _core_function(op_id: str):
    import importlib

    return getattr(importlib.import_module(CORE[op_id]), op_id)


@pytest.mark.parametrize("op_id", sorted(OPERATIONS))
def test_api_signatures_are_the_core_functions(op_id: str) -> None:
    assert getattr(api, op_id) is _core_function(op_id)  # the same object: nothing to drift
    ours = inspect.signature(getattr(api, op_id)).parameters
    theirs = inspect.signature(_core_function(op_id)).parameters
    assert [(n, p.kind, p.default) for n, p in ours.items()] == [(n, p.kind, p.default) for n, p in theirs.items()]
    assert all(p.annotation is not inspect.Parameter.empty for p in ours.values())
    keywords = {p.core for p in get_operation(op_id).params if p.core}
    assert keywords <= set(ours), keywords - set(ours)


def test_importing_the_api_loads_no_torch_numpy_or_gdal() -> None:
    import subprocess
    import sys

    code = ("import sys, mmlc.core.api as a; print(sorted(m for m in ('torch', 'numpy', 'osgeo') if m in sys.modules));"
            "print(sorted(a.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1] / "build" / "pkg").stdout.split("\n")
    assert out[0] == "[]" and out[1] == "['classify', 'distill', 'evaluate', 'train']"


def cli_default_divergences(op: Operation) -> dict[str, str]:
    """Parameters on both surfaces whose dialog default is not what the core does when the CLI
    leaves them out (None): 0 and None both mean "the core's default" for the budget numbers."""
    core = inspect.signature(getattr(api, op.id)).parameters
    out = {}
    for p in op.params:
        if not (p.in_cli and p.in_processing and p.core) or p.default is None:
            continue
        left_out = core[p.core].default
        if left_out is inspect.Parameter.empty:
            out[p.id] = "required by the core"
        elif p.default != left_out and not (p.default == 0 and left_out is None):
            out[p.id] = f"dialog {p.default!r}, core {left_out!r}"
    return out


@pytest.mark.parametrize("op_id", sorted(OPERATIONS))
def test_cli_defaults_agree_with_the_dialog_or_say_why(op_id: str) -> None:
    op = get_operation(op_id)
    differs = cli_default_divergences(op)
    assert set(differs) == CLI_DEFAULT_DIFFERS[op_id], differs
    assert {p.id for p in op.params if p.cli_default_note} == CLI_DEFAULT_DIFFERS[op_id]


def test_cli_default_check_catches_a_new_divergence() -> None:
    op = get_operation("classify")
    changed = dataclasses.replace(op, params=tuple(dataclasses.replace(p, default=8) if p.id == "BATCH_SIZE" else p
                                                   for p in op.params))
    assert cli_default_divergences(changed) == {"MODEL": "required by the core", "BATCH_SIZE": "dialog 8, core 4"}


def test_distiller_defaults_behind_the_notes() -> None:
    """The CLI leaves TEMPERATURE/FEATURE_WEIGHT/KD_WEIGHT to the distiller, whose defaults are the
    dialog's (the dialog's temperature was 2.0 against the distiller's 1.0 until the spec showed it)."""
    from mmlc.models.hfd_distill import HFDDistiller

    defaults = inspect.signature(HFDDistiller).parameters
    op = get_operation("distill")
    assert defaults["feature_weight"].default == op.param("FEATURE_WEIGHT").default == 1.0
    assert defaults["kd_weight"].default == op.param("KD_WEIGHT").default == 1.0
    assert defaults["temperature"].default == op.param("TEMPERATURE").default == 1.0


# --- the CLI and Processing, generated from the spec, agree --------------------------------------
def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def divergences(op: Operation, algorithm, parser: argparse.ArgumentParser) -> list[str]:
    """Every way the Processing algorithm or the CLI parser differ from ``op``'s spec."""
    from mmlc.ui.algorithms.common_params import is_advanced
    from mmlc.ui.widgets.base import is_optional
    from qgis.core import QgsProcessingParameterNumber

    problems = []
    defs = {d.name(): d for d in algorithm.parameterDefinitions()}
    actions = {a.dest: a for a in _subparser(parser, op.id)._actions if a.dest != "help"}
    spec_ids = {p.id for p in op.params}
    problems += [f"{i}: a Processing parameter the spec does not have" for i in sorted(set(defs) - spec_ids)]
    problems += [f"{i}: a CLI option the spec does not have" for i in sorted(set(actions) - spec_ids)]
    for p in op.params:
        d = defs.get(p.id)
        if p.in_processing and d is None:
            problems.append(f"{p.id}: missing in Processing")
        elif not p.in_processing and d is not None:
            problems.append(f"{p.id}: command-line only in the spec, yet in Processing")
        if d is not None and p.in_processing:
            if d.defaultValue() != p.default:
                problems.append(f"{p.id}: Processing default {d.defaultValue()!r}, spec {p.default!r}")
            if is_optional(d) != p.optional or is_advanced(d) != p.advanced:
                problems.append(f"{p.id}: optional/advanced differ")
            if p.kind in ("int", "float"):
                integer = d.dataType() == QgsProcessingParameterNumber.Type.Integer
                if integer != (p.kind == "int"):
                    problems.append(f"{p.id}: Processing number type differs from {p.kind}")
                if p.minimum is not None and d.minimum() != p.minimum:
                    problems.append(f"{p.id}: minimum {d.minimum()} vs {p.minimum}")
                if p.maximum is not None and d.maximum() != p.maximum:
                    problems.append(f"{p.id}: maximum {d.maximum()} vs {p.maximum}")
            if p.kind == "enum" and p.choices and tuple(d.options()) != p.choices:
                problems.append(f"{p.id}: Processing choices {list(d.options())} vs {list(p.choices)}")
        a = actions.get(p.id)
        if p.in_cli and a is None:
            problems.append(f"{p.id}: missing on the command line")
        elif not p.in_cli and a is not None:
            problems.append(f"{p.id}: Processing only in the spec, yet a CLI option")
        if a is not None and p.in_cli:
            if f"--{p.id}" not in a.option_strings:
                problems.append(f"{p.id}: the CLI option is not --{p.id}")
            flag = isinstance(a, argparse._StoreTrueAction)
            if flag != (p.kind == "bool") or (not flag and a.type is not p.cli_type):
                problems.append(f"{p.id}: CLI type {a.type} vs kind {p.kind}")
            if a.default not in (None, False):  # left out = the core's default (see the test above)
                problems.append(f"{p.id}: CLI default {a.default!r}")
            if a.help != p.cli_help:
                problems.append(f"{p.id}: CLI help differs from the spec")
    return problems


def _algorithm(op_id: str):
    from mmlc.ui.algorithms import all_algorithms

    alg = next(a for a in all_algorithms() if a.name() == op_id)
    alg.initAlgorithm()
    return alg


@pytest.mark.parametrize("op_id", sorted(OPERATIONS))
def test_cli_and_processing_agree_with_the_spec(qgis_app, op_id: str) -> None:
    assert divergences(get_operation(op_id), _algorithm(op_id), cli.build_parser()) == []
    assert cli._REQUIRED[op_id] == set(get_operation(op_id).cli_required)


def test_a_divergence_is_caught(qgis_app, monkeypatch) -> None:
    """A parameter the CLI loses, a Processing default changed after generation, an option added
    by hand: each is reported."""
    from mmlc.ui.algorithms import spec_params

    op = get_operation("classify")
    original = spec_params._BUILDERS["int"]

    def shifted(p: Param, label: str):
        return original(dataclasses.replace(p, default=(p.default or 0) + 1), label)

    monkeypatch.setitem(spec_params._BUILDERS, "int", shifted)
    table = cli.option_table
    monkeypatch.setattr(cli, "option_table", lambda o: [t for t in table(o) if t[0] != "OVERLAP"]
                        + ([("TILE", int, "by hand")] if o.id == "classify" else []))
    found = divergences(op, _algorithm("classify"), cli.build_parser())
    assert "OVERLAP: missing on the command line" in found
    assert "TILE: a CLI option the spec does not have" in found
    assert "TILE_SIZE: Processing default 1, spec 0" in found and "BATCH_SIZE: Processing default 5, spec 4" in found


def test_processing_parameters_pass_labels_through_tr(qgis_app, monkeypatch) -> None:
    from mmlc.ui.algorithms.base import MmlcAlgorithm

    monkeypatch.setattr(MmlcAlgorithm, "tr", lambda self, text: f"«{text}»")
    alg = _algorithm("evaluate")
    assert alg.parameterDefinition("PREDICTION").description() == "«Classified raster»"
    assert alg.parameterDefinition("OUTPUT_TABLE").help().startswith("«The confusion matrix")
    assert alg.displayName() == "«Evaluate a land-cover map»"


# --- outputs and docs ------------------------------------------------------------------------------
def test_output_checks_follow_the_spec(tmp_path) -> None:
    from mmlc.core.engine.output_paths import check_outputs, planned_files
    from mmlc.core.errors import OutputError

    files = planned_files("classify", {"OUTPUT": str(tmp_path / "o.tif"), "OUTPUT_CONFIDENCE": str(tmp_path / "c.tif")})
    assert [(f.param, f.path.name, f.what) for f in files] == [
        ("OUTPUT", "o.tif", ""), ("OUTPUT", "o.qml", "style file"), ("OUTPUT", "o.tif.aux.xml", "GDAL side-car"),
        ("OUTPUT_CONFIDENCE", "c.tif", ""), ("OUTPUT_CONFIDENCE", "c.tif.aux.xml", "GDAL side-car")]
    assert [f.path.name for f in planned_files("train", {"OUTPUT_MODEL": str(tmp_path / "m.mmlc")})] == [
        "m.mmlc", "m.mmlc.resume.pt"]
    with pytest.raises(ValueError, match="no output"):
        planned_files("evaluate", {"OUTPUT": "x.tif"})
    # the model's resume side-car is the input of the run: refused, naming the side-car
    with pytest.raises(OutputError, match="resume checkpoint"):
        check_outputs("distill", {"OUTPUT_MODEL": str(tmp_path / "m.mmlc")},
                      {"TEACHER": str(tmp_path / "m.mmlc.resume.pt")})
    for op in OPERATIONS.values():
        assert all(p.kind.startswith("output_") for p in op.outputs)


def test_docs_tables_are_generated_from_the_spec(monkeypatch) -> None:
    from mmlc.tools import param_tables

    assert param_tables.stale_pages() == [], "run python -m mmlc.tools.param_tables, then mmlc.tools.docs_html"
    op = get_operation("evaluate")
    changed = dataclasses.replace(op, params=tuple(dataclasses.replace(p, doc="something else")
                                                   if p.id == "PREDICTION" else p for p in op.params))
    monkeypatch.setitem(param_tables.OPERATIONS, "evaluate", changed)
    assert [p.name for p in param_tables.stale_pages()] == ["evaluate.md"]
