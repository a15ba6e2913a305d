"""Training runs on a Ray cluster: the run is a Ray task asking for its device, and Ray places it.

    python -m core train DATA ... --ray ADDRESS        (or FLORA_RAY_ADDRESS; the Train page's field)

The run is submitted to the run store as always (the same id, folder and owner); then, instead of training
in this process, this process waits in Flora's fair line for the cluster (core.train.queue: round-robin
between people) until it is first and the cluster has room for one more run (its GPUs, or its CPUs over
the CPUs a run asks for; FLORA_RAY_MAX_RUNS overrides, for a cluster that grows on demand). Only then does
it ask Ray for one task with the run's resources (`num_gpus=1` where the cluster has GPUs, else
`num_cpus`), and Ray's scheduler starts it on a node with a free device. So one person's ten runs do not
fill Ray's queue ahead of everyone else's, as they would if each were handed to Ray at once. The task
trains the run exactly as a local process would, writing the same run folder (models/ and data/ must be on
storage every node mounts) and appending to the run's own log, which names the node. This process stays the
run's owner while it waits (its pid is what the app watches): Stop works as ever (in Flora's line or queued
on Ray the run is withdrawn; on a node the task reads the stop request from the run folder), and a node
that dies marks the run failed with the reason, said once; Ray does not retry it (a run restarted on
another node would start over).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.cluster import connect
from core.errors import Unavailable
from core.processes import JobState
from core.runs.store import RunStore
from core.train.queue import RAY_LINE, fair_order, in_flight, live_runs, ordinal

log = logging.getLogger("flora")
WAIT_POLL_SECONDS = 2.0


def resources(cluster: dict[str, float], cpus: int | None = None) -> dict[str, float]:
    """What the run's task asks Ray for: one GPU where the cluster has any, else `cpus` CPUs (default 1)."""
    if cluster.get("GPU", 0) >= 1:
        return {"num_gpus": 1, "num_cpus": 1}
    return {"num_gpus": 0, "num_cpus": max(1, cpus or 1)}


def capacity(cluster: dict[str, float], asked: dict[str, float]) -> int:
    """How many runs the cluster trains at once: its GPUs, or its CPUs over what one run asks for (at least 1;
    FLORA_RAY_MAX_RUNS overrides, for a cluster whose autoscaler adds nodes when tasks wait)."""
    override = os.environ.get("FLORA_RAY_MAX_RUNS", "").strip()
    if override:
        return max(1, int(override))
    if asked["num_gpus"]:
        return max(1, int(cluster.get("GPU", 0) // asked["num_gpus"]))
    return max(1, int(cluster.get("CPU", 0) // asked["num_cpus"]))


def wait_for_turn(store: RunStore, run_id: str, room: Any, poll_seconds: float = WAIT_POLL_SECONDS) -> bool:
    """Wait in Flora's line for the cluster until `run_id` is first and fewer runs than `room()` are in flight;
    True then, False when the run was asked to stop while waiting. Says its place in the run's stage."""
    said = None
    while True:
        if store.stop_requested(run_id):
            return False
        runs = live_runs(store)
        order = [run.run_id for run in fair_order(runs, RAY_LINE)]
        busy = len(in_flight(runs))
        limit = room()
        if (not order or order[0] == run_id) and busy < limit:
            return True
        place = order.index(run_id) + 1 if run_id in order else 1
        stage = f"waiting for the Ray cluster: {ordinal(place)} in line ({busy} of the {limit} run(s) it takes at once)"
        if stage != said:
            store.set_status(run_id, stage=stage)
            log.info("run %s: %s", run_id, stage)
            said = stage
        time.sleep(poll_seconds)


def train_on_ray(
    store: RunStore,
    run_id: str,
    data_root: str | os.PathLike,
    address: str | None,
    task: Callable[[str, str, str], dict[str, Any]],
) -> dict[str, Any]:
    """Run `run_id` (already submitted to `store`) as a Ray task, on its turn, and wait for it; returns what it
    said (its "state" is "stopped" when asked to stop before it reached a node). `task(models_root, data_root,
    run_id)` trains it on the node (core.run_job.ray_task: the run's job, as a local process drives it).

    Raises:
        Unavailable: the task failed (the run is marked failed with the reason, naming the node where known).
    """
    import ray

    address = connect(address)
    cpus = int(os.environ.get("FLORA_RAY_CPUS", "0") or 0) or None
    asked = resources(ray.cluster_resources(), cpus)
    what = "a GPU" if asked["num_gpus"] else f"{asked['num_cpus']:g} CPU(s)"
    store.claim(run_id, state=JobState.QUEUED, error=None, line=RAY_LINE, submitted_at=None, stage="in line for Ray")
    if not wait_for_turn(store, run_id, lambda: capacity(ray.cluster_resources(), asked)):
        return _stopped(store, run_id, "stopped while waiting in line for the Ray cluster")
    store.set_status(run_id, submitted_at=time.time(), stage=f"queued on Ray ({address}): waiting for {what}")
    log.info("run %s: submitted to Ray at %s, asking for %s", run_id, address, what)
    remote = ray.remote(max_retries=0)(task).options(**asked, name=f"flora-run-{run_id}")
    ref = remote.remote(str(Path(store.root).resolve()), str(Path(data_root).resolve()), run_id)
    while True:
        ready, _ = ray.wait([ref], timeout=WAIT_POLL_SECONDS)
        if ready:
            break
        if store.stop_requested(run_id) and not store.get(run_id).status.node:  # not on a node yet: withdraw it
            ray.cancel(ref, force=True)
            return _stopped(store, run_id, "stopped while queued on the Ray cluster, before a node took it")
    try:
        result = ray.get(ref)
    except Exception as e:  # the node died, the worker crashed, or the run itself failed there
        node = store.get(run_id).status.node or "its Ray node"
        died = isinstance(e, ray.exceptions.NodeDiedError | ray.exceptions.WorkerCrashedError)
        died = died or "node" in type(e).__name__.lower() or "died" in str(e).lower()
        reason = (
            f"{node} died while training it ({type(e).__name__}); Ray did not retry it (it would start over): "
            "train it again"
            if died
            else _short(e)
        )
        current = store.get(run_id).status
        if current.state not in (JobState.FAILED, JobState.STOPPED, JobState.DONE) or died:
            store.set_status(run_id, state=JobState.FAILED, finished_at=time.time(), stage=None, error=reason)
        raise Unavailable(reason) from None
    log.info("run %s: %s on %s", run_id, result["state"], result["node"])
    return result


def _stopped(store: RunStore, run_id: str, note: str) -> dict[str, Any]:
    log.info("run %s %s", run_id, note)
    store.set_status(run_id, state=JobState.STOPPED, finished_at=time.time(), stage=None, error=None, note=note)
    return {"state": str(JobState.STOPPED), "node": None, "accuracy": None}


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1] if text else ''}"[:500]
