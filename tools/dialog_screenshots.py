"""``xvfb-run -a python -m mmlc.tools.dialog_screenshots [OUT]``: open the four algorithm dialogs
as an analyst would and save what they show (default OUT: build/screenshots, kept out of git).

The sample layers are loaded with the SAR on top (the case where QGIS used to preselect the
wrong Input 1). Each dialog is shown at its default size and grabbed; the classify dialog is
grabbed three more times: with the Advanced group open, with a wrong Input 1 (the SAR, 2 bands,
for a 10-band optical input), and with the right inputs, then run; its batch-mode dialog is
grabbed too (``classify_batch.png``, the picture in docs/classify.md). A text file lists, per dialog, whether a
horizontal scroll bar is visible and what the band check says, for a quick look without images.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEN = ROOT / "resources" / "sample_data" / "bigearthnet"


def _app():
    from qgis.core import QgsApplication

    app = QgsApplication([], True)
    app.initQgis()
    sys.path.append("/usr/share/qgis/python/plugins")
    from processing.core.Processing import Processing

    Processing.initialize()
    return app


class _Iface:
    """The few parts of QGIS's interface the Processing dialogs use (main window, canvas, browser
    model, message bar, active layer): enough to open them outside the QGIS desktop."""

    def __init__(self) -> None:
        from qgis.gui import QgsBrowserGuiModel, QgsMapCanvas, QgsMessageBar
        from qgis.PyQt.QtWidgets import QMainWindow

        self.window = QMainWindow()
        self.canvas = QgsMapCanvas(self.window)
        self.bar = QgsMessageBar(self.window)
        self.browser = QgsBrowserGuiModel()

    def mainWindow(self):  # noqa: N802
        return self.window

    def mapCanvas(self):  # noqa: N802
        return self.canvas

    def messageBar(self):  # noqa: N802
        return self.bar

    def browserModel(self):  # noqa: N802
        return self.browser

    def activeLayer(self):  # noqa: N802
        return None

    def __getattr__(self, name: str):  # anything else: a no-op
        return lambda *args, **kwargs: None


def _iface():
    import qgis.utils

    iface = _Iface()
    qgis.utils.iface = iface
    import processing.tools.general as general

    general.iface = iface
    return iface, iface.window


def _settle(app, rounds: int = 20) -> None:
    for _ in range(rounds):
        app.processEvents()


def _scrolls(dialog) -> str:
    """Whether a horizontal scroll bar shows, and then the widest label (the usual cause)."""
    from qgis.PyQt.QtWidgets import QLabel, QScrollArea

    areas = [a for a in dialog.findChildren(QScrollArea) if a.horizontalScrollBar().isVisible()]
    if not areas:
        return "no"
    labels = [lb for lb in areas[0].widget().findChildren(QLabel) if lb.isVisible() and not lb.wordWrap()]
    widest = max(labels, key=lambda lb: lb.sizeHint().width(), default=None)
    return f"yes (widest label: {widest.text()!r})" if widest is not None else "yes"


def _expand_advanced(dialog, expand: bool = True) -> None:
    """Open (or fold) the dialog's collapsible *Advanced Parameters* group."""
    from qgis.gui import QgsCollapsibleGroupBox
    from qgis.PyQt import sip
    from qgis.PyQt.QtWidgets import QGroupBox

    for box in dialog.findChildren(QGroupBox):
        if "Collapsible" in box.metaObject().className():
            sip.cast(box, QgsCollapsibleGroupBox).setCollapsed(not expand)


def _show(dialog, wrapper) -> None:
    """Scroll the parameters so that ``wrapper``'s widget is in view."""
    from qgis.PyQt.QtWidgets import QScrollArea

    widget = wrapper.wrappedWidget() if hasattr(wrapper, "wrappedWidget") else wrapper.widget
    for area in dialog.findChildren(QScrollArea):
        if area.isAncestorOf(widget):
            area.ensureWidgetVisible(widget)


def _run(app, dialog, wrappers, context, out: Path, note) -> None:
    """Run the filled classify dialog as the Run button does, watch its progress bar, grab the log."""
    import time

    run = out / "run"
    run.mkdir(exist_ok=True)
    for key, name in (("OUTPUT", "landcover.tif"), ("OUTPUT_AREAS", "areas.csv")):
        wrappers[key].setParameterValue(str(run / name), context)
    done: list = []
    dialog.algorithmFinished.connect(lambda ok, results: done.append(ok))
    from qgis.PyQt.QtWidgets import QProgressBar

    bar = dialog.findChild(QProgressBar)
    seen: list[int] = []
    t0 = time.perf_counter()
    dialog.runAlgorithm()
    while not done and time.perf_counter() - t0 < 600:
        app.processEvents()
        value = bar.value() if bar.maximum() else -1  # -1: a busy bar
        if not seen or seen[-1] != value:
            seen.append(value)
        time.sleep(0.02)
    _settle(app)
    dialog.grab().save(str(out / "classify_log.png"))
    note(f"  run from the dialog: finished {done}, {time.perf_counter() - t0:.1f} s, progress bar values {seen}")


