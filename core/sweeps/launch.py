"""Starting, continuing, stopping and promoting sweeps: what the page and the CLI call.

`submit` checks a request (the space, the budget, the fixed settings) and finds or creates its
sweep folder before anything runs; `launch` then starts `python -m core sweep --launched-sweep ID`
detached, and the CLI runs `core.sweeps.search.run_sweep` in its own process instead. `promote`
turns the best trial into an ordinary run of the run store. Nothing here imports Keras or Optuna.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.data.corrections import dataset_key
from core.data.datasets import scan_dataset
from core.errors import InvalidInput
from core.fileio import write_json_atomic
from core.processes import JobState
from core.runs.store import RunStore
from core.settings.config import ConfigError, TrainConfig
from core.settings.options import train_arguments
from core.sharing.people import LOCAL_USER
from core.sweeps.space import SearchSpace, parse_space
from core.sweeps.store import CORRECTIONS_FILE, Sweep, SweepStore, sweep_id_for, sweep_identity
from core.train import jobs
from core.train.jobs import dataset_corrections

NEW, ACTIVE, FINISHED = "new", "active", "finished"


@dataclass
class SweepSubmission:
    """What a sweep request found: a sweep to (re)start, one already running, or one already finished."""

    sweep: Sweep
    outcome: str  # NEW | ACTIVE | FINISHED


def check_fixed(fixed: TrainConfig) -> None:
    """Refuse fixed settings a sweep cannot use.

    Raises:
        ConfigError: the head phase is off, or the feature cache is (trials train on cached features).
    """
    if fixed.epochs < 1:
        raise ConfigError("a sweep trains the head: epochs (phase 1) must be at least 1")
    if not fixed.feature_cache:
        raise ConfigError(
            "a sweep trains every trial's head on cached features: the feature cache cannot be off "
            "(drop --no-feature-cache)"
        )


def check_budget(trials: int | None, timeout: float | None) -> None:
    """Raises ConfigError unless there is a number of trials, a time budget, or both, each positive."""
    if trials is None and timeout is None:
        raise ConfigError("a sweep needs a number of trials (--trials N), a time budget (--timeout S), or both")
    if trials is not None and trials < 1:
        raise ConfigError(f"trials must be at least 1. Received: trials={trials}")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"the time budget must be positive seconds. Received: timeout={timeout}")


def check_request(fixed: TrainConfig, space_data: Any, trials: int | None, timeout: float | None) -> SearchSpace:
    """Everything about a new sweep that can be checked without the data; the checked space.

    Raises:
        ConfigError (SpaceError): what is wrong, before anything starts.
    """
    check_fixed(fixed)
    check_budget(trials, timeout)
    return parse_space(space_data, sweep_identity(fixed))


def submit(
    models_root: str | os.PathLike,
    dataset_path: str | os.PathLike,
    fixed: TrainConfig,
    space_data: Any,
    trials: int | None,
    timeout: float | None = None,
    corrections: dict | None = None,
    owner: str = LOCAL_USER,
) -> SweepSubmission:
    """Check the request, then find or create its sweep and set its budget for the next launch.

    The same dataset, fixed settings, space and label corrections give the same sweep: a finished one that
    already has `trials` finished trials comes back FINISHED (nothing to run), a running one ACTIVE.
    `corrections` (effective, core.data.corrections) are recorded with the sweep: its trials and the run it
    promotes apply exactly them, whatever is marked later. `owner`: whose sweep it is (its runs are theirs too);
    the same request by someone else is their own sweep.

    Raises:
        ConfigError: a bad space, budget or fixed setting. DatasetError: no usable dataset.
    """
    index = scan_dataset(dataset_path)
    fixed = fixed.for_dataset(index)  # a multi-label dataset's trials learn and are judged as its runs are
    space = check_request(fixed, space_data, trials, timeout)
    store = SweepStore(models_root)
    sweep_id = sweep_id_for(fixed, space, dataset_key(index.fingerprint, corrections), owner)
    spec = {
        "dataset": {
            "path": str(index.root),
            "name": index.name,
            "fingerprint": index.fingerprint,
            "classes": index.classes,
            "images": len(index.entries),
        },
        "fixed": sweep_identity(fixed).to_dict(),
        "space": space.to_dict(),
        "corrections": corrections or {},
        "owner": owner,
    }
    sweep = store.create(sweep_id, spec)
    return _resubmit(store, sweep, trials, timeout)


def resubmit(
    models_root: str | os.PathLike, sweep_id: str, trials: int | None, timeout: float | None = None
) -> SweepSubmission:
    """Continue an existing sweep (by id or a unique prefix), to `trials` finished trials or for `timeout` s."""
    check_budget(trials, timeout)
    store = SweepStore(models_root)
    return _resubmit(store, store.refresh(store.find(sweep_id)), trials, timeout)


def _resubmit(store: SweepStore, sweep: Sweep, trials: int | None, timeout: float | None) -> SweepSubmission:
    sweep = store.refresh(sweep)
    if sweep.active:
        return SweepSubmission(sweep, ACTIVE)
    done = sweep.status.trials_done or 0
    if sweep.state is JobState.DONE and trials is not None and timeout is None and done >= trials:
        return SweepSubmission(sweep, FINISHED)
    folder = store.folder(sweep.sweep_id)
    folder.clear_stop()
    folder.update(
        state=JobState.QUEUED,
        queued_at=time.time(),
        launched_at=None,
        pid=None,
        pid_start=None,
        trials_target=trials,
        timeout_seconds=timeout,
        error=None,
        note=None,
        stage="starting",
        stage_progress=None,
    )
    return SweepSubmission(store.get(sweep.sweep_id), NEW)


def launch(
    submission: SweepSubmission,
    models_root: str | os.PathLike,
    data_root: str | os.PathLike,
    ray: tuple[str, int] | None = None,
) -> SweepSubmission:
    """Start a NEW submission's process detached (it outlives the page); others are returned as they are.
    `ray` (address, workers): its trials run on that many Ray workers of the cluster (core.sweeps.ray)."""
    if submission.outcome != NEW:
        return submission
    store = SweepStore(models_root)
    command = [
        sys.executable,
        "-m",
        "core",
        "sweep",
        "--launched-sweep",
        submission.sweep.sweep_id,
        "--models-dir",
        str(Path(models_root).resolve()),
        "--data-dir",
        str(Path(data_root).resolve()),
        *ray_arguments(ray),
    ]
    store.folder(submission.sweep.sweep_id).launch(command)
    return SweepSubmission(store.get(submission.sweep.sweep_id), NEW)


def ray_arguments(ray: tuple[str, int] | None) -> list[str]:
    """`--ray ADDRESS --ray-workers N` for a sweep on a Ray cluster; nothing for one on this machine."""
    if ray is None:
        return []
    address, workers = ray
    return ["--ray", address, "--ray-workers", str(max(1, int(workers)))]


def sweep_corrections(sweep: Sweep, data_root: str | os.PathLike) -> dict | None:
    """The label corrections a sweep applies: those recorded with it (a sweep from before they were recorded:
    the ones kept for its dataset now)."""
    if "corrections" in sweep.spec:
        return sweep.spec["corrections"] or None

    return dataset_corrections(data_root, sweep.dataset_path, sweep.owner)


def pinned_corrections(sweep: Sweep, data_root: str | os.PathLike) -> str:
    """The `--corrections` value that repeats `sweep` exactly: "none", or a file in its folder holding the very
    corrections it applied (written on first use), so the command does not follow later corrections."""
    applied = sweep_corrections(sweep, data_root)
    if not applied:
        return "none"
    path = sweep.directory / CORRECTIONS_FILE
    if not path.exists():
        write_json_atomic(path, applied)
    return str(path)


def sweep_command(
    dataset: str | os.PathLike,
    fixed: TrainConfig,
    space: dict[str, Any],
    trials: int | None,
    timeout: float | None = None,
    python: str = "python",
    corrections: str | None = None,
    ray: tuple[str, int] | None = None,
) -> str:
    """`python -m core sweep DATASET --trials N --space '{...}' --flag value ...`, quoted for a POSIX shell."""

    args = [python, "-m", "core", "sweep", *train_arguments(str(dataset), sweep_identity(fixed), corrections)]
    if trials is not None:
        args += ["--trials", str(trials)]
    if timeout is not None:
        args += ["--timeout", f"{timeout:g}"]
    args += ["--space", json.dumps(space, separators=(",", ":")), *ray_arguments(ray)]
    return shlex.join(args)


def stop(models_root: str | os.PathLike, sweep_id: str) -> None:
    """Ask a sweep to stop: the trial training now is cut short and tried again when it continues."""
    SweepStore(models_root).request_stop(sweep_id)


def best_config(sweep: Sweep, fine_tune: dict[str, Any] | None = None) -> tuple[TrainConfig, dict[str, Any]]:
    """The best trial's full TrainConfig (with optional fine-tune settings on top) and its row.

    Raises:
        InvalidInput: no trial has completed yet.
    """
    best = sweep.trials().get("best")
    if not best:
        raise InvalidInput(f"sweep {sweep.sweep_id} has no completed trial yet: there is no best to train")
    config = TrainConfig.from_dict(best["config"])
    if fine_tune:
        config = config.replace(**fine_tune)
    return config, best


def promotion_label(sweep: Sweep, best: dict[str, Any]) -> tuple[str, str]:
    """The name and note a promoted run gets, so it is recognisable on Train and Evaluate."""
    name = f"best of sweep {sweep.sweep_id[:6]} (trial {best['number']})"
    measured = (
        f"validation mAP {best['val_map']:.3f}"
        if best.get("val_map") is not None
        else f"validation loss {best['val_loss']:.4f}, validation accuracy {best['val_accuracy']:.3f}"
    )
    note = (
        f"Trained from the best of {sweep.status.trials_done or '?'} trials of sweep {sweep.sweep_id} "
        f"({measured}); chosen on the validation split only."
    )
    return name, note


def promote(
    models_root: str | os.PathLike,
    data_root: str | os.PathLike,
    sweep_id: str,
    fine_tune: dict[str, Any] | None = None,
    background: bool = True,
):
    """Train the best trial's settings as an ordinary run: a `core.train.jobs` submission.

    In the background (the page) the run is launched detached; otherwise (the CLI) it is only
    submitted and the caller executes it. Either way the run evaluates on the test split when it
    ends, and the sweep records it.
    """

    store = SweepStore(models_root)
    sweep = store.find(sweep_id)
    config, best = best_config(sweep, fine_tune)
    corrections = sweep_corrections(sweep, data_root)
    owner = sweep.owner  # the best trial's run is the sweep's owner's, whoever pressed the button
    if background:
        submission = jobs.launch(
            sweep.dataset_path, config, models_root, data_root, corrections=corrections or {}, owner=owner
        )
    else:
        submission = jobs.submit(
            RunStore(models_root), sweep.dataset_path, config, corrections=corrections, owner=owner
        )
    runs = RunStore(models_root)
    if not runs.get(submission.run_id).name:
        name, note = promotion_label(sweep, best)
        runs.set_label(submission.run_id, name=name, note=note)
    store.update(sweep.sweep_id, promoted_run=submission.run_id, promoted_trial=best["number"])
    return submission
