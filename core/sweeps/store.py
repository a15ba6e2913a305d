"""Sweep folders: one job folder of `core.processes` per sweep, beside the runs in the run store.

  models/.sweeps/<sweep_id>/sweep.json    what the sweep searches: dataset, fixed settings, space
  models/.sweeps/<sweep_id>/status.json   a SweepStatus: state, pid, stage, trials done, the best so far
  models/.sweeps/<sweep_id>/study.db      Optuna's study (SQLite): every trial, what resuming continues
  models/.sweeps/<sweep_id>/trials.json   the trials, the best and the importances, rewritten after each
                                          trial (what the page polls, without opening the study)
  models/.sweeps/<sweep_id>/sweep.log     the sweep process's output
  models/.sweeps/<sweep_id>/corrections.json   the label corrections it applied, when a command repeats it
  models/.sweeps/<sweep_id>/features.npz  the features every Ray worker loads (only while they run)
  models/.sweeps/<sweep_id>/STOP          present when someone asked it to stop

The folder's name starts with a dot, so the run store does not list it as a run. A sweep's id is a
hash of its dataset, fixed settings and space: the same sweep asked for again continues this one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import Conflict, NotFound
from core.fileio import read_json, write_json_atomic
from core.processes import STATUS_FILE, JobFolder, JobRecord, JobStatus, process_alive
from core.settings.config import TrainConfig, canonical_json
from core.sharing.people import LOCAL_USER, layer_of
from core.sweeps.space import SearchSpace, parse_space

SWEEPS_DIRNAME = ".sweeps"
SPEC_FILE = "sweep.json"
STUDY_FILE = "study.db"
TRIALS_FILE = "trials.json"
SWEEP_LOG = "sweep.log"
CORRECTIONS_FILE = "corrections.json"  # exactly the corrections the sweep applied (core.sweeps.launch)
FEATURES_FILE = "features.npz"  # the features Ray workers load, there while they run (core.sweeps.ray)
STUDY_NAME = "flora"
# Settings that only the promoted run uses (a sweep trains heads): not part of what a sweep is.
# fields only the promoted run reads (a multi-label run's thresholds are tuned once it has trained)
PROMOTION_FIELDS = ("fine_tune_epochs", "unfreeze_stages", "fine_tune_learning_rate", "threshold_precision")


class SweepActive(Conflict, ValueError):
    """A sweep still queued or running where only an ended one will do (delete it: stop it first)."""


@dataclass
class SweepStatus(JobStatus):
    """status.json of a sweep: the job's fields, then how far the search is and the best so far."""

    device: str | None = None
    trials_target: int | None = None  # finished trials (complete or pruned) to reach; None: until the time budget
    timeout_seconds: float | None = None  # this launch starts no trial after this long; None: no budget
    trials_done: int | None = None  # complete + pruned, over every launch
    trials_pruned: int | None = None
    trial_running: int | None = None  # the number of the trial training now
    best_trial: int | None = None
    best_val_loss: float | None = None
    best_val_accuracy: float | None = None
    best_val_map: float | None = None  # a multi-label sweep's: its best trial's validation mAP (its objective)
    split: dict[str, Any] | None = None  # {"train", "val", "test", "source"}: the test images are never used
    features_seconds: float | None = None  # decoding + extracting the features, this launch
    promoted_run: str | None = None  # the run trained from the best trial
    promoted_trial: int | None = None


def sweep_identity(fixed: TrainConfig) -> TrainConfig:
    """The fixed settings as far as the trials see them: the promotion-only fields at their defaults."""
    defaults = TrainConfig()
    return fixed.replace(**{name: getattr(defaults, name) for name in PROMOTION_FIELDS})


def sweep_id_for(fixed: TrainConfig, space: SearchSpace, dataset_fingerprint: str, owner: str | None = None) -> str:
    """Short hash naming the sweep: the same search on the same data by the same person finds the same sweep
    (the person at this machine, "local" or the command line's user, keeps the ids sweeps had before owners)."""
    payload = {"fixed": sweep_identity(fixed).to_dict(), "space": space.to_dict(), "dataset": dataset_fingerprint}
    if layer_of(owner) != LOCAL_USER:
        payload["owner"] = layer_of(owner)
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:12]


@dataclass
class Sweep(JobRecord):
    """A sweep folder as read from disk."""

    sweep_id: str
    directory: Path
    spec: dict[str, Any]
    status: SweepStatus = field(default_factory=SweepStatus)
    stop_requested_at: float | None = None

    @property
    def fixed(self) -> TrainConfig:
        return TrainConfig.from_dict(self.spec.get("fixed", {}))

    @property
    def space(self) -> SearchSpace:
        return parse_space(self.spec.get("space", {}), self.fixed)

    @property
    def dataset_path(self) -> str:
        return self.spec.get("dataset", {}).get("path", "")

    @property
    def dataset_name(self) -> str:
        dataset = self.spec.get("dataset", {})
        return dataset.get("name") or Path(dataset.get("path", "?")).name

    @property
    def owner(self) -> str:
        """Who started the sweep (a signed-in user, the CLI's --owner or OS user; "local" before owners)."""
        return str(self.spec.get("owner") or LOCAL_USER)

    @property
    def created(self) -> float:
        return float(self.spec.get("created", 0.0))

    @property
    def study_url(self) -> str:
        return f"sqlite:///{self.directory / STUDY_FILE}"

    def trials(self) -> dict[str, Any]:
        """The last snapshot of the trials: {"trials": [...], "best": {...} | None, "importance": {...}}."""
        return read_json(self.directory / TRIALS_FILE, default=None) or {"trials": [], "best": None, "importance": {}}


