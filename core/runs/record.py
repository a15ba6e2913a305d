"""What a run is on disk: the names of its files, its status, its config record, and `Run`, a folder as read.

  models/<run_id>/config.json     config, classes, dataset fingerprint, versions
  models/<run_id>/status.json     a RunStatus: state, pid, times, error, stage, phase, epoch, device, results
  models/<run_id>/metrics.jsonl   one JSON object per line, appended and flushed
  models/<run_id>/model.keras     the final model
  models/<run_id>/evaluation.npz  test-split probabilities, labels, paths
  models/<run_id>/evaluation.json metrics derived from them
  models/<run_id>/analysis.npz    validation and test logits, pooled features, labels, paths (core.runs.analysis)
  models/<run_id>/calibration.json, embedding.npz, train_features.npz, label_issues.json, heatmaps/, tasks/
                                  what the analysis derives from it (see the constants below)
  models/<run_id>/train.log       the training process's output
  models/<run_id>/STOP            present when someone asked the run to stop
  models/<run_id>/label.json      the name and note a person gave the run (kept by a retrain)

A run folder is a job folder of `core.processes` (status, stop flag, log). Every write is atomic;
readers tolerate a torn last metrics line, missing fields and fields they do not know.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import __version__
from core.data.datasets import DatasetIndex
from core.device import keras_backend_name
from core.errors import Conflict, InvalidInput, NotFound, Unavailable
from core.fileio import UnreadableFile
from core.processes import STATUS_FILE, STOP_FILE, JobRecord, JobStatus
from core.settings.config import TrainConfig

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
MODEL_FILE = "model.keras"
EVALUATION_NPZ = "evaluation.npz"
EVALUATION_JSON = "evaluation.json"
TRAIN_LOG = "train.log"
CHECKPOINT_FILE = "best.weights.h5"
LABEL_FILE = "label.json"
MAX_NAME_LENGTH = 80
LOCAL_OWNER = "local"  # the owner of runs started in an app that is not shared (core.sharing.LOCAL_USER)

ANALYSIS_FILE = "analysis.npz"  # written by core.runs.analysis
# What the analysis modules derive from it (each computed once, on demand or at the end of training):
CALIBRATION_FILE = "calibration.json"  # core.results.probabilities.calibration: the fitted temperature and its scores
EMBEDDING_FILE = "embedding.npz"  # core.results.evaluation.embedding: 2-D maps (PCA, t-SNE) of the val/test features
TRAIN_FEATURES_FILE = "train_features.npz"  # core.results.tasks: pooled features of the training split
LABEL_ISSUES_FILE = "label_issues.json"  # core.results.labels.issues: suspected label errors, ranked
CONFORMAL_FILE = "conformal.json"  # core.results.probabilities.conformal: prediction sets' scores, held-out report
TTA_FILE = "tta.json"  # core.results.probabilities.tta: test-time augmentation measured on validation and test
DATA_ISSUES_FILE = "data_issues.json"  # core.results.data_issues.report: outliers, overlapping classes, groups, health
LABEL_NEXT_FILE = "label_next.npz"  # core.results.label_next.data: the unlabelled photos' features through this run
FIX_WORTH_FILE = "fix_worth.json"  # core.results.labels.fix_worth: what fixing labels would change, by their digest
LABEL_NEXT_SIMULATION_FILE = "label_next_simulation.json"  # core.results.label_next.simulation: its saving, measured
LABEL_NEXT_BATCH_FILE = "label_next_batch.json"  # core.results.label_next.batch: the batch on show
TTA_ARRAYS = "tta.npz"  # core.results.probabilities.tta: the averaged probabilities of those views, per split
HEATMAPS_DIR = "heatmaps"  # core.results.evaluation.explain: Grad-CAM maps cached per (image, class)
TASKS_DIR = "tasks"  # core.results.tasks: background analysis jobs of this run (job folders)
TENSORBOARD_DIR = "tensorboard"  # core.tracking.tensorboard: event files (per-epoch scalars, the confusion matrix)
REFERENCE_NPZ = "ood.npz"  # core.results.probabilities.reference: what served photos are compared against
REFERENCE_JSON = "ood.json"  # its detectors' summary and format version
RETRAIN_FILE = "retrain.json"  # core.retrain: in a retrained run's folder, the run it came from
EXPORTS_DIR = "exports"  # core.export.store: exports made from the app, one folder per kind
SELECTIVE_FILE = "selective.json"  # results.probabilities.selective: the threshold answering only when sure, its report
CLASS_THRESHOLDS_FILE = "class_thresholds.json"  # results.probabilities.class_thresholds: a threshold per class
LABEL_THRESHOLDS_FILE = "label_thresholds.json"  # results.probabilities.label_thresholds: a multi-label run's per label
MULTILABEL_EVALUATION_NPZ = "multilabel_evaluation.npz"  # results.evaluation.multilabel: test scores, label rows
MULTILABEL_EVALUATION_JSON = "multilabel_evaluation.json"  # its mAP, AP and F1 per label, intervals, random baseline
ROBUSTNESS_FILE = "robustness.json"  # results.evaluation.robustness: accuracy under 15 corruptions at 5 severities
MODEL_CARD_FILE = "model_card.md"  # core.results.card: the run's model card (Hugging Face's layout)
# Files a retrain replaces; config.json stays (same id, same config), and so do its name (label.json) and where a
# retrained run came from (retrain.json). Everything else was the old model's (tests/runs/test_files.py checks this).
RUN_KEEPS = (CONFIG_FILE, LABEL_FILE, RETRAIN_FILE)
RUN_OUTPUTS = (
    ANALYSIS_FILE,
    CALIBRATION_FILE,
    EMBEDDING_FILE,
    TRAIN_FEATURES_FILE,
    LABEL_ISSUES_FILE,
    CONFORMAL_FILE,
    TTA_FILE,
    TTA_ARRAYS,
    DATA_ISSUES_FILE,
    LABEL_NEXT_FILE,
    LABEL_NEXT_SIMULATION_FILE,
    LABEL_NEXT_BATCH_FILE,
    FIX_WORTH_FILE,
    SELECTIVE_FILE,
    CLASS_THRESHOLDS_FILE,
    ROBUSTNESS_FILE,
    MODEL_CARD_FILE,
    HEATMAPS_DIR,
    TASKS_DIR,
    STATUS_FILE,
    METRICS_FILE,
    MODEL_FILE,
    EVALUATION_NPZ,
    EVALUATION_JSON,
    MULTILABEL_EVALUATION_NPZ,
    MULTILABEL_EVALUATION_JSON,
    TRAIN_LOG,
    STOP_FILE,
    CHECKPOINT_FILE,
    REFERENCE_NPZ,  # the old model's out-of-distribution reference: a retrain fits its own
    REFERENCE_JSON,
    LABEL_THRESHOLDS_FILE,
    TENSORBOARD_DIR,  # the old fit's curves would run on under the new one's
    EXPORTS_DIR,  # exports of the old model's weights
)


@dataclass
class RunStatus(JobStatus):
    """status.json of a training run: the job's fields, then how far training is and how it ended.

    The training process writes it (through `RunStore.set_status`, which refuses undeclared
    fields); the pages and the CLI read it. Older run folders load: what they lack is None.
    """

    device: str | None = None  # "CPU: ... (tensorflow)", "GPU: NVIDIA H200 (jax)"
    parallel: str | None = None  # "single device" or "data parallel over N devices (...)"
    runtime: str | None = None  # "forward pass: OpenVINO 2026.4.1 (1.5x Keras's images per CPU-second ...)"
    node: str | None = None  # where a Ray task trains it: "Ray node 10.0.0.7 (3f2a9c1b)"; None: this machine
    line: str | None = None  # the line it waits in (core.train.queue): None this machine's device, "ray" the cluster
    submitted_at: float | None = None  # when it left Flora's line for the Ray cluster's scheduler
    phase: int | None = None  # 1: head on a frozen backbone; 2: fine-tuning
    epoch: int | None = None  # the epoch in progress (global over both phases, from 1)
    batch: int | None = None  # batches done in that epoch
    steps: int | None = None  # batches per epoch
    epoch_started_at: float | None = None
    first_batch_at: float | None = None  # when the epoch's first batch ended (it carries graph tracing, compiles)
    epochs_total: int | None = None
    epochs_done: int | None = None
    last_epoch: dict[str, Any] | None = None  # the last epoch's metrics record
    split: dict[str, Any] | None = None  # {"train", "val", "test", "source", "notes"}
    unreadable_images: int | None = None
    accuracy: float | None = None  # on the test split, once evaluated
    macro_f1: float | None = None
    map: float | None = None  # a multi-label run's mean average precision on the test split (it has no accuracy)
    best_epoch: int | None = None  # whose weights were kept
    mlflow: dict[str, Any] | None = (
        None  # {tracking URI: {"run_id", "experiment_id"}}: where it was logged (core.tracking)
    )


def new_run_record(index: DatasetIndex, config: TrainConfig, owner: str = LOCAL_OWNER) -> dict[str, Any]:
    """What config.json holds: enough to reproduce the run (config, data, classes, versions), and whose it is."""
    return {
        "owner": owner,
        "config": config.to_dict(),
        "classes": index.classes,
        "dataset": {
            "path": str(index.root),
            "name": index.name,
            "fingerprint": index.fingerprint,
            "layout": index.layout,
            "images": len(index.entries),
            "class_counts": index.class_counts(),
        },
        "versions": package_versions(),
    }


def package_versions() -> dict[str, str]:
    """Versions that decide what a run computes, read without importing the packages."""

    found = {
        "flora": __version__,
        "python": platform.python_version(),
        "backend": keras_backend_name(),
    }
    for package in ("keras", "tensorflow", "jax", "torch", "numpy", "pillow"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


class RunNotFound(NotFound):
    def __str__(self) -> str:
        return f"no run {self.args[0]!r} in the run store"


class AmbiguousRun(NotFound):
    """A run id prefix that several runs start with; the message lists them."""


class RunActive(Conflict, ValueError):
    """A run still queued or running where only a finished one will do (delete it: stop it first)."""


class NotARunId(InvalidInput):
    """A name that cannot be a run id (a path, '..'): it may still name a dataset."""


class RunUnreadable(Unavailable, ValueError):
    """A run folder whose config or status cannot be read; listed as "unreadable: <reason>", never a traceback."""

    def __init__(self, run_id: str, reason: str, directory: Path | None = None):
        super().__init__(run_id, reason)
        self.run_id, self.reason, self.directory = run_id, reason, directory

    def __str__(self) -> str:
        return f"run {self.run_id} is unreadable: {self.reason}"


# What a run id may be where it becomes a folder name (mlflow's rule, shorter): letters, digits, '-', '_'.
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_run_id(run_id: str) -> str:
    """Return `run_id` when it can name a run folder; raise NotARunId for anything else ('..', '/', ...)."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
        raise NotARunId(
            f"{str(run_id)[:80]!r} is not a run id: a run id is up to 64 letters, digits, '-' or '_' "
            "(a path is not accepted; give the id, as `python -m core runs` lists it)"
        )
    return run_id


