"""The run store: one folder per training run under `models/`, behind a small interface.

  models/<run_id>/config.json     config, classes, dataset fingerprint, versions
  models/<run_id>/status.json     a RunStatus: state, pid, times, error, stage, phase, epoch, device, results
  models/<run_id>/metrics.jsonl   one JSON object per line, appended and flushed
  models/<run_id>/model.keras     the final model
  models/<run_id>/evaluation.npz  test-split probabilities, labels, paths
  models/<run_id>/evaluation.json metrics derived from them
  models/<run_id>/analysis.npz    validation and test logits, pooled features, labels, paths (core.results.arrays)
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
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.data.datasets import DatasetIndex
from core.fileio import UnreadableFile, append_jsonl, load_json, read_json, read_jsonl, write_json_atomic
from core.processes import ACTIVE_STATES, STATUS_FILE, STOP_FILE, JobFolder, JobStatus, RunState, process_alive
from core.settings.config import TrainConfig

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
MODEL_FILE = "model.keras"
EVALUATION_NPZ = "evaluation.npz"
EVALUATION_JSON = "evaluation.json"
LOG_FILE = "train.log"
CHECKPOINT_FILE = "best.weights.h5"
LABEL_FILE = "label.json"
MAX_NAME_LENGTH = 80
LOCAL_OWNER = "local"  # the owner of runs started in an app that is not shared (core.sharing.LOCAL_USER)
__all__ = [
    "ACTIVE_STATES",
    "Run",
    "RunNotFound",
    "RunState",
    "RunStatus",
    "RunStore",
    "RunUnreadable",
    "check_run_id",
    "new_run_record",
]

ANALYSIS_FILE = "analysis.npz"  # written by core.results.arrays
# What the analysis modules derive from it (each computed once, on demand or at the end of training):
CALIBRATION_FILE = "calibration.json"  # core.results.calibration: the fitted temperature and its scores
EMBEDDING_FILE = "embedding.npz"  # core.results.embedding: 2-D maps (PCA, t-SNE) of the val/test features
TRAIN_FEATURES_FILE = "train_features.npz"  # core.results.tasks: pooled features of the training split
LABEL_ISSUES_FILE = "label_issues.json"  # core.results.label_issues: suspected label errors, ranked
HEATMAPS_DIR = "heatmaps"  # core.results.explain: Grad-CAM maps cached per (image, class)
TASKS_DIR = "tasks"  # core.results.tasks: background analysis jobs of this run (job folders)
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
    best_epoch: int | None = None  # whose weights were kept


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


class RunUnreadable(ValueError):
    """A run folder whose config or status cannot be read; listed as "unreadable: <reason>", never a traceback."""

    def __init__(self, run_id: str, reason: str, directory: Path | None = None):
        super().__init__(run_id, reason)
        self.run_id, self.reason, self.directory = run_id, reason, directory

    def __str__(self) -> str:
        return f"run {self.run_id} is unreadable: {self.reason}"


# What a run id may be where it becomes a folder name (mlflow's rule, shorter): letters, digits, '-', '_'.
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_run_id(run_id: str) -> str:
    """Return `run_id` when it can name a run folder; raise ValueError for anything else ('..', '/', ...)."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ValueError(
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
        """The label corrections the run applied (core.data.corrections, {path: {action, to}}), None when none."""
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


class RunStore:
    """Create, read, list and update run folders. Folder and file names live here only."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def run_dir(self, run_id: str) -> Path:
        """The folder of `run_id`. Raises ValueError for an id that is not one (a path, '..')."""
        return self.root / check_run_id(run_id)

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
        """The run `run_id`.

        Raises:
            RunNotFound: no such run.
            RunUnreadable: its config or status is cut short, not JSON, or holds values of the wrong kind.
        """
        directory = self.run_dir(run_id)
        try:
            config = load_json(directory / CONFIG_FILE)
            check_record(config)
        except FileNotFoundError:
            raise RunNotFound(run_id) from None
        except UnreadableFile as e:
            raise RunUnreadable(run_id, str(e), directory) from None
        job = self._job(run_id)
        status = job.read()
        if status.unreadable:
            raise RunUnreadable(run_id, status.unreadable, directory)
        label = read_json(directory / LABEL_FILE, default={})
        label = label if isinstance(label, dict) else {}
        return Run(
            run_id,
            directory,
            config,
            status,
            stop_requested_at=job.stop_requested_at(),
            name=str(label.get("name") or ""),
            note=str(label.get("note") or ""),
        )

    def find(self, prefix: str) -> Run:
        """The run whose id is `prefix` or starts with it (like git's short hashes).

        Raises:
            ValueError: `prefix` is not a run id (a path, '..').
            RunNotFound, RunUnreadable: as `get`; KeyError: an ambiguous prefix.
        """
        check_run_id(prefix)
        if self.exists(prefix):
            return self.get(prefix)
        matches = [run_id for run_id in self._ids() if run_id.startswith(prefix)]
        if len(matches) == 1:
            return self.get(matches[0])
        if len(matches) > 1:
            raise KeyError(f"run id prefix {prefix!r} is ambiguous: {', '.join(sorted(matches))}")
        raise RunNotFound(prefix)

    def list(self) -> list[Run]:
        """All readable runs, newest first (`unreadable()` lists the others)."""
        return self.scan()[0]

    def unreadable(self) -> list[RunUnreadable]:
        """The run folders that cannot be read, each with why (pages and `core runs` list them)."""
        return self.scan()[1]

    def scan(self) -> tuple[list[Run], list[RunUnreadable]]:
        """(readable runs newest first, unreadable run folders by id): one pass over the store."""
        runs, unreadable = [], []
        for run_id in self._ids():
            try:
                runs.append(self.get(run_id))
            except RunNotFound:
                continue  # a folder being created right now
            except RunUnreadable as e:
                unreadable.append(e)
        return sorted(runs, key=lambda run: run.created, reverse=True), sorted(unreadable, key=lambda e: e.run_id)

    def _ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [
            p.name for p in self.root.iterdir() if p.is_dir() and _RUN_ID.match(p.name) and (p / CONFIG_FILE).exists()
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

    def delete_unreadable(self, run_id: str) -> None:
        """Remove a run folder that cannot be read (`unreadable()`). Raises ValueError for one that can."""
        try:
            self.get(run_id)
        except RunUnreadable as e:
            shutil.rmtree(e.directory or self.run_dir(run_id))
            return
        raise ValueError(f"run {run_id} can be read; delete it as a run (stopping it first if it is active)")

    def refresh(self, run: Run, persist: bool = True) -> Run:
        """Mark a queued/running run whose process is gone as failed, so it is never shown running forever.

        `persist=False` (read-only commands such as `core runs`) shows it failed without writing.
        """
        run.status = self._job(run.run_id).refresh(run.status, what="the training process", persist=persist)
        return run
