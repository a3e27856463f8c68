"""Runs inside the real QGIS desktop (``qgis --code qgis_driver.py``, see conftest.py).

Acts as an analyst: loads the inputs into the project, opens each mmlc algorithm dialog with each
kind of layer its inputs accept, fills it, runs it with the dialog's own ``runAlgorithm`` (the Run
button), and records what the analyst would see: the dialog (screenshot at its default size), its
log, the layers it loaded (renderer, renderer field, layer-tree order, pixels drawn per class
colour), the map window, and the Graphical Modeler chain (validation, canvas, run). Everything goes
to ``$MMLC_DESKTOP_OUT/results.json`` (rewritten after every step, so a crash leaves the record of
what came before it) and PNG files beside it. QGIS is closed normally at the end.
"""
import json
import os
import time
import traceback
from pathlib import Path

import numpy as np
from qgis.core import (
    QgsApplication,
    QgsCategorizedSymbolRenderer,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsPalettedRasterRenderer,
    QgsProcessingModelAlgorithm,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QEventLoop, QSize, QTimer
from qgis.PyQt.QtGui import QColor, QImage
from qgis.PyQt.QtWidgets import QAbstractSpinBox, QApplication, QGroupBox, QLabel, QMessageBox, QScrollArea, QTextEdit
from qgis.utils import iface

OUT = Path(os.environ["MMLC_DESKTOP_OUT"])
DATA = Path(os.environ["MMLC_DESKTOP_DATA"])
MODEL3 = os.environ["MMLC_DESKTOP_MODEL"]
REPORT = {"cases": {}, "errors": [], "message_boxes": [], "finished": False}
LAYERS = {}


def save():
    (OUT / "results.json").write_text(json.dumps(REPORT, indent=1, default=str))


def spin(seconds):
    end = time.time() + seconds
    while time.time() < end:
        QApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        time.sleep(0.02)


def wait_until(predicate, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        spin(0.2)
    return predicate()


def close_message_boxes():
    """A modal box would block the run: record its text and dismiss it."""
    w = QApplication.activeModalWidget()
    if isinstance(w, QMessageBox):
        REPORT["message_boxes"].append(w.text())
        w.done(0)


def load_inputs():
    project = QgsProject.instance()
    for key, name, path, provider in (
            ("optical", "S2 optical (10 bands)", DATA / "optical.tif", "gdal"),
            ("sar", "S1 SAR (VV, VH dB)", DATA / "sar.tif", "gdal"),
            ("labels", "weak labels (raster)", DATA / "labels.tif", "gdal"),
            ("polygons", "weak labels (polygons)", DATA / "label_polygons.gpkg", "ogr"),
            ("points", "weak labels (points)", DATA / "label_points.gpkg", "ogr")):
        layer = (QgsRasterLayer if provider == "gdal" else QgsVectorLayer)(str(path), name, provider)
        if not layer.isValid():
            REPORT["errors"].append(f"input {path} did not load")
        project.addMapLayer(layer)
        LAYERS[key] = layer


def render_counts(layer, colours):
    """Render ``layer`` alone (its own style) and count pixels of each class colour."""
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(QSize(240, 240))
    settings.setBackgroundColor(QColor(255, 255, 255, 0))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    img = job.renderedImage().convertToFormat(QImage.Format.Format_ARGB32)
    ptr = img.constBits()
    ptr.setsize(img.height() * img.bytesPerLine())
    bgra = np.frombuffer(ptr, np.uint8).reshape(img.height(), img.bytesPerLine() // 4, 4)[:, :img.width()]
    counts = {}
    for value, colour in colours.items():
        c = QColor(colour)
        counts[str(value)] = int(((bgra[..., 2] == c.red()) & (bgra[..., 1] == c.green())
                                  & (bgra[..., 0] == c.blue()) & (bgra[..., 3] == 255)).sum())
    return {"by_class_colour": counts, "opaque": int((bgra[..., 3] > 0).sum()), "size": img.width() * img.height()}


def describe_layers():
    """The layer tree top to bottom, with each layer's renderer and what it draws."""
    out = []
    for node in QgsProject.instance().layerTreeRoot().findLayers():
        layer = node.layer()
        d = {"name": layer.name(), "source": layer.source(), "id": layer.id(), "renderer": None}
        renderer = layer.renderer()
        if renderer is not None:
            d["renderer"] = renderer.type()
        colours = {}
        if isinstance(renderer, QgsCategorizedSymbolRenderer):
            d["field"] = renderer.classAttribute()
            d["field_exists"] = layer.fields().indexOf(renderer.classAttribute()) >= 0
            d["fields"] = layer.fields().names()
            d["categories"] = [(c.value(), c.label(), c.symbol().color().name()) for c in renderer.categories()]
            d["feature_count"] = layer.featureCount()
            colours = {c.value(): c.symbol().color().name() for c in renderer.categories()}
        elif isinstance(renderer, QgsPalettedRasterRenderer):
            d["classes"] = [(c.value, c.label, c.color.name()) for c in renderer.classes()]
            colours = {c.value: c.color.name() for c in renderer.classes()}
        if colours:
            d["drawn"] = render_counts(layer, colours)
        out.append(d)
    return out


def grab(widget, name):
    path = OUT / f"{name}.png"
    widget.grab().save(str(path))
    return path.name


def show_advanced(dlg, rec, case):
    """Unfold the dialog's *Advanced parameters*, scroll to them, screenshot them and record their
    labels and what each spin box shows (what the analyst reads before changing anything)."""
    from qgis.gui import QgsCollapsibleGroupBoxBasic
    from qgis.PyQt import sip

    boxes = [sip.cast(b, QgsCollapsibleGroupBoxBasic) for b in dlg.findChildren(QGroupBox)
             if b.inherits("QgsCollapsibleGroupBoxBasic") and "advanced" in b.title().lower()]
    for box in boxes:
        box.setCollapsed(False)
    spin(0.8)
    for area in dlg.findChildren(QScrollArea):
        if area.isVisible():
            area.verticalScrollBar().setValue(area.verticalScrollBar().maximum())
    spin(0.5)
    # unfolded, the Advanced section must fit the width too (QGIS remembers it unfolded for later dialogs)
    rec["horizontal_scroll"] = rec["horizontal_scroll"] or any(
        s.horizontalScrollBar().isVisible() for s in dlg.findChildren(QScrollArea))
    rec["advanced_labels"] = [lab.text() for box in boxes for lab in box.findChildren(QLabel) if lab.text()]
    rec["advanced_spins"] = [w.text() for box in boxes for w in box.findChildren(QAbstractSpinBox)]
    rec["advanced_png"] = grab(dlg, f"{case}-advanced")


def run_dialog(case, alg, params, run=True, timeout=600, advanced=False):
    """Open ``alg``'s dialog filled with ``params``, screenshot it (and its advanced parameters when
    ``advanced``), run it from the dialog."""
    from processing import createAlgorithmDialog
    from processing.tools import dataobjects

    rec = REPORT["cases"][case] = {"alg": alg if isinstance(alg, str) else alg.id(), "opened": False}
    save()
    t0 = time.time()
    dlg = createAlgorithmDialog(alg, params)
    dlg.show()
    spin(1.5)
    rec["opened"] = True
    rec["default_size"] = [dlg.width(), dlg.height()]
    rec["horizontal_scroll"] = any(s.horizontalScrollBar().isVisible() for s in dlg.findChildren(QScrollArea))
    rec["dialog_png"] = grab(dlg, f"{case}-dialog")
    if advanced:
        show_advanced(dlg, rec, case)
    save()
    try:
        parameters = dlg.createProcessingParameters()
    except Exception as e:  # the dialog refused a value (highlighted in the GUI)
        rec["check"] = [False, f"dialog refused a value: {e!r}"]
        dlg.close()
        return rec
    ok, msg = dlg.algorithm().checkParameterValues(parameters, dataobjects.createContext())
    rec["check"] = [ok, msg]
    rec["parameters"] = {k: str(v) for k, v in parameters.items()}
    if run and ok:
        finished = {}
        dlg.algorithmFinished.connect(lambda success, result: finished.update(success=success, result=result))
        dlg.runAlgorithm()
        done = wait_until(lambda: dlg.feedback is None, timeout)
        spin(1.0)
        rec["finished"] = done
        rec["success"] = finished.get("success", False)
        rec["results"] = {k: str(v) for k, v in (finished.get("result") or {}).items()
                          if k not in ("CHILD_RESULTS", "CHILD_INPUTS")}
        child = (finished.get("result") or {}).get("CHILD_RESULTS")
        if child:
            rec["child_results"] = {c: {k: str(v) for k, v in r.items()} for c, r in child.items()}
        log = dlg.findChild(QTextEdit, "txtLog")
        rec["log"] = log.toPlainText()[-4000:] if log is not None else ""
        rec["log_png"] = grab(dlg, f"{case}-log")
    rec["seconds"] = round(time.time() - t0, 1)
    dlg.close()
    spin(0.3)
    save()
    return rec


def map_window(name, focus_layer=None):
    """Screenshot of the main window (layers panel with legends, and the map) on ``focus_layer``."""
    canvas = iface.mapCanvas()
    if focus_layer is not None:
        canvas.setDestinationCrs(focus_layer.crs())
        canvas.setExtent(focus_layer.extent())
    canvas.refreshAllLayers()
    spin(0.5)
    wait_until(lambda: not canvas.isDrawing(), 60)
    spin(0.5)
    return grab(iface.mainWindow(), name)


def remove_layers(keep):
    project = QgsProject.instance()
    ids = [lid for lid, layer in project.mapLayers().items() if layer not in keep]
    project.removeMapLayers(ids)
    spin(0.3)


def modeler_case():
    model = QgsProcessingModelAlgorithm()
    rec = REPORT["cases"]["modeler"] = {"loaded": model.fromFile(MODEL3)}
    valid, issues = model.validate()
    rec["validate"] = [valid, list(issues)]
    rec["positions"] = {cid: [c.position().x(), c.position().y()] for cid, c in model.childAlgorithms().items()}
    try:
        from processing.modeler.ModelerDialog import ModelerDialog

        shown = QgsProcessingModelAlgorithm()  # the designer owns (and deletes) the model it shows
        shown.fromFile(MODEL3)
        designer = ModelerDialog.create(shown)
        designer.resize(1500, 800)
        designer.show()
        spin(1.0)
        for name in ("zoomFull", "mActionZoomToItems"):
            action = getattr(designer, name, None)
            if callable(action):
                action()
            elif action is not None:
                action.trigger()
        spin(1.0)
        rec["designer_png"] = grab(designer, "modeler-designer")
        designer.setDirty(False) if hasattr(designer, "setDirty") else None
        designer.close()
        spin(0.5)
        close_message_boxes()
    except Exception:
        rec["designer_error"] = traceback.format_exc()
    save()
    before = set(QgsProject.instance().mapLayers())
    # As from the Toolbox: the profile's models folder holds the shipped model (conftest.py), so
    # the Models provider lists it. Its defaults (asanet, two inputs); a tiny tile, one epoch.
    toolbox = [a for a in QgsApplication.processingRegistry().algorithms()
               if a.provider() is not None and a.provider().id() == "model" and a.name() == model.name()]
    rec["in_toolbox"] = [a.id() for a in toolbox]
    if not toolbox:
        save()
        return
    run = run_dialog("modeler-run", toolbox[0].id(), {"INPUT_1": LAYERS["optical"], "INPUT_2": LAYERS["sar"],
                                            "LABELS": LAYERS["labels"], "CLASSES": str(DATA / "classes.csv"),
                                            "EPOCHS": 1, "TILE_SIZE": 32})
    rec.update({k: run.get(k) for k in ("check", "success", "results", "child_results", "seconds")})
    new = [lid for lid in QgsProject.instance().mapLayers() if lid not in before]
    rec["loaded_layers"] = [d for d in describe_layers() if d["id"] in new]
    if new:
        rec["map_png"] = map_window("modeler-map", QgsProject.instance().mapLayer(new[0]))
    save()


def main():
    start = time.time()
    watchdog = QTimer()
    watchdog.timeout.connect(close_message_boxes)
    watchdog.start(500)
    try:
        iface.mainWindow().resize(1500, 950)
        spin(1.0)
        REPORT["qgis_version"] = __import__("qgis.core").core.Qgis.QGIS_VERSION
        REPORT["provider"] = QgsApplication.processingRegistry().providerById("mmlc") is not None
        REPORT["algorithms"] = sorted(a.id() for a in QgsApplication.processingRegistry().algorithms()
                                      if a.provider() is not None and a.provider().id() == "mmlc")
        save()
        load_inputs()
        inputs = list(LAYERS.values())
        models = DATA / "models"
        models.mkdir(exist_ok=True)
        # Train with raster labels: the case that crashed QGIS 3.22 (field widget on a raster).
        run_dialog("train-raster-labels", "mmlc:train", {
            "ARCHITECTURE": "hfdnet", "INPUT_1": LAYERS["sar"], "LABELS": LAYERS["labels"],
            "CLASSES": str(DATA / "classes.csv"), "EPOCHS": 1, "TILE_SIZE": 32, "DEVICE": "cpu",
            "OUTPUT_MODEL": str(models / "sar.mmlc")})
        from mmlc.ui import warmup  # the first dialog of the session started loading PyTorch (ui/warmup.py)

        REPORT["warmup"] = dict(warmup.record, started=warmup._thread is not None)
        # Train with polygon labels and their class field; optical hfdnet = the distillation teacher.
        run_dialog("train-vector-labels", "mmlc:train", {
            "ARCHITECTURE": "hfdnet", "INPUT_1": LAYERS["optical"], "LABELS_VECTOR": LAYERS["polygons"],
            "LABEL_FIELD": "class", "EPOCHS": 1, "TILE_SIZE": 32, "DEVICE": "cpu",
            "OUTPUT_MODEL": str(models / "optical.mmlc")}, advanced=True)
        # The label parameters refuse both kinds at once before running (no crash, a message).
        run_dialog("train-both-labels", "mmlc:train", {
            "ARCHITECTURE": "hfdnet", "INPUT_1": LAYERS["sar"], "LABELS": LAYERS["labels"],
            "LABELS_VECTOR": LAYERS["polygons"], "LABEL_FIELD": "class", "EPOCHS": 1,
            "OUTPUT_MODEL": str(models / "never.mmlc")})
        teacher = str(models / "optical.mmlc")
        run_dialog("distill-raster-labels", "mmlc:distill", {
            "TEACHER": teacher, "INPUT_OPTICAL": LAYERS["optical"], "INPUT_SAR": LAYERS["sar"],
            "LABELS": LAYERS["labels"], "EPOCHS": 1, "DEVICE": "cpu",
            "OUTPUT_MODEL": str(models / "student.mmlc")})
        # Distill with point labels: opened, filled and checked (a second distillation would double
        # the run time without exercising anything the train case does not).
        run_dialog("distill-vector-labels", "mmlc:distill", {
            "TEACHER": teacher, "INPUT_OPTICAL": LAYERS["optical"], "INPUT_SAR": LAYERS["sar"],
            "LABELS_VECTOR": LAYERS["points"], "LABEL_FIELD": "class", "EPOCHS": 1, "DEVICE": "cpu",
            "OUTPUT_MODEL": str(models / "student2.mmlc")}, run=False)
        # Classify with temporary outputs (random paths): class map, confidence and polygons loaded.
        remove_layers(inputs)
        before = set(QgsProject.instance().mapLayers())
        rec = run_dialog("classify", "mmlc:classify", {
            "MODEL": str(models / "sar.mmlc"), "INPUT_1": LAYERS["sar"], "TILE_SIZE": 32, "DEVICE": "cpu",
            "OUTPUT": "TEMPORARY_OUTPUT", "OUTPUT_CONFIDENCE": "TEMPORARY_OUTPUT",
            "OUTPUT_VECTOR": "TEMPORARY_OUTPUT"})
        tree = describe_layers()
        rec["layer_tree"] = tree
        rec["new_layer_ids"] = [lid for lid in QgsProject.instance().mapLayers() if lid not in before]
        class_map = next((QgsProject.instance().mapLayer(lid) for lid in rec["new_layer_ids"]
                          if isinstance(QgsProject.instance().mapLayer(lid), QgsRasterLayer)), None)
        rec["map_png"] = map_window("classify-map", class_map)
        save()
        prediction = rec.get("results", {}).get("OUTPUT")
        remove_layers(inputs)
        if prediction:
            run_dialog("evaluate-raster-reference", "mmlc:evaluate", {
                "PREDICTION": prediction, "REFERENCE": LAYERS["labels"]})
            run_dialog("evaluate-vector-reference", "mmlc:evaluate", {
                "PREDICTION": prediction, "REFERENCE_VECTOR": LAYERS["points"], "LABEL_FIELD": "class"})
        remove_layers(inputs)
        modeler_case()
        REPORT["finished"] = True
    except Exception:
        REPORT["errors"].append(traceback.format_exc())
    REPORT["driver_seconds"] = round(time.time() - start, 1)
    save()
    watchdog.stop()
    QgsProject.instance().clear()
    QgsProject.instance().setDirty(False)
    QTimer.singleShot(200, iface.actionExit().trigger)


QTimer.singleShot(1000, main)
