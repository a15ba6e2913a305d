"""The run store: one folder per training run under `models/`, behind a small interface.

  models/<run_id>/config.json     config, classes, dataset fingerprint, versions
  models/<run_id>/status.json     state, pid, times, error, phase, epoch, device
  models/<run_id>/metrics.jsonl   one JSON object per line, appended and flushed
  models/<run_id>/model.keras     the final model
  models/<run_id>/evaluation.npz  test-split probabilities, labels, paths
  models/<run_id>/evaluation.json metrics derived from them
  models/<run_id>/train.log       the training process's output
  models/<run_id>/STOP            present when someone asked the run to stop

Every write is atomic; readers tolerate a torn last metrics line and missing fields.
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
from core.processes import LAUNCH_GRACE_SECONDS, log_tail, process_alive

CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
MODEL_FILE = "model.keras"
EVALUATION_NPZ = "evaluation.npz"
EVALUATION_JSON = "evaluation.json"
LOG_FILE = "train.log"
STOP_FILE = "STOP"
CHECKPOINT_FILE = "best.weights.h5"

QUEUED, RUNNING, DONE, FAILED, STOPPED = "queued", "running", "done", "failed", "stopped"
STATES = (QUEUED, RUNNING, DONE, FAILED, STOPPED)
ACTIVE_STATES = (QUEUED, RUNNING)
# Files a retrain replaces; config.json stays (same id, same config).
_RUN_OUTPUTS = (
    STATUS_FILE,
    METRICS_FILE,
    MODEL_FILE,
    EVALUATION_NPZ,
    EVALUATION_JSON,
    LOG_FILE,
    STOP_FILE,
    CHECKPOINT_FILE,
)


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
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> str:
        return self.status.get("state", QUEUED)

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.config.get("config", {}))

    @property
    def classes(self) -> list[str]:
        return list(self.config.get("classes", []))

    @property
    def dataset_path(self) -> str:
        return self.config.get("dataset", {}).get("path", "")

    @property
    def dataset_name(self) -> str:
        dataset = self.config.get("dataset", {})
        return dataset.get("name") or Path(dataset.get("path", "?")).name

    @property
    def has_model(self) -> bool:
        return (self.directory / MODEL_FILE).exists()

    @property
    def has_evaluation(self) -> bool:
        return (self.directory / EVALUATION_NPZ).exists()

    @property
    def created(self) -> float:
        return float(self.config.get("created", 0.0))

    def path(self, name: str) -> Path:
        return self.directory / name


class RunStore:
    """Create, read, list and update run folders. Folder and file names live here only."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id

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
        write_json_atomic(directory / STATUS_FILE, {"state": QUEUED, "queued_at": time.time()})
        return Run(run_id, directory, record, {"state": QUEUED})

    def get(self, run_id: str) -> Run:
        """The run `run_id`. Raises RunNotFound."""
        directory = self.run_dir(run_id)
        config = read_json(directory / CONFIG_FILE)
        if config is None:
            raise RunNotFound(run_id)
        status = read_json(directory / STATUS_FILE, default={}) or {}
        return Run(run_id, directory, config, status)

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

    def set_status(self, run_id: str, **fields: Any) -> dict[str, Any]:
        """Merge `fields` into status.json (atomically) and return the new status."""
        path = self.run_dir(run_id) / STATUS_FILE
        status = read_json(path, default={}) or {}
        status.update(fields)
        status["updated_at"] = time.time()
        write_json_atomic(path, status)
        return status

    def append_metrics(self, run_id: str, record: dict[str, Any]) -> None:
        append_jsonl(self.run_dir(run_id) / METRICS_FILE, record)

    def read_metrics(self, run_id: str) -> list[dict[str, Any]]:
        return read_jsonl(self.run_dir(run_id) / METRICS_FILE)

    def request_stop(self, run_id: str) -> None:
        """Ask a queued or running run to stop at its next batch."""
        (self.run_dir(run_id) / STOP_FILE).write_text(str(time.time()))

    def stop_requested(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / STOP_FILE).exists()

    def stop_requested_at(self, run_id: str) -> float | None:
        """When a stop was asked for (epoch seconds), or None when it was not."""
        try:
            text = (self.run_dir(run_id) / STOP_FILE).read_text()
        except FileNotFoundError:
            return None
        try:
            return float(text)
        except ValueError:  # written by hand (touch STOP): counts as asked just now
            return time.time()

    def log_tail(self, run_id: str, lines: int = 40) -> str:
        """The last `lines` lines of train.log (carriage-return progress redraws collapsed)."""
        return log_tail(self.run_dir(run_id) / LOG_FILE, lines)

    def delete(self, run_id: str) -> None:
        """Remove a run folder. Raises ValueError for a run that is still active."""
        run = self.get(run_id)
        if run.state in ACTIVE_STATES and process_alive(run.status.get("pid")):
            raise ValueError(f"run {run_id} is {run.state}; stop it before deleting")
        shutil.rmtree(run.directory)

    def refresh(self, run: Run) -> Run:
        """Mark a queued/running run whose process is gone as failed, so it is never shown running forever."""
        if run.state not in ACTIVE_STATES:
            return run
        pid = run.status.get("pid")
        if pid is None:
            since = run.status.get("queued_at") or run.created
            if time.time() - float(since) < LAUNCH_GRACE_SECONDS:
                return run
        elif process_alive(pid, run.status.get("pid_start")):
            return run
        tail = self.log_tail(run.run_id, 15)
        error = f"the training process{f' (pid {pid})' if pid else ''} ended without finishing the run"
        if tail:
            error += f"; last log lines:\n{tail}"
        run.status = self.set_status(run.run_id, state=FAILED, error=error, finished_at=time.time())
        return run
