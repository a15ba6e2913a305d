"""A training run as a job, from its place in line to how it ended: the one driver of a run.

`execute` waits for the device (core.train.jobs.device_lock; a Ray task has its node instead), fits
(core.train.training.train_run), writes what the run keeps from the fit (core.results.after_fit) and records
how it ended: done, stopped (any `Cancelled`, caught here once), or failed with the error. `python -m core
train`, a Ray task (`ray_task`), retraining, a sweep's promotion and the benches all train through it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any

from core.device import describe, nvidia_gpus, without_cuda_noise
from core.errors import Cancelled
from core.paths import cache_dir
from core.processes import JobState
from core.runs.record import RunStatus
from core.runs.store import RunStore
from core.train import queue
from core.train.jobs import Submission, device_lock, submission_for_launched

log = logging.getLogger("flora")


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
        from core.train.trainer import TrainingJob  # heavy: keras

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
                my_turn=lambda: queue.my_turn(store, run_id),
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
            return train_and_keep(job)
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


def train_and_keep(job) -> RunStatus:
    """Fit run `job.run_id` (a core.train.trainer.TrainingJob), write what it keeps, record it as done or stopped.

    Raises:
        Whatever failed it (the caller records the failure). Cancelled: stopped before a first epoch ended.
    """
    from core.results.after_fit import finish_run  # heavy: sklearn
    from core.train.trainer import StageReporter  # heavy: keras
    from core.train.training import train_run  # heavy: keras

    fit = train_run(job)
    summary = finish_run(
        job.store, job.run_id, fit, job.index, job.cache_root, StageReporter.for_run(job.store, job.run_id)
    )
    note = None
    asked = job.store.stop_requested_at(job.run_id)
    if asked is not None and not fit.stopped:  # a stop that landed as training ended by itself: say so
        note = (
            f"a stop was asked for at {time.strftime('%H:%M:%S', time.localtime(asked))}, as training was "
            "ending on its own: it finished as planned (its best weights were kept and evaluated)"
        )
    return job.store.set_status(
        job.run_id,
        note=note,
        state=JobState.STOPPED if fit.stopped else JobState.DONE,
        finished_at=time.time(),
        stage=None,
        stage_progress=None,
        accuracy=summary["accuracy"],
        macro_f1=summary["macro"]["f1"],
        map=summary.get("map"),
        best_epoch=fit.best_epoch,
        epochs_done=fit.epochs_done,
    )


def ray_task(models_root: str, data_root: str, run_id: str) -> dict[str, Any]:
    """On the node Ray chose (core.train.ray.train_on_ray): train the run into the shared run folder, logging into
    its train.log."""
    import ray

    node = f"Ray node {ray.util.get_node_ip_address()} ({ray.get_runtime_context().get_node_id()[:8]})"
    store = RunStore(models_root)
    handler = logging.FileHandler(store.log_path(run_id))
    handler.setFormatter(logging.Formatter("%(asctime)s flora: %(message)s", "%H:%M:%S"))
    flora = logging.getLogger("flora")
    flora.addHandler(handler)
    flora.setLevel(logging.INFO)
    try:
        log.info("run %s: training on %s (pid %d)", run_id, node, os.getpid())
        submission = submission_for_launched(store, run_id)
        status = execute(store, submission, data_root, console=False, on_ray=node)
        return {"state": str(status.state), "node": node, "accuracy": status.accuracy}
    finally:
        flora.removeHandler(handler)
        handler.close()
