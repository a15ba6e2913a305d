"""Training as a job: find or create the run, wait for the device, train, record how it ended.

`submit` decides what a training request means (a finished run is a cache hit, an active one is
left alone, anything else is (re)created). `execute` trains in this process, one run per
accelerator at a time (a file lock; others wait as "queued"). `launch` starts `python -m core
train` as a detached process that owns the run folder, so a page returns at once and the run
outlives the browser tab.
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
from core.device import describe, nvidia_gpus, without_cuda_noise
from core.errors import Cancelled
from core.paths import cache_dir
from core.processes import JobState, process_alive
from core.runs.record import LOCAL_OWNER, Run, RunStatus, RunUnreadable, new_run_record
from core.runs.store import RunStore
from core.settings.config import TrainConfig, run_id_for
from core.sharing.people import layer_of, same_person
from core.train.queue import RAY_LINE, check_share, my_turn

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


def execute(
    store: RunStore,
    submission: Submission,
    data_root: str | os.PathLike,
    console: bool = True,
    ingest_workers: int | None = None,
    hosts=None,
    on_ray: str | None = None,
) -> RunStatus:
    """Train the submitted run in this process; return its final status. `hosts` (a `MultiHost`): phase 2
    across the processes of a multi-host run. `on_ray` (the node, in words): a Ray task trains it, so the
    process that submitted it stays its owner (its pid, which the app watches) and Ray's scheduler, not
    this machine's device lock, decides when the device is free.

    Raises:
        Exception: whatever failed the run, after recording it as failed with the error.
    """

    with without_cuda_noise():  # Keras and its framework load here: on a CPU-only machine, quietly
        from core.train.training import TrainingJob, train_run  # heavy: keras

    run_id = submission.run_id
    if on_ray:
        store.set_status(run_id, state=JobState.QUEUED, error=None, node=on_ray)
    else:
        store.claim(run_id, state=JobState.QUEUED, error=None)
    try:
        with without_cuda_noise():
            device = describe()
        store.set_status(run_id, device=device.label)
        if device.kind == "cpu" and nvidia_gpus():
            log.warning(
                "an NVIDIA driver is here but %s sees no GPU: training on the CPU (%s); `python -m core device` "
                "says why and the fix",
                device.backend,
                device.name,
            )
        elif device.kind == "cpu":
            log.info("no GPU found: training on the CPU (%s)", device.name)
        lock = (
            contextlib.nullcontext()
            if on_ray
            else device_lock(
                store.root,
                device.lock_name,
                should_stop=lambda: store.stop_requested(run_id),
                on_wait=lambda: _waiting(store, run_id, device.label),
                my_turn=lambda: my_turn(store, run_id),
            )
        )
        with lock:
            job = TrainingJob(
                store,
                run_id,
                submission.index,
                submission.config,
                cache_dir(data_root),
                console=console,
                ingest_workers=ingest_workers,
                device=device,
                hosts=hosts,
            )
            return train_run(job)
    except Cancelled as e:  # a stop on request, wherever it was noticed (decoding, a fit, the device's line)
        log.info("run %s stopped: %s", run_id, e)
        return store.set_status(
            run_id,
            state=JobState.STOPPED,
            finished_at=time.time(),
            stage=None,
            stage_progress=None,
            error=None,
            note=str(e),
        )
    except KeyboardInterrupt:
        store.set_status(run_id, state=JobState.STOPPED, finished_at=time.time(), stage=None, note="interrupted")
        raise
    except BaseException as e:
        log.exception("run %s failed", run_id)
        store.set_status(
            run_id,
            state=JobState.FAILED,
            finished_at=time.time(),
            stage=None,
            error=f"{type(e).__name__}: {e}",
        )
        raise


def _waiting(store: RunStore, run_id: str, device: str) -> None:
    log.info("another run is using %s; waiting (queued)", device)
    store.set_status(run_id, stage="waiting for the device: another run is training")


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
    tracking URI the run is logged to when it ends (core.tracking).

    A finished run comes back as cached and an active one as active; neither starts a process.
    `corrections`: the label corrections to apply (None: the ones kept for the dataset folder).
    """
    store = RunStore(models_dir)
    if corrections is None:
        corrections = dataset_corrections(data_root, dataset_path, owner)
    submission = submit(
        store, dataset_path, config, force=force, corrections=corrections, owner=owner, max_queued=max_queued
    )
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
