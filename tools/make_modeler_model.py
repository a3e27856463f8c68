"""Write resources/modeler/mmlc_train_classify_evaluate.model3: a Graphical Modeler chain
train -> classify -> evaluate whose OA/kappa/mIoU come out as model outputs.

Built through QGIS's own API (so the file is exactly what the Modeler would save); run with
``python -m mmlc.tools.make_modeler_model`` after changing the algorithms' parameters.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "resources" / "modeler" / "mmlc_train_classify_evaluate.model3"


def build():
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterEnum,
        QgsProcessingParameterNumber,
        QgsProcessingParameterRasterLayer,
    )
    from qgis.core import (
        QgsProcessingModelChildParameterSource as Src,
    )
    from qgis.PyQt.QtCore import QPointF

    m = QgsProcessingModelAlgorithm("Train, classify and evaluate", "mmlc")
    m.setHelpContent({"ALG_DESC": "Trains an mmlc model on Input 1 (+ Input 2) and a class raster, classifies "
                                  "Input 1 with it, and evaluates the map against the same labels (a quick check "
                                  "of fit; use independent labels for a real accuracy assessment)."})

    def add_input(param, x: float, y: float) -> None:
        m.addModelParameter(param, QgsProcessingModelParameter(param.name()))
        comp = m.parameterComponent(param.name())
        comp.setPosition(QPointF(x, y))

    arch = QgsProcessingParameterEnum("ARCHITECTURE", "Architecture", ["asanet", "das2f", "prsanet", "hfdnet"],
                                      defaultValue="hfdnet")
    arch.setUsesStaticStrings(True)
    add_input(arch, 100, 50)
    add_input(QgsProcessingParameterRasterLayer("INPUT_1", "Input 1"), 100, 100)
    add_input(QgsProcessingParameterRasterLayer("INPUT_2", "Input 2", optional=True), 100, 150)
    add_input(QgsProcessingParameterRasterLayer("LABELS", "Class raster"), 100, 200)
    add_input(QgsProcessingParameterNumber("EPOCHS", "Epochs", QgsProcessingParameterNumber.Type.Integer, 5, minValue=1),
              100, 250)

    def child(alg_id: str, child_id: str, sources: dict, output: tuple[str, str] | None = None):
        """A child algorithm fed by ``sources`` (param -> source); ``output`` = (child output, model name)."""
        alg = QgsProcessingModelChildAlgorithm(alg_id)
        alg.setChildId(child_id)
        alg.setDescription(child_id.capitalize())
        for param, source in sources.items():
            alg.addParameterSources(param, [source])
        if output is not None:
            out = QgsProcessingModelOutput(output[1], output[1])
            out.setChildId(child_id)
            out.setChildOutputName(output[0])
            alg.setModelOutputs({output[1]: out})
        m.addChildAlgorithm(alg)

    inputs = {k: Src.fromModelParameter(k) for k in ("ARCHITECTURE", "INPUT_1", "INPUT_2", "LABELS", "EPOCHS")}
    child("mmlc:train", "train", {**inputs, "DEVICE": Src.fromStaticValue("auto")})
    child("mmlc:classify", "classify",
          {"MODEL": Src.fromChildOutput("train", "OUTPUT_MODEL"), "INPUT_1": inputs["INPUT_1"],
           "INPUT_2": inputs["INPUT_2"], "DEVICE": Src.fromStaticValue("auto")},
          output=("OUTPUT", "Land cover"))
    child("mmlc:evaluate", "evaluate",
          {"PREDICTION": Src.fromChildOutput("classify", "OUTPUT"), "REFERENCE": inputs["LABELS"]},
          output=("OUTPUT_TABLE", "Confusion matrix"))
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
    OUT.parent.mkdir(parents=True, exist_ok=True)
    ok = model.toFile(str(OUT))
    print(f"wrote {OUT}: {ok}")
    plugin.unload()