def _batch(app, out: Path, note, rasters: list) -> None:
    """Classify in Processing's batch mode (the desktop's way to classify many rasters): the
    dialog with one row per raster, grabbed for docs/classify.md."""
    from processing.gui.BatchAlgorithmDialog import BatchAlgorithmDialog
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().createAlgorithmById("mmlc:classify")
    dialog = BatchAlgorithmDialog(alg)
    panel = dialog.mainWidget()
    while panel.tblParameters.rowCount() - 1 < len(rasters):  # row 0 holds the column headers' autofill
        panel.addRow()
    dialog.resize(1000, 420)
    dialog.show()
    _settle(app)
    dialog.grab().save(str(out / "classify_batch.png"))
    note(f"batch: {panel.tblParameters.rowCount() - 1} rows, {panel.tblParameters.columnCount()} columns")
    dialog.close()
    _settle(app, 5)


def main(argv: list[str] | None = None) -> int:
    out = Path((argv or sys.argv[1:] or [str(ROOT / "build" / "screenshots")])[0])
    out.mkdir(parents=True, exist_ok=True)
    app = _app()
    iface, window = _iface()
    import mmlc
    from qgis import processing
    from qgis.core import QgsProject, QgsRasterLayer
    from qgis.PyQt.QtWidgets import QLabel

    plugin = mmlc.classFactory(iface)
    plugin.initProcessing()
    import shutil

    pair = "S1A_IW_GRDH_1SDV_20170617T064724_29UPU_36_85"
    copies = out / "samples"  # QGIS caches statistics in .aux.xml beside a raster: never beside the samples
    copies.mkdir(exist_ok=True)
    s2_path, s1_path = (shutil.copy(BEN / f"{pair}__{kind}.tif", copies) for kind in ("s2_10band_10m", "s1_vv_vh_db"))
    s2 = QgsRasterLayer(str(s2_path), "S2 10 bands")
    s1 = QgsRasterLayer(str(s1_path), "S1 VV VH dB")
    QgsProject.instance().addMapLayers([s2, s1])  # the SAR ends up on top
    notes: list[str] = []
    log = out / "notes.txt"

    def note(text: str) -> None:
        notes.append(text)
        log.write_text("\n".join(notes) + "\n", encoding="utf-8")

    for alg_id in ("mmlc:classify", "mmlc:train", "mmlc:distill", "mmlc:evaluate"):
        if alg_id != "mmlc:classify":
            # a raster in the labels box crashes QGIS 3.22 (issue 16, item 1, fixed on another branch)
            QgsProject.instance().removeAllMapLayers()
        dialog = processing.createAlgorithmDialog(alg_id)
        dialog.show()
        _settle(app)
        name = alg_id.split(":")[1]
        dialog.grab().save(str(out / f"{name}.png"))
        note(f"{name}: size {dialog.width()} x {dialog.height()}, horizontal scroll bar: {_scrolls(dialog)}")
        if name == "classify":
            panel = dialog.mainWidget()
            wrappers = panel.wrappers
            note(f"  INPUT_1 preselected: {wrappers['INPUT_1'].parameterValue()!r}")
            info = dialog.findChild(QLabel, "mmlcBandCheck")
            note(f"  band check (no inputs): {info.text() if info else 'missing'}")
            _expand_advanced(dialog)
            _settle(app)
            _show(dialog, wrappers["DEVICE"])
            _settle(app)
            dialog.grab().save(str(out / "classify_advanced.png"))
            note(f"  advanced open: horizontal scroll bar: {_scrolls(dialog)}")
            _expand_advanced(dialog, False)
            from qgis.core import QgsProcessingContext

            context = QgsProcessingContext()
            context.setProject(QgsProject.instance())
            wrappers["INPUT_1"].setParameterValue(s1.id(), context)
            _settle(app)
            _show(dialog, wrappers["INPUT_2"])
            _settle(app)
            dialog.grab().save(str(out / "classify_wrong_bands.png"))
            note(f"  band check (SAR as Input 1): {info.text()}")
            wrappers["INPUT_1"].setParameterValue(s2.id(), context)
            wrappers["INPUT_2"].setParameterValue(s1.id(), context)
            _settle(app)
            dialog.grab().save(str(out / "classify_inputs_ok.png"))
            note(f"  band check (S2 + S1): {info.text()}")
            _run(app, dialog, wrappers, context, out, note)
            _batch(app, out, note, [s2_path, s1_path])
        if name == "train":  # the Advanced group: VARIANT follows ARCHITECTURE, DEVICE, learning rate
            from qgis.core import QgsProcessingContext

            wrappers = dialog.mainWidget().wrappers
            wrappers["ARCHITECTURE"].setParameterValue("das2f", QgsProcessingContext())
            _expand_advanced(dialog)
            _settle(app)
            _show(dialog, wrappers["DEVICE"])
            _settle(app)
            dialog.grab().save(str(out / "train_advanced.png"))
            combo = wrappers["VARIANT"].widget
            note(f"  das2f variants offered: {[combo.itemText(i) for i in range(combo.count())]}; "
                 f"horizontal scroll bar: {_scrolls(dialog)}")
        dialog.close()
        _settle(app, 5)
    print("\n".join(notes))
    QgsProject.instance().removeAllMapLayers()
    plugin.unload()
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
