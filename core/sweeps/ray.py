"""Sweeps across Ray workers: the trials run in parallel on the cluster, the Optuna study shared.

    python -m core sweep DATA --trials 8 ... --ray ADDRESS --ray-workers 2

The sweep's own process extracts the backbone features once (as for a local sweep) and writes them to the
sweep's folder; then it asks Ray for `--ray-workers` tasks (a GPU each where the cluster has GPUs, else a
CPU), each of which loads those features and the same split, opens the same study (the sweep's SQLite file
on storage every node mounts: Optuna's RDB storage is made for several processes) and runs its share of the
remaining trials. Each trial records the worker that ran it (the Sweep page shows it). Parallel TPE is not
the serial one: a worker samples without the results of trials still running elsewhere, so the same seed and
trial count can pick another best than one worker would (said on the page and in docs/PERFORMANCE.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from core.cluster import connect
from core.sweeps.store import FEATURES_FILE
from core.sweeps.trials import trial_worker

log = logging.getLogger("flora")
WAIT_POLL_SECONDS = 2.0


def shares(remaining: int, workers: int) -> list[int]:
    """`remaining` trials dealt to `workers` (the first ones get the extra); no empty shares."""
    workers = max(1, min(workers, remaining))
    return [remaining // workers + (1 if i < remaining % workers else 0) for i in range(workers)]


def run_trials_on_ray(
    store,
    sweep,
    data_root: Path,
    features: dict[str, np.ndarray],
    address: str | None,
    workers: int,
    remaining: int,
    deadline: float | None = None,
) -> list[dict[str, Any]]:
    """Save the features where every node can read them, run `remaining` trials on `workers` Ray tasks, wait;
    returns each worker's report. `deadline` (epoch seconds): no worker starts a trial after it (the sweep's
    time budget). Raises RuntimeError when a worker failed."""
    import ray  # optional: only a sweep on a cluster imports it

    folder = store.folder(sweep.sweep_id)
    path = Path(folder.directory) / FEATURES_FILE
    np.savez(path, **features)
    address = connect(address)
    cluster = ray.cluster_resources()
    asked = {"num_gpus": 1, "num_cpus": 1} if cluster.get("GPU", 0) >= 1 else {"num_gpus": 0, "num_cpus": 1}
    task = ray.remote(max_retries=0)(trial_worker).options(**asked)
    dealt = shares(remaining, workers)
    folder.update(stage=f"{remaining} trials on {len(dealt)} Ray workers ({address})")
    log.info("sweep %s: %d trials on %d Ray workers at %s: %s", sweep.sweep_id, remaining, len(dealt), address, dealt)
    refs = [
        task.remote(str(store.models_root), str(data_root), sweep.sweep_id, str(path), share, i + 1, deadline)
        for i, share in enumerate(dealt)
    ]
    try:
        pending = list(refs)
        while pending:
            _, pending = ray.wait(pending, timeout=WAIT_POLL_SECONDS, num_returns=len(pending))
        return ray.get(refs)
    except ray.exceptions.RayError as e:
        raise RuntimeError(f"a Ray worker of the sweep failed: {type(e).__name__}: {str(e).splitlines()[-1]}") from None
    finally:
        path.unlink(missing_ok=True)
