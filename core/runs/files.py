"""Where each file of a run folder lives: the one place a run folder is joined with a file name.

mlflow's file store (`_get_run_dir`, `_get_metric_path`) is the model: code outside core/runs/ asks
`run_files(run).calibration` for a run's file and never spells `run_dir / "calibration.json"`, so the folder's
layout (core.runs.record names every file) can change in one place.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.runs import record as names
from core.runs.record import Run


class RunFiles:
    """The files of one run folder, by what they hold (each a path; none is read or created here)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def _file(self, name: str) -> Path:
        return self.directory / name

    # what training writes
    @property
    def config(self) -> Path:
        return self._file(names.CONFIG_FILE)

    @property
    def model(self) -> Path:
        return self._file(names.MODEL_FILE)

    @property
    def checkpoint(self) -> Path:
        """The best weights so far, kept on disk while a run fits on images (removed once the model is saved)."""
        return self._file(names.CHECKPOINT_FILE)

    @property
    def log(self) -> Path:
        return self._file(names.TRAIN_LOG)

    @property
    def metrics(self) -> Path:
        """One JSON line per epoch (and per stage), as training reported them."""
        return self._file(names.METRICS_FILE)

    @property
    def tensorboard(self) -> Path:
        """TensorBoard's event files (core.tracking.tensorboard): per-epoch scalars, the confusion matrix."""
        return self._file(names.TENSORBOARD_DIR)

    # what the stage after the fit writes (core.results.after_fit)
    @property
    def analysis(self) -> Path:
        return self._file(names.ANALYSIS_FILE)

    @property
    def evaluation_arrays(self) -> Path:
        return self._file(names.EVALUATION_NPZ)

    @property
    def evaluation_summary(self) -> Path:
        return self._file(names.EVALUATION_JSON)

    @property
    def multilabel_evaluation_arrays(self) -> Path:
        """A multi-label run's test scores, label rows and thresholds (its `evaluation_arrays`)."""
        return self._file(names.MULTILABEL_EVALUATION_NPZ)

    @property
    def multilabel_evaluation_summary(self) -> Path:
        """A multi-label run's mAP, per-label figures and their intervals (its `evaluation_summary`)."""
        return self._file(names.MULTILABEL_EVALUATION_JSON)

    @property
    def calibration(self) -> Path:
        return self._file(names.CALIBRATION_FILE)

    @property
    def conformal(self) -> Path:
        return self._file(names.CONFORMAL_FILE)

    @property
    def reference_arrays(self) -> Path:
        return self._file(names.REFERENCE_NPZ)

    @property
    def reference_summary(self) -> Path:
        return self._file(names.REFERENCE_JSON)

    # what a run's analysis derives later, on demand or as a background task
    @property
    def embedding(self) -> Path:
        return self._file(names.EMBEDDING_FILE)

    @property
    def train_features(self) -> Path:
        return self._file(names.TRAIN_FEATURES_FILE)

    @property
    def label_issues(self) -> Path:
        return self._file(names.LABEL_ISSUES_FILE)

    @property
    def tta(self) -> Path:
        return self._file(names.TTA_FILE)

    @property
    def tta_arrays(self) -> Path:
        return self._file(names.TTA_ARRAYS)

    @property
    def data_issues(self) -> Path:
        return self._file(names.DATA_ISSUES_FILE)

    @property
    def label_next(self) -> Path:
        return self._file(names.LABEL_NEXT_FILE)

    @property
    def label_next_simulation(self) -> Path:
        return self._file(names.LABEL_NEXT_SIMULATION_FILE)

    @property
    def label_next_batch(self) -> Path:
        return self._file(names.LABEL_NEXT_BATCH_FILE)

    @property
    def fix_worth(self) -> Path:
        return self._file(names.FIX_WORTH_FILE)

    @property
    def heatmaps(self) -> Path:
        """A folder: Grad-CAM maps cached per (image, class)."""
        return self._file(names.HEATMAPS_DIR)

    # how far to trust its answers, how it holds up, and its card (on demand)
    @property
    def selective(self) -> Path:
        """The threshold that answers only when sure at each level, and its held-out report."""
        return self._file(names.SELECTIVE_FILE)

    @property
    def class_thresholds(self) -> Path:
        """A confidence threshold per class, as saved from Evaluate."""
        return self._file(names.CLASS_THRESHOLDS_FILE)

    @property
    def label_thresholds(self) -> Path:
        """A multi-label run's threshold per label, tuned on validation as it ended."""
        return self._file(names.LABEL_THRESHOLDS_FILE)

    @property
    def robustness(self) -> Path:
        """Accuracy under the 15 corruptions at 5 severities."""
        return self._file(names.ROBUSTNESS_FILE)

    @property
    def model_card(self) -> Path:
        """The run's model card (Hugging Face's layout)."""
        return self._file(names.MODEL_CARD_FILE)

    def task(self, kind: str) -> Path:
        """The job folder of the run's background analysis task `kind` (core.results.tasks)."""
        return self._file(names.TASKS_DIR) / kind

    @property
    def exports(self) -> Path:
        """A folder: the exports made from the app, one folder per kind (core.export.store)."""
        return self._file(names.EXPORTS_DIR)

    @property
    def retrain(self) -> Path:
        """In a retrained run's folder: the run it came from and their comparison (core.retrain)."""
        return self._file(names.RETRAIN_FILE)


def run_files(run: Run | str | os.PathLike) -> RunFiles:
    """The files of `run` (a `Run`, or its folder)."""
    return RunFiles(run.directory if isinstance(run, Run) else run)
