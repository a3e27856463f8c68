"""Adapter from QgsProcessingFeedback to the core's Progress protocol."""
from __future__ import annotations

from qgis.core import QgsProcessingFeedback


class FeedbackProgress:
    """core.progress.Progress on top of a Processing feedback (progress bar, log, cancel)."""

    def __init__(self, feedback: QgsProcessingFeedback | None) -> None:
        self.feedback = feedback or QgsProcessingFeedback()

    def set_fraction(self, fraction: float) -> None:
        self.feedback.setProgress(100.0 * max(0.0, min(1.0, fraction)))

    def info(self, message: str) -> None:
        self.feedback.pushInfo(message)

    def warn(self, message: str) -> None:
        self.feedback.reportError(message, False)

    def cancelled(self) -> bool:
        return self.feedback.isCanceled()