class SweepStore:
    """Create, read, list and stop sweep folders under the run store. File names live here only."""

    def __init__(self, models_root: str | os.PathLike):
        self.models_root = Path(models_root)
        self.root = self.models_root / SWEEPS_DIRNAME

    def sweep_dir(self, sweep_id: str) -> Path:
        return self.root / sweep_id

    def folder(self, sweep_id: str) -> JobFolder:
        return JobFolder(self.sweep_dir(sweep_id), SWEEP_LOG, SweepStatus)

    def exists(self, sweep_id: str) -> bool:
        return (self.sweep_dir(sweep_id) / SPEC_FILE).exists()

    def create(self, sweep_id: str, spec: dict[str, Any]) -> Sweep:
        """Write a new sweep's spec and a queued status (an existing sweep keeps its trials)."""
        directory = self.sweep_dir(sweep_id)
        directory.mkdir(parents=True, exist_ok=True)
        if not self.exists(sweep_id):
            write_json_atomic(directory / SPEC_FILE, {**spec, "sweep_id": sweep_id, "created": time.time()})
        return self.get(sweep_id)

    def get(self, sweep_id: str) -> Sweep:
        """The sweep `sweep_id`. Raises KeyError."""
        directory = self.sweep_dir(sweep_id)
        spec = read_json(directory / SPEC_FILE)
        if spec is None:
            raise NotFound(f"no sweep {sweep_id!r} in {self.root}")
        folder = self.folder(sweep_id)
        return Sweep(sweep_id, directory, spec, folder.read(), folder.stop_requested_at())

    def find(self, prefix: str) -> Sweep:
        """The sweep whose id is `prefix` or starts with it."""
        if self.exists(prefix):
            return self.get(prefix)
        matches = [sweep_id for sweep_id in self._ids() if sweep_id.startswith(prefix)]
        if len(matches) == 1:
            return self.get(matches[0])
        if len(matches) > 1:
            raise NotFound(f"sweep id prefix {prefix!r} is ambiguous: {', '.join(sorted(matches))}")
        raise NotFound(f"no sweep {prefix!r} in {self.root}")

    def list(self) -> list[Sweep]:
        """Every sweep, newest first, with a dead process shown as failed."""
        sweeps = []
        for sweep_id in self._ids():
            try:
                sweeps.append(self.refresh(self.get(sweep_id)))
            except KeyError:
                continue
        return sorted(sweeps, key=lambda s: s.created, reverse=True)

    def _ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [p.name for p in self.root.iterdir() if p.is_dir() and (p / SPEC_FILE).exists()]

    def stamp(self) -> tuple[int, float]:
        """Changes when a sweep is created or writes its status (a stat per sweep)."""
        count, latest = 0, 0.0
        for sweep_id in self._ids():
            count += 1
            try:
                latest = max(latest, (self.sweep_dir(sweep_id) / STATUS_FILE).stat().st_mtime)
            except OSError:
                continue
        return count, latest

    def refresh(self, sweep: Sweep) -> Sweep:
        """Mark an active sweep whose process is gone as failed (with its last log lines)."""
        sweep.status = self.folder(sweep.sweep_id).refresh(sweep.status, what="the sweep process")
        return sweep

    def update(self, sweep_id: str, **fields: Any) -> SweepStatus:
        return self.folder(sweep_id).update(**fields)

    def request_stop(self, sweep_id: str) -> None:
        """Ask the sweep to stop: the trial training now ends at its next batch and is tried again on resume."""
        self.folder(sweep_id).request_stop()

    def write_trials(self, sweep_id: str, snapshot: dict[str, Any]) -> None:
        write_json_atomic(self.sweep_dir(sweep_id) / TRIALS_FILE, snapshot)

    def log_tail(self, sweep_id: str, lines: int = 40) -> str:
        return self.folder(sweep_id).log_tail(lines)

    def delete(self, sweep_id: str) -> None:
        """Remove a sweep folder (its trials; runs it promoted stay). Raises ValueError while it runs."""
        sweep = self.get(sweep_id)
        if sweep.active and process_alive(sweep.status.pid, sweep.status.pid_start):
            raise SweepActive(f"sweep {sweep_id} is {sweep.state}; stop it before deleting")
        shutil.rmtree(sweep.directory)
