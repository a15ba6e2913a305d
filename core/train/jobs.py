"""Training requests: find or create the run, the device's lock, start it in the background, stop it.

`submit` decides what a training request means (a finished run is a cache hit, an active one is
left alone, anything else is (re)created). `device_lock` lets one run per accelerator train at a
time (others wait as "queued"); the run itself is driven by core.run_job.execute. `launch` starts
`python -m core train` as a detached process that owns the run folder, so a page returns at once and
the run outlives the browser tab.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from core.data.corrections import Corrections, dataset_key
from core.data.datasets import DatasetError, DatasetIndex, scan_dataset
from core.errors import Cancelled
from core.processes import JobState, process_alive
from core.runs.record import LOCAL_OWNER, Run, RunUnreadable, new_run_record
from core.runs.store import RunStore
from core.settings.config import TrainConfig, run_id_for
from core.sharing.people import layer_of, same_person
from core.tracking.background import track_later
from core.train.queue import RAY_LINE, check_share

log = logging.getLogger("flora")
CACHED, ACTIVE, NEW = "cached", "active", "new"
LOCK_POLL_SECONDS = 1.0


class StopWhileWaiting(Cancelled):
    """A queued run was asked to stop before it got the device."""


@dataclass
class Submission:
    """What a training request found: a finished run (cached), an active one, or a new one."""

    run_id: str
    outcome: str  # CACHED | ACTIVE | NEW
    run: Run
    index: DatasetIndex
    config: TrainConfig

    @property
    def cached(self) -> bool:
        return self.outcome == CACHED


def submit(
    store: RunStore,
    dataset_path: str | os.PathLike,
    config: TrainConfig,
    force: bool = False,
    corrections: dict | None = None,
    owner: str = LOCAL_OWNER,
    max_queued: int | None = None,
) -> Submission:
    """Find the run for (config, dataset, label corrections) or create it queued, owned by `owner`.

    A finished run is returned as a cache hit unless `force`; a queued or running one whose
    process is alive is returned as active (never trained twice at once); a failed or stopped
    one is reset and trained again. `corrections` (core.data.corrections, the effective ones) are
    recorded in the run and are part of its id, with whose they are. The same settings and data asked for by
    someone other than the run's owner give that person a run of their own (`personal_run_id`): when the
    owner's run has finished, a copy of it with its files hard-linked (nothing trained again, `reused_from`
    says whose); while it trains, that run comes back as active.

    Raises:
        TooManyQueued: `owner` already has `max_queued` runs waiting for the device.
    """

    index = scan_dataset(dataset_path)
    config = config.for_dataset(index)  # the dataset's kind is the run's task (a multi-label one: sigmoid, BCE, mAP)
    base_id = run_id_for(config, dataset_key(index.fingerprint, corrections))
    run_id, run = base_id, _readable(store, base_id)
    base = run
    if base is not None and not same_person(base.owner, owner):  # a classmate's: this person's own id
        run_id = personal_run_id(base_id, owner)
        run = _readable(store, run_id)
    if run is not None:
        if run.state is JobState.DONE and run.has_model and not force:
            return Submission(run_id, CACHED, run, index, config)
        if run.active:
            return Submission(run_id, ACTIVE, run, index, config)
    if base is not None and run_id != base_id and not force:
        if base.state is JobState.DONE and base.has_model:  # the same computation, finished: their own copy
            return Submission(run_id, CACHED, store.reuse(base_id, run_id, owner), index, config)
        if base.active:  # being trained now for someone else: never twice at once
            return Submission(base_id, ACTIVE, base, index, config)
    check_share(store.list(), owner, max_queued)
    record = new_run_record(index, config, owner)
    if corrections:
        record["dataset"]["corrections"] = corrections
        record["dataset"]["corrections_by"] = layer_of(owner)
    run = store.create(run_id, record)
    return Submission(run_id, NEW, run, index, config)


def _readable(store: RunStore, run_id: str) -> Run | None:
    if not store.exists(run_id):
        return None
    try:
        return store.refresh(store.get(run_id))
    except RunUnreadable as e:  # a folder cut short by a crash or a bad edit: trained again from scratch
        log.warning("%s; training it again", e)
        return None


def personal_run_id(run_id: str, owner: str) -> str:
    """The id of `owner`'s own run of the same settings and data as `run_id` when that one is someone else's."""
    return hashlib.sha256(f"{run_id}\0owner:{layer_of(owner)}".encode()).hexdigest()[:12]


def dataset_corrections(
    data_root: str | os.PathLike, dataset_path: str | os.PathLike, person: str = LOCAL_OWNER
) -> dict | None:
    """The label corrections `person` keeps for this dataset folder that change training (None: none)."""

    return Corrections.load(data_root, dataset_path, person).effective() or None


def submission_for_launched(store: RunStore, run_id: str) -> Submission:
    """The submission of a run `launch` created: its stored config, its dataset re-scanned.

    Raises:
        DatasetError: the dataset changed between launch and start.
    """
    run = store.get(run_id)
    index = scan_dataset(run.dataset_path)
    if index.fingerprint != run.dataset_fingerprint:
        raise DatasetError(f"the dataset at {run.dataset_path} changed after the run was launched; launch it again")
    return Submission(run_id, NEW, run, index, run.train_config)


@contextlib.contextmanager
def device_lock(
    root: str | os.PathLike,
    name: str,
    should_stop: Callable[[], bool] = lambda: False,
    on_wait: Callable[[], None] = lambda: None,
    my_turn: Callable[[], bool] = lambda: True,
) -> Iterator[None]:
    """Hold the lock of accelerator `name` in the run store (waits while another run has it).

    A waiting caller tries the lock only while `my_turn()` says it is first in line (core.train.queue).

    Raises:
        StopWhileWaiting: `should_stop` returned True before the lock was free.
    """
    import fcntl

    Path(root).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(root) / f".lock-{name}", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        waiting = False
        while True:
            try:
                if not my_turn():
                    raise BlockingIOError("another run is first in line")
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waiting:
                    waiting = True
                    on_wait()
                if should_stop():
                    raise StopWhileWaiting("stopped while waiting for the device") from None
                time.sleep(LOCK_POLL_SECONDS)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def launch(
    dataset_path: str | os.PathLike,
    config: TrainConfig,
    models_dir: str | os.PathLike,
    data_root: str | os.PathLike,
    force: bool = False,
    corrections: dict | None = None,
    owner: str = LOCAL_OWNER,
    max_queued: int | None = None,
    ray_address: str | None = None,
    track: str | None = None,
) -> Submission:
    """Start training in a detached background process and return at once. With `ray_address` that process
    submits the run as a task to the Ray cluster and waits for it (core/train/ray.py). `track`: an MLflow
    tracking URI the run is logged to when it ends (core.tracking); a cached run not logged there yet is logged by
    a background process (core.tracking.background).

    A finished run comes back as cached and an active one as active; neither starts a process.
    `corrections`: the label corrections to apply (None: the ones kept for the dataset folder).
    """
    store = RunStore(models_dir)
    if corrections is None:
        corrections = dataset_corrections(data_root, dataset_path, owner)
    submission = submit(
        store, dataset_path, config, force=force, corrections=corrections, owner=owner, max_queued=max_queued
    )
    if submission.outcome == CACHED and track:  # nothing trains, so nothing would log it: log it in the background
        track_later(store, submission.run_id, track)
    if submission.outcome != NEW:
        return submission
    command = [
        sys.executable,
        "-m",
        "core",
        "train",
        "--launched-run",
        submission.run_id,
        "--models-dir",
        str(Path(models_dir).resolve()),
        "--data-dir",
        str(Path(data_root).resolve()),
    ]
    if track:
        command += ["--track", track]
    if ray_address:
        command += ["--ray", ray_address]
        store.set_status(submission.run_id, line=RAY_LINE)  # in the cluster's line from the start, not this device's
    store.launch(submission.run_id, command)  # detached: survives the server and the tab
    submission.run = store.get(submission.run_id)
    return submission


def stop(store: RunStore, run_id: str) -> None:
    """Ask a run to stop: it finishes its current batch, keeps its best weights and says "stopped"."""
    store.request_stop(run_id)


def kill(store: RunStore, run_id: str) -> None:
    """End a run's process now (for a process that no longer reacts to stop)."""
    run = store.get(run_id)
    pid = run.status.pid
    if pid and process_alive(pid, run.status.pid_start):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(int(pid)), signal.SIGKILL)
    store.set_status(run_id, state=JobState.STOPPED, finished_at=time.time(), stage=None, note="killed")


def install_stop_on_sigterm(store: RunStore, run_id: str) -> None:
    """Turn SIGTERM into a stop request, so `kill <pid>` stops the run gracefully."""

    def handler(signum, frame):
        store.request_stop(run_id)

    signal.signal(signal.SIGTERM, handler)