def check_record(record: Any) -> None:
    """Raise UnreadableFile when a loaded config.json is not a run record this version can use."""
    if not isinstance(record, dict):
        raise UnreadableFile(f"{CONFIG_FILE} holds {type(record).__name__}, not an object")
    try:
        TrainConfig.from_dict(record.get("config") or {})
    except ValueError as e:  # ConfigError, and a config field of the wrong kind
        raise UnreadableFile(f"{CONFIG_FILE}: {e}") from None
    classes = record.get("classes", [])
    if not isinstance(classes, list) or not all(isinstance(name, str) for name in classes):
        raise UnreadableFile(f"{CONFIG_FILE}: classes is not a list of names")
    dataset = record.get("dataset", {})
    if not isinstance(dataset, dict):
        raise UnreadableFile(f"{CONFIG_FILE}: dataset is not an object")
    for key in ("path", "name", "fingerprint"):
        if dataset.get(key) is not None and not isinstance(dataset[key], str):
            raise UnreadableFile(f"{CONFIG_FILE}: dataset {key} is not text")
    for key, value in (("dataset images", dataset.get("images")), ("created", record.get("created"))):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise UnreadableFile(f"{CONFIG_FILE}: {key} is not a number")
    if record.get("owner") is not None and not isinstance(record["owner"], str):
        raise UnreadableFile(f"{CONFIG_FILE}: owner is not text")
    if dataset.get("corrections") is not None and not isinstance(dataset["corrections"], dict):
        raise UnreadableFile(f"{CONFIG_FILE}: dataset corrections is not an object")


