"""The run store: one folder per training run under `models/`, behind a small interface.

  models/<run_id>/config.json     config, classes, dataset fingerprint, versions
  models/<run_id>/status.json     a RunStatus: state, pid, times, error, stage, phase, epoch, device, results
  models/<run_id>/metrics.jsonl   one JSON object per line, appended and flushed
  models/<run_id>/model.keras     the final model
  models/<run_id>/evaluation.npz  test-split probabilities, labels, paths
  models/<run_id>/evaluation.json metrics derived from them
  models/<run_id>/analysis.npz    validation and test logits, pooled features, labels, paths (core.analysis)
  models/<run_id>/calibration.json, embedding.npz, train_features.npz, label_issues.json, heatmaps/, tasks/
                                  what the analysis derives from it (see the constants below)
  models/<run_id>/train.log       the training process's output
  models/<run_id>/STOP            present when someone asked the run to stop
  models/<run_id>/label.json      the name and note a person gave the run (kept by a retrain)

A run folder is a job folder of `core.processes` (status, stop flag, log). Every write is atomic;
readers tolerate a torn last metrics line, missing fields and fields they do not know.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import TrainConfig
from core.datasets import DatasetIndex
from core.fileio import append_jsonl, read_json, read_jsonl, write_json_atomic
from core.processes import ACTIVE_STATES, STATUS_FILE, STOP_FILE, JobFolder, JobStatus, RunState, process_alive

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
MODEL_FILE = "model.keras"
EVALUATION_NPZ = "evaluation.npz"
EVALUATION_JSON = "evaluation.json"
LOG_FILE = "train.log"
CHECKPOINT_FILE = "best.weights.h5"
LABEL_FILE = "label.json"
MAX_NAME_LENGTH = 80
__all__ = ["ACTIVE_STATES", "Run", "RunNotFound", "RunState", "RunStatus", "RunStore", "new_run_record"]

ANALYSIS_FILE = "analysis.npz"  # written by core.analysis
# What the analysis modules derive from it (each computed once, on demand or at the end of training):
CALIBRATION_FILE = "calibration.json"  # core.calibration: the fitted temperature and its scores
EMBEDDING_FILE = "embedding.npz"  # core.embedding: 2-D maps (PCA, t-SNE) of the val/test features
TRAIN_FEATURES_FILE = "train_features.npz"  # core.run_tasks: pooled features of the training split
LABEL_ISSUES_FILE = "label_issues.json"  # core.label_issues: suspected label errors, ranked
HEATMAPS_DIR = "heatmaps"  # core.explain: Grad-CAM maps cached per (image, class)
TASKS_DIR = "tasks"  # core.run_tasks: background analysis jobs of this run (job folders)
# Files a retrain replaces; config.json stays (same id, same config).
_RUN_OUTPUTS = (
    ANALYSIS_FILE,
    CALIBRATION_FILE,
    EMBEDDING_FILE,
    TRAIN_FEATURES_FILE,
    LABEL_ISSUES_FILE,
    HEATMAPS_DIR,
    TASKS_DIR,
    STATUS_FILE,
    METRICS_FILE,
    MODEL_FILE,
    EVALUATION_NPZ,
    EVALUATION_JSON,
    LOG_FILE,
    STOP_FILE,
    CHECKPOINT_FILE,
)


@dataclass
class RunStatus(JobStatus):
    """status.json of a training run: the job's fields, then how far training is and how it ended.

    The training process writes it (through `RunStore.set_status`, which refuses undeclared
    fields); the pages and the CLI read it. Older run folders load: what they lack is None.
    """

    device: str | None = None  # "CPU: ... (tensorflow)", "GPU: NVIDIA H200 (jax)"
    parallel: str | None = None  # "single device" or "data parallel over N devices (...)"
    phase: int | None = None  # 1: head on a frozen backbone; 2: fine-tuning
    epoch: int | None = None  # the epoch in progress (global over both phases, from 1)
    batch: int | None = None  # batches done in that epoch
    steps: int | None = None  # batches per epoch
    epoch_started_at: float | None = None
    epochs_total: int | None = None
    epochs_done: int | None = None
    last_epoch: dict[str, Any] | None = None  # the last epoch's metrics record
    split: dict[str, Any] | None = None  # {"train", "val", "test", "source", "notes"}
    unreadable_images: int | None = None
    accuracy: float | None = None  # on the test split, once evaluated
    macro_f1: float | None = None
    best_epoch: int | None = None  # whose weights were kept


def new_run_record(index: DatasetIndex, config: TrainConfig) -> dict[str, Any]:
    """What config.json holds: enough to reproduce the run (config, data, classes, versions)."""
    return {
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
    from core import __version__
    from core.device import keras_backend_name

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


class RunNotFound(KeyError):
    def __str__(self) -> str:
        return f"no run {self.args[0]!r} in the run store"


@dataclass
class Run:
    """A run folder as read from disk."""

    run_id: str
    directory: Path
    config: dict[str, Any]
    status: RunStatus = field(default_factory=RunStatus)
    stop_requested_at: float | None = None  # when someone asked it to stop (STOP), if they did
    name: str = ""  # given by a person; "" when none was
    note: str = ""

    @property
    def state(self) -> RunState:
        return self.status.state

    @property
    def active(self) -> bool:
        return self.status.active

    @property
    def stopping(self) -> bool:
        """Asked to stop and not ended yet: it finishes its batch, saves its best weights, evaluates."""
        return self.active and self.stop_requested_at is not None

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.settings)

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
    def corrections(self) -> dict[str, dict[str, Any]] | None:
        """The label corrections the run applied (core.corrections, {path: {action, to}}), None when none."""
        return self._dataset.get("corrections") or None

    @property
    def has_model(self) -> bool:
        return (self.directory / MODEL_FILE).exists()

    @property
    def has_evaluation(self) -> bool:
        return (self.directory / EVALUATION_NPZ).exists()

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
    def created(self) -> float:
        return float(self.config.get("created", 0.0))

    def path(self, name: str) -> Path:
        return self.directory / name


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


class RunStore:
    """Create, read, list and update run folders. Folder and file names live here only."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id

    def _job(self, run_id: str) -> JobFolder:
        return JobFolder(self.run_dir(run_id), LOG_FILE, RunStatus)

    def exists(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / CONFIG_FILE).exists()

    def create(self, run_id: str, record: dict[str, Any]) -> Run:
        """Create (or reset for a retrain) the folder of `run_id` with its config, state queued."""
        directory = self.run_dir(run_id)
        directory.mkdir(parents=True, exist_ok=True)
        for name in _RUN_OUTPUTS:
            target = directory / name
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            elif target.exists():
                target.unlink()
        record = {**record, "run_id": run_id, "created": time.time()}
        write_json_atomic(directory / CONFIG_FILE, record)
        status = self._job(run_id).write(RunStatus(state=RunState.QUEUED, queued_at=time.time()))
        return Run(run_id, directory, record, status)

    def get(self, run_id: str) -> Run:
        """The run `run_id`. Raises RunNotFound."""
        directory = self.run_dir(run_id)
        config = read_json(directory / CONFIG_FILE)
        if config is None:
            raise RunNotFound(run_id)
        job = self._job(run_id)
        label = read_json(directory / LABEL_FILE, default={}) or {}
        return Run(
            run_id,
            directory,
            config,
            job.read(),
            stop_requested_at=job.stop_requested_at(),
            name=str(label.get("name") or ""),
            note=str(label.get("note") or ""),
        )

    def find(self, prefix: str) -> Run:
        """The run whose id is `prefix` or starts with it (like git's short hashes)."""
        if self.exists(prefix):
            return self.get(prefix)
        matches = [run_id for run_id in self._ids() if run_id.startswith(prefix)]
        if len(matches) == 1:
            return self.get(matches[0])
        if len(matches) > 1:
            raise KeyError(f"run id prefix {prefix!r} is ambiguous: {', '.join(sorted(matches))}")
        raise RunNotFound(prefix)

    def list(self) -> list[Run]:
        """All runs, newest first."""
        runs = []
        for run_id in self._ids():
            try:
                runs.append(self.get(run_id))
            except RunNotFound:
                continue  # a folder being created right now
        return sorted(runs, key=lambda run: run.created, reverse=True)

    def _ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / CONFIG_FILE).exists()
        ]

    def set_status(self, run_id: str, **fields: Any) -> RunStatus:
        """Merge `fields` (RunStatus fields) into status.json, atomically; return the new status.

        Raises:
            TypeError: a field RunStatus does not declare.
        """
        return self._job(run_id).update(**fields)

    def launch(self, run_id: str, command: list[str]) -> RunStatus:
        """Start `command` as the run's detached process (output to train.log); record its pid."""
        return self._job(run_id).launch(command)

    def claim(self, run_id: str, **fields: Any) -> RunStatus:
        """Record that the calling process now owns the run (its pid), with `fields`."""
        return self._job(run_id).claim(**fields)

    def set_label(self, run_id: str, name: str | None = None, note: str | None = None) -> None:
        """Give a run a name and/or a note (None leaves that one as it is; "" clears it).

        Raises:
            RunNotFound: no such run.
            ValueError: a name longer than MAX_NAME_LENGTH or spanning lines.
        """
        run = self.get(run_id)
        label = {"name": run.name, "note": run.note}
        if name is not None:
            name = " ".join(name.split())
            if len(name) > MAX_NAME_LENGTH:
                raise ValueError(f"a run name has at most {MAX_NAME_LENGTH} characters. Received: {len(name)}")
            label["name"] = name
        if note is not None:
            label["note"] = note.strip()
        write_json_atomic(run.directory / LABEL_FILE, label)

    def stamp(self) -> tuple[int, float]:
        """Changes whenever a run is created, deleted, or writes its status (cheap: a stat per run).

        Pages poll it to notice runs started elsewhere without reading every run's files.
        """
        count, latest = 0, 0.0
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return 0, 0.0
        for entry in entries:
            if entry.is_dir() and not entry.name.startswith("."):
                count += 1
                try:
                    latest = max(latest, entry.stat().st_mtime)
                except OSError:
                    continue
        return count, latest

    def append_metrics(self, run_id: str, record: dict[str, Any]) -> None:
        append_jsonl(self.run_dir(run_id) / METRICS_FILE, record)

    def read_metrics(self, run_id: str) -> list[dict[str, Any]]:
        return read_jsonl(self.run_dir(run_id) / METRICS_FILE)

    def request_stop(self, run_id: str) -> None:
        """Ask a queued or running run to stop at its next batch."""
        self._job(run_id).request_stop()

    def stop_requested(self, run_id: str) -> bool:
        return self._job(run_id).stop_requested()

    def stop_requested_at(self, run_id: str) -> float | None:
        """When a stop was asked for (epoch seconds), or None when it was not."""
        return self._job(run_id).stop_requested_at()

    def log_tail(self, run_id: str, lines: int = 40) -> str:
        """The last `lines` lines of train.log (carriage-return progress redraws collapsed)."""
        return self._job(run_id).log_tail(lines)

    def delete(self, run_id: str) -> None:
        """Remove a run folder. Raises ValueError for a run that is still active."""
        run = self.get(run_id)
        if run.active and process_alive(run.status.pid):
            raise ValueError(f"run {run_id} is {run.state}; stop it before deleting")
        shutil.rmtree(run.directory)

    def refresh(self, run: Run) -> Run:
        """Mark a queued/running run whose process is gone as failed, so it is never shown running forever."""
        run.status = self._job(run.run_id).refresh(run.status, what="the training process")
        return run
