"""Write resources/modeler/mmlc_train_classify_evaluate.model3: a Graphical Modeler chain
train -> classify -> evaluate whose OA/kappa/mIoU come out as model outputs.

Built through QGIS's own API (so the file is exactly what the Modeler would save); run with
``python -m mmlc.tools.make_modeler_model`` after changing the algorithms' parameters.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "resources" / "modeler" / "mmlc_train_classify_evaluate.model3"


# Columns of the Modeler canvas, left to right: inputs, train, classify, evaluate, outputs.
X_INPUTS, X_TRAIN, X_CLASSIFY, X_EVALUATE, X_OUTPUTS = 120.0, 420.0, 720.0, 1020.0, 1300.0


def build():
    """The model: inputs on the left, train -> classify -> evaluate left to right, every child
    parameter fed (by a model input, a child output or a static value) so it validates and runs."""
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterEnum,
        QgsProcessingParameterFile,
        QgsProcessingParameterNumber,
        QgsProcessingParameterRasterLayer,
    )
    from qgis.core import (
        QgsProcessingModelChildParameterSource as Src,
    )
    from qgis.PyQt.QtCore import QPointF

    m = QgsProcessingModelAlgorithm("Train, classify and evaluate", "mmlc")
    m.setHelpContent({"ALG_DESC": "Trains an mmlc model on Input 1 (+ Input 2) and a class raster, classifies "
                                  "Input 1 (+ Input 2) with it, and evaluates the map against the same labels (a "
                                  "quick check of fit; use independent labels for a real accuracy assessment). "
                                  "The default architecture, asanet, takes an optical Input 1 and a SAR Input 2; "
                                  "hfdnet takes Input 1 only (leave Input 2 empty).",
                      "LABELS": "Class raster: 0 or nodata = unlabelled.",
                      "INPUT_2": "SAR (asanet), PAN (das2f) or the second modality (prsanet); empty for hfdnet.",
                      "CLASSES": "Optional class table, one 'value,name,#rrggbb' per line: names and colours of "
                                 "the map's classes (otherwise 'class N' in generated colours).",
                      "TILE_SIZE": "Training and classification tile side in pixels; 0 = the network's default."})

    y = 60.0

    def add_input(param) -> None:
        nonlocal y
        m.addModelParameter(param, QgsProcessingModelParameter(param.name()))
        m.parameterComponent(param.name()).setPosition(QPointF(X_INPUTS, y))
        y += 70.0

    arch = QgsProcessingParameterEnum("ARCHITECTURE", "Architecture", ["asanet", "das2f", "prsanet", "hfdnet"],
                                      defaultValue="asanet")
    arch.setUsesStaticStrings(True)
    add_input(arch)
    add_input(QgsProcessingParameterRasterLayer("INPUT_1", "Input 1 (optical / MS)"))
    add_input(QgsProcessingParameterRasterLayer("INPUT_2", "Input 2 (SAR / PAN)", optional=True))
    add_input(QgsProcessingParameterRasterLayer("LABELS", "Class raster"))
    classes = QgsProcessingParameterFile("CLASSES", "Class table", optional=True)
    classes.setFileFilter("Class tables (*.csv *.txt)")
    add_input(classes)
    add_input(QgsProcessingParameterNumber("EPOCHS", "Epochs", QgsProcessingParameterNumber.Type.Integer, 5, minValue=1))
    add_input(QgsProcessingParameterNumber("TILE_SIZE", "Tile size (0 = default)",
                                           QgsProcessingParameterNumber.Type.Integer, 0, minValue=0))

    if hasattr(m, "setParameterOrder"):  # the dialog lists inputs in this order (else alphabetically)
        m.setParameterOrder(["ARCHITECTURE", "INPUT_1", "INPUT_2", "LABELS", "CLASSES", "EPOCHS", "TILE_SIZE"])

    def child(alg_id: str, child_id: str, x: float, sources: dict, outputs: dict | None = None,
              depends: tuple = ()) -> None:
        """A child fed by ``sources`` (param -> source); ``outputs``: child output -> model output name."""
        alg = QgsProcessingModelChildAlgorithm(alg_id)
        alg.setChildId(child_id)
        alg.setDescription(child_id.capitalize())
        alg.setPosition(QPointF(x, 200.0))
        for param, source in sources.items():
            alg.addParameterSources(param, [source])
        model_outputs = {}
        for i, (child_output, name) in enumerate((outputs or {}).items()):
            out = QgsProcessingModelOutput(name, name)
            out.setChildId(child_id)
            out.setChildOutputName(child_output)
            out.setPosition(QPointF(x + 120.0, 300.0 + 60.0 * i))
            model_outputs[name] = out
        alg.setModelOutputs(model_outputs)
        m.addChildAlgorithm(alg)

    model_input = Src.fromModelParameter
    static = Src.fromStaticValue
    child("mmlc:train", "train", X_TRAIN, {
        "ARCHITECTURE": model_input("ARCHITECTURE"), "INPUT_1": model_input("INPUT_1"),
        "INPUT_2": model_input("INPUT_2"), "LABELS": model_input("LABELS"), "CLASSES": model_input("CLASSES"),
        "EPOCHS": model_input("EPOCHS"), "TILE_SIZE": model_input("TILE_SIZE"),
        "BATCH_SIZE": static(0), "LEARNING_RATE": static(0.0), "VALIDATION_FRACTION": static(0.2),
        "DEVICE": static("auto"),
    })
    child("mmlc:classify", "classify", X_CLASSIFY, {
        "MODEL": Src.fromChildOutput("train", "OUTPUT_MODEL"), "INPUT_1": model_input("INPUT_1"),
        "INPUT_2": model_input("INPUT_2"), "TILE_SIZE": model_input("TILE_SIZE"), "BATCH_SIZE": static(4),
        "DEVICE": static("auto"),
    }, outputs={"OUTPUT": "Land cover"})
    child("mmlc:evaluate", "evaluate", X_EVALUATE, {
        "PREDICTION": Src.fromChildOutput("classify", "OUTPUT"), "REFERENCE": model_input("LABELS"),
    }, outputs={"OUTPUT_TABLE": "Confusion matrix", "OUTPUT_REPORT": "Accuracy report"})
    return m


if __name__ == "__main__":
    import sys

    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    from qgis.analysis import QgsNativeAlgorithms  # noqa: F401

    sys.path.insert(0, str(ROOT / "build" / "pkg"))
    import mmlc

    plugin = mmlc.classFactory(None)
    plugin.initProcessing()
    model = build()
    valid, issues = model.validate()
    if not valid:
        raise SystemExit("the model does not validate:\n" + "\n".join(issues))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    ok = model.toFile(str(OUT))
    print(f"wrote {OUT}: {ok}")
    plugin.unload()
