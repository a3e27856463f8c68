"""Shared plumbing of the mmlc algorithms: names, icon, help, and calling the core safely.

Algorithms are thin: parameters in, one ``core.api`` call, outputs and styles out. Core errors
become QgsProcessingException with the core's actionable message; a missing PyTorch becomes the
install instructions; GPU memory is released at the end of every run.
"""
from __future__ import annotations

import os
from typing import Any, Callable

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QCoreApplication, QUrl
from qgis.PyQt.QtGui import QIcon

from ...core.runtime.collector import frozen_heap
from ...core.runtime.torch_preload import preload_torch
from .. import deps, warmup
from ..feedback import FeedbackProgress

PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ICON_PATH = os.path.join(PLUGIN_DIR, "resources", "icon.svg")


_LIVE_POST_PROCESSORS: list = []


class MmlcAlgorithm(QgsProcessingAlgorithm):
    """Base class: subclasses set NAME, DISPLAY, GROUP/GROUP_ID and HELP and implement run()."""

    NAME = ""
    DISPLAY = ""
    GROUP = "Land cover"
    GROUP_ID = "landcover"
    HELP = ""


    def name(self) -> str:
        return self.NAME

    def displayName(self) -> str:  # noqa: N802
        return self.tr(self.DISPLAY)

    def tr(self, text: str) -> str:
        """``text`` translated in the ``mmlc`` context (labels and help of the generated parameters
        pass through here); unchanged where no translation is installed."""
        return QCoreApplication.translate("mmlc", text)

    def group(self) -> str:
        return self.GROUP

    def groupId(self) -> str:  # noqa: N802
        return self.GROUP_ID

    def shortHelpString(self) -> str:  # noqa: N802
        return self.HELP

    def helpUrl(self) -> str:  # noqa: N802
        """The algorithm's page in the docs shipped with the plugin, rendered as HTML
        (docs/html/, made from docs/*.md by tools/docs_html.py) for the dialog's Help button."""
        page = os.path.join(PLUGIN_DIR, "docs", "html", f"{self.NAME}.html")
        return QUrl.fromLocalFile(page).toString() if os.path.exists(page) else ""

    def icon(self) -> QIcon:
        return QIcon(ICON_PATH)

    def createInstance(self):  # noqa: N802
        return type(self)()

    def createCustomParametersWidget(self, parent=None):  # noqa: N802
        """Processing asks this before opening the algorithm's dialog (Toolbox, locator, menus,
        ``processing.createAlgorithmDialog``): mmlc keeps QGIS's standard dialog (returns None)
        and uses the moment to load PyTorch in the background (ui/warmup.py)."""
        warmup.start()
        return None

    # -- helpers for subclasses ---------------------------------------------------------------
    @staticmethod
    def raster_path(layer: QgsRasterLayer | None, what: str) -> str | None:
        """The GDAL path of a raster layer parameter (None if unset); refuse non-file layers."""
        if layer is None:
            return None
        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                f"{what}: layer '{layer.name()}' comes from the '{layer.providerType()}' provider; "
                "mmlc reads rasters through GDAL: save it as a GeoTIFF first (Export > Save As)"
            )
        return layer.source()

    def call_core(self, fn: Callable[..., Any], feedback: QgsProcessingFeedback, **kwargs: Any) -> Any:
        """Run a core function with a feedback-backed Progress; map errors to Processing errors."""
        missing = deps.missing_packages()
        if missing:
            deps.offer_install()  # in the desktop, the install dialog opens (main thread)
            raise QgsProcessingException(deps.install_instructions())
        import sys

        from ...core.errors import Cancelled, MmlcError, NetworkError

        warmup.wait(feedback)
        if "torch" not in sys.modules:  # the first run of a session: seconds with a busy bar otherwise unexplained
            feedback.pushInfo("starting PyTorch (the first run in a QGIS session takes a few seconds longer)")
            preload_torch()  # its library's own symbols first (core/runtime/torch_preload.py)
        try:
            with frozen_heap():  # full collections skip QGIS's own heap during the run (core/runtime/collector.py)
                return run_on_python_thread(fn, progress=FeedbackProgress(feedback), **kwargs)
        except Cancelled as e:
            feedback.reportError(str(e), False)
            raise QgsProcessingException(str(e)) from e
        except MmlcError as e:
            raise QgsProcessingException(str(e)) from e
        except NetworkError as e:  # networks (torch-only, no core errors) check their inputs this way
            raise QgsProcessingException(f"the network refused its inputs: {e}") from e
        finally:
            release_gpu_memory()

    def keep_post_processor(self, context: QgsProcessingContext, output: str, post) -> None:
        """Attach a style post-processor to an output Processing will load.

        Processing keeps a raw pointer to the post-processor and runs it after ``run()`` has
        destroyed the algorithm copy that created it, so the Python object is kept alive at
        module level (a short rolling list) rather than on ``self``.
        """
        if output and context.willLoadLayerOnCompletion(output):
            _LIVE_POST_PROCESSORS.append(post)
            del _LIVE_POST_PROCESSORS[:-64]
            details = context.layerToLoadOnCompletionDetails(output)
            _stack_outputs(self, context, details, post)
            details.setPostProcessor(post)


def run_on_python_thread(fn: Callable[..., Any], **kwargs: Any) -> Any:
    """``fn(**kwargs)``, on a fresh Python thread when called from a thread Python did not start.

    The desktop runs Processing algorithms on QThreadPool threads, which Python only knows through a
    temporary thread state that sip creates and drops around each call, and QGIS reuses those
    threads. On QGIS 3.44 (Python 3.13, Debian's torch 2.6) the second training run on a reused
    pool thread crashed QGIS inside torch's autograd (PyEval_AcquireThread on a stale thread
    state; tests/desktop). A thread started by ``threading`` owns a proper thread state for its
    whole life and ends with the run, so torch never meets a stale one. The calling thread waits;
    errors are re-raised there. The main thread (qgis_process, the console) and Python threads
    call ``fn`` directly."""
    import threading

    if not isinstance(threading.current_thread(), threading._DummyThread):
        return fn(**kwargs)
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = fn(**kwargs)
        except BaseException as e:  # handed to the calling thread  # noqa: BLE001
            outcome["error"] = e

    worker = threading.Thread(target=work, name="mmlc-run", daemon=True)
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _stack_outputs(alg: MmlcAlgorithm, context: QgsProcessingContext, details, post) -> None:
    """One run's styled outputs load stacked (class map above confidence): a sort key where QGIS
    has one (3.32+), and a stack shared by the run's post-processors (ui/styling.py) for 3.22."""
    from ..styling import STACK_RANK, OutputStack

    kind = getattr(post, "kind", None)
    if kind not in STACK_RANK:
        return
    if hasattr(details, "layerSortKey"):
        details.layerSortKey = STACK_RANK[kind]
    stack = getattr(alg, "_output_stack", None)
    if stack is None or stack[0] is not context:  # one stack per run (context)
        stack = (context, OutputStack())
        alg._output_stack = stack
    post.stack = stack[1]


def release_gpu_memory() -> None:
    """Give cached CUDA memory back to the driver (only if torch was imported at all)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