@dataclass
class Run(JobRecord):
    """A run folder as read from disk."""

    run_id: str
    directory: Path
    config: dict[str, Any]
    status: RunStatus = field(default_factory=RunStatus)
    stop_requested_at: float | None = None  # when someone asked it to stop (STOP), if they did
    name: str = ""  # given by a person; "" when none was
    note: str = ""

    @functools.cached_property
    def train_config(self) -> TrainConfig:
        """Its settings as a TrainConfig (checked once: a page polling 500 runs asks for it every redraw)."""
        return TrainConfig.from_dict(self.settings)

    @property
    def multilabel(self) -> bool:
        """Several labels a photo (its config's task): sigmoid outputs, a threshold per label, mAP for accuracy."""
        return self.train_config.multilabel

    @property
    def settings(self) -> dict[str, Any]:
        """The TrainConfig as stored (a dict): what the Train page shows as the run's settings."""
        return dict(self.config.get("config") or {})

    @property
    def classes(self) -> list[str]:
        return list(self.config.get("classes", []))

    @property
    def _dataset(self) -> dict[str, Any]:
        return self.config.get("dataset") or {}

    @property
    def dataset_path(self) -> str:
        return self._dataset.get("path", "")

    @property
    def dataset_fingerprint(self) -> str:
        return self._dataset.get("fingerprint", "")

    @property
    def dataset_name(self) -> str:
        return self._dataset.get("name") or Path(self._dataset.get("path", "?")).name

    @property
    def dataset_images(self) -> int | None:
        """How many photos the dataset had when the run was created (None for a record without the count)."""
        images = self._dataset.get("images")
        return int(images) if images else None

    @property
    def reused_from(self) -> dict[str, str] | None:
        """{"run_id", "owner"}: the classmate's identical run this one is a copy of (core.train.jobs), or None."""
        found = self.config.get("reused_from")
        return found if isinstance(found, dict) and found.get("run_id") else None

    @property
    def corrections_by(self) -> str | None:
        """Whose label corrections the run applied (None: none, or a run from before they were per person)."""
        found = self.config.get("dataset", {}).get("corrections_by")
        return str(found) if found and self.corrections else None

    @property
    def corrections(self) -> dict[str, dict[str, Any]] | None:
        """The label corrections the run applied (core.data.corrections, {path: {action, to}}), None when none."""
        return self._dataset.get("corrections") or None

    @property
    def has_model(self) -> bool:
        return (self.directory / MODEL_FILE).exists()

    @property
    def has_evaluation(self) -> bool:
        return (self.directory / EVALUATION_NPZ).exists()

    @property
    def has_multilabel_evaluation(self) -> bool:
        """A multi-label run's stored test evaluation (core.results.evaluation.multilabel)."""
        return (self.directory / MULTILABEL_EVALUATION_NPZ).exists()

    @property
    def has_analysis(self) -> bool:
        """True when the validation/test logits and features are stored (runs trained before them: no)."""
        return (self.directory / ANALYSIS_FILE).exists()

    @property
    def evaluated(self) -> bool:
        """True when the run has a model and a test evaluation: done, or stopped after an epoch."""
        return self.has_model and self.has_evaluation

    @property
    def model_mtime(self) -> float | None:
        """When model.keras was written (a cache key for loaded models), None without one."""
        return _mtime(self.directory / MODEL_FILE)

    @property
    def evaluation_mtime(self) -> float | None:
        """When the test evaluation was written (a cache key for loaded evaluations), None without one."""
        return _mtime(self.directory / EVALUATION_NPZ)

    @property
    def multilabel_evaluation_mtime(self) -> float | None:
        """When a multi-label run's test evaluation was written (a cache key), None without one."""
        return _mtime(self.directory / MULTILABEL_EVALUATION_NPZ)

    @property
    def analysis_mtime(self) -> float | None:
        """When the analysis arrays were written (a cache key), None without them."""
        return _mtime(self.directory / ANALYSIS_FILE)

    @property
    def embedding_mtime(self) -> float | None:
        """When the t-SNE map was written, None without one."""
        return _mtime(self.directory / EMBEDDING_FILE)

    @property
    def train_features_mtime(self) -> float | None:
        """When the training split's features were stored, None without them."""
        return _mtime(self.directory / TRAIN_FEATURES_FILE)

    @property
    def owner(self) -> str:
        """Who started the run: a signed-in user, the CLI's OS user, or "local" (and runs from before owners)."""
        return str(self.config.get("owner") or LOCAL_OWNER)

    @property
    def created(self) -> float:
        return float(self.config.get("created", 0.0))

    def path(self, name: str) -> Path:
        return self.directory / name


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None
