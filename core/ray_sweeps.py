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
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.ray_cluster import connect

log = logging.getLogger("flora")
FEATURES_FILE = "features.npz"
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
    import ray

    folder = store.folder(sweep.sweep_id)
    path = Path(folder.directory) / FEATURES_FILE
    np.savez(path, **features)
    address = connect(address)
    cluster = ray.cluster_resources()
    asked = {"num_gpus": 1, "num_cpus": 1} if cluster.get("GPU", 0) >= 1 else {"num_gpus": 0, "num_cpus": 1}
    task = ray.remote(max_retries=0)(_trial_worker).options(**asked)
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


def _trial_worker(
    models_root: str,
    data_root: str,
    sweep_id: str,
    features_file: str,
    trials: int,
    number: int,
    deadline: float | None = None,
) -> dict[str, Any]:
    """On a Ray worker: the sweep's split and cached features, the shared study, `trials` trials of it."""
    import optuna
    import ray

    from core.datasets import scan_dataset
    from core.paths import cache_dir
    from core.sweeps.launch import sweep_corrections
    from core.sweeps.results import Publisher
    from core.sweeps.search import Objective, SweepStopped, open_study
    from core.sweeps.store import SweepStore
    from core.train.trainer import StageReporter
    from core.train.training import load_training_data

    worker = f"worker {number} on {ray.util.get_node_ip_address()} ({ray.get_runtime_context().get_node_id()[:8]})"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    store = SweepStore(models_root)
    sweep = store.get(sweep_id)
    folder = store.folder(sweep_id)
    fixed, space = sweep.fixed, sweep.space
    index = scan_dataset(sweep.dataset_path)
    corrections = sweep_corrections(sweep, Path(data_root))
    quiet = StageReporter(lambda **fields: None)
    data = load_training_data(
        index, fixed, cache_dir(data_root), quiet, folder.stop_requested, False, 1, corrections=corrections
    )
    with np.load(features_file) as saved:
        features = {name: saved[name] for name in saved.files}
    study, _ = open_study(sweep)
    # Each worker its own seed (the same one would draw the same settings in every worker), and the constant
    # liar: a trial running elsewhere counts as a poor result, so workers spread out instead of piling up.
    drawn = len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=fixed.seed + 7919 * number + drawn, constant_liar=True)
    publisher = Publisher(store, sweep_id, fixed, space)
    objective = Objective(store, sweep_id, fixed, space, data, features, 1, publisher)

    def tagged(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", worker)
        return objective(trial)

    def stop_when_asked(study: optuna.Study, trial) -> None:
        publisher.publish(study)
        if folder.stop_requested():
            study.stop()

    started = time.perf_counter()
    budget = None if deadline is None else max(0.0, deadline - time.time())
    study.optimize(tagged, n_trials=trials, timeout=budget, callbacks=[stop_when_asked], catch=(SweepStopped,))
    return {"worker": worker, "trials": trials, "seconds": time.perf_counter() - started}
