"""The sweep process: features extracted once, then Optuna trials that each train only the head.

`run_sweep` decodes the images and extracts the pooled backbone features through the feature
cache (every view any trial may use), exactly as a run would, then lets Optuna (TPE sampler
seeded with the sweep's seed, median pruner on the validation loss per epoch, its study in the
sweep folder's SQLite file) draw head settings. Each trial (core.sweeps.trials) is
`core.train.trainer.fit_head` on those features: the same fit as phase 1 of a run. The validation
split chooses; the test split is not even loaded. With `ray`, the trials run on a cluster's workers
(core.sweeps.ray) from the same preparation.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import keras
import optuna
from optuna.trial import TrialState

from core.device import describe, dtype_policy, input_workers, mixed_precision_policy
from core.errors import Cancelled, InvalidInput
from core.network.model import classifier_for
from core.paths import cache_dir
from core.processes import JobState
from core.sweeps.ray import run_trials_on_ray
from core.sweeps.results import Publisher, trial_row
from core.sweeps.store import Sweep, SweepStatus, SweepStore
from core.sweeps.trials import (
    FINISHED,
    Objective,
    SweepStopped,
    checked_dataset,
    count,
    open_study,
    training_data,
)
from core.train.distribute import data_parallel
from core.train.jobs import device_lock
from core.train.trainer import Extraction, StageReporter, extraction_batch_size, head_features

log = logging.getLogger("flora")


def run_sweep(
    store: SweepStore,
    sweep_id: str,
    data_root: str | Path,
    console: bool = False,
    workers: int | None = None,
    ray: tuple[str | None, int] | None = None,
) -> SweepStatus:
    """Search in this process until the target, the time budget or a stop; the final status. `ray`: (address,
    workers) to run the trials on a Ray cluster's workers instead (core/sweeps/ray.py).

    Raises:
        Exception: whatever failed the sweep, after recording it as failed with the error.
    """
    folder = store.folder(sweep_id)
    folder.claim(state=JobState.QUEUED, error=None, note=None, finished_at=None, trial_running=None)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # one line per trial comes from us instead
    # Every trial is a new head, so TensorFlow traces its step anew: expected, not worth a warning.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        device = describe()
        folder.update(device=device.label)
        with device_lock(
            store.models_root,
            device.lock_name,
            should_stop=folder.stop_requested,
            on_wait=lambda: folder.update(stage="waiting for the device: a run is training"),
        ):
            return _search(store, store.get(sweep_id), Path(data_root), device, console, workers, ray)
    except Cancelled as e:
        log.info("sweep %s stopped: %s", sweep_id, e)
        return folder.update(
            state=JobState.STOPPED,
            finished_at=time.time(),
            stage=None,
            stage_progress=None,
            trial_running=None,
            note=f"{e}; launch it again to continue (finished trials are kept)",
        )
    except KeyboardInterrupt:
        folder.update(
            state=JobState.STOPPED, finished_at=time.time(), stage=None, trial_running=None, note="interrupted"
        )
        raise
    except BaseException as e:
        log.exception("sweep %s failed", sweep_id)
        folder.update(
            state=JobState.FAILED,
            finished_at=time.time(),
            stage=None,
            trial_running=None,
            error=f"{type(e).__name__}: {e}",
        )
        raise


def _search(store: SweepStore, sweep: Sweep, data_root: Path, device, console: bool, workers, ray=None) -> SweepStatus:
    folder = store.folder(sweep.sweep_id)
    fixed, space = sweep.fixed, sweep.space
    index = checked_dataset(sweep)
    folder.update(state=JobState.RUNNING, started_at=time.time())
    report = StageReporter(folder.update)
    started = time.perf_counter()
    views = space.max_views(fixed)
    keras.utils.set_random_seed(fixed.seed)  # the order a run follows, so the backbone (and its features) match
    data = training_data(sweep, index, data_root, report, folder.stop_requested, console, workers)
    folder.update(split={**data.split.sizes(), "source": data.split.source})
    policy = mixed_precision_policy(device)
    with dtype_policy(policy), data_parallel(device) as parallel:
        report("building model", force=True)
        model = classifier_for(fixed, data.num_classes, models_dir=store.models_root)
        extraction = Extraction(
            cache_dir(data_root),
            input_workers(device),
            parallel.replicas,
            extraction_batch_size(device, fixed, parallel.replicas),
            report,
            folder.stop_requested,
            console,
        )
        base = fixed.replace(augmented_views=views) if views else fixed
        features = head_features(model, data, base, extraction, views, include_test=False)  # never the test split
        del model
        folder.update(features_seconds=time.perf_counter() - started)
        log.info(
            "sweep %s: features of %d train images x %d view(s) and %d validation images in %.1f s",
            sweep.sweep_id,
            len(data.split.train),
            len(features["train"]),
            len(data.split.val),
            time.perf_counter() - started,
        )
        study, storage = open_study(sweep)
        _retry_interrupted(study, storage)
        if not study.trials:  # the first trial: the settings the person started from (where inside the space)
            start = space.start_values(fixed)
            if start:
                study.enqueue_trial(start, user_attrs={"note": "your starting settings"})
        publisher = Publisher(store, sweep.sweep_id, fixed, space)
        if ray is not None:
            return _optimize_on_ray(store, sweep, data_root, study, features, publisher, *ray)
        objective = Objective(store, sweep.sweep_id, fixed, space, data, features, parallel.replicas, publisher)
        return _optimize(store, sweep.sweep_id, study, objective, publisher)


def _optimize_on_ray(store, sweep: Sweep, data_root: Path, study, features, publisher, address, workers: int):
    """The remaining trials on Ray workers sharing the study; the sweep's final status."""
    folder = store.folder(sweep.sweep_id)
    status = folder.read()
    target, timeout = status.trials_target, status.timeout_seconds
    if target is None:
        raise InvalidInput("a sweep on Ray needs a trial count (--trials) to share out among its workers")
    remaining = target - count(study, FINISHED)
    deadline = None if timeout is None else time.time() + timeout
    if remaining > 0:
        reports = run_trials_on_ray(store, sweep, data_root, features, address, workers, remaining, deadline)
        for report in reports:
            log.info("sweep %s: %s ran %d trial(s) in %.1f s", sweep.sweep_id, *report.values())
    study = open_study(sweep)[0]  # what every worker wrote
    publisher.publish(study, importance=True)
    if folder.stop_requested():
        raise SweepStopped(f"stopped after {count(study, FINISHED)} finished trials")
    done = count(study, FINISHED)
    reason = f"{done} trials finished on {workers} Ray worker(s)"
    if timeout is not None and done < target:
        reason = f"the time budget ({timeout:g} s) ran out after {done} finished trials on {workers} Ray worker(s)"
    return _finish(store, sweep.sweep_id, study, reason)


def _optimize(store: SweepStore, sweep_id: str, study: optuna.Study, objective, publisher) -> SweepStatus:
    folder = store.folder(sweep_id)
    status = folder.read()
    target, timeout = status.trials_target, status.timeout_seconds
    publisher.publish(study, importance=True)
    if folder.stop_requested():
        raise SweepStopped("stopped before the first trial")
    done = count(study, FINISHED)
    if target is not None and done >= target:
        return _finish(store, sweep_id, study, f"{done} trials finished (the target was {target})")

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        publisher.publish(study, importance=True)
        row = trial_row(trial)
        accuracy = row["val_accuracy"]
        log.info(
            "trial %d %s: val loss %s, val accuracy %s, %s",
            trial.number,
            row["state"],
            _fmt(row["val_loss"]),
            _fmt(accuracy),
            ", ".join(f"{k}={v}" for k, v in row["shown"].items()),
        )
        if target is not None and count(study, FINISHED) >= target:
            study.stop()
        if folder.stop_requested():
            study.stop()

    # No n_trials: the target counts finished trials over every launch (after_trial stops there). A trial
    # cut short by a stop is caught (recorded as failed, its settings queued again); after_trial then stops.
    study.optimize(objective, timeout=timeout, callbacks=[after_trial], catch=(SweepStopped,))
    if folder.stop_requested():
        raise SweepStopped(f"stopped after {count(study, FINISHED)} finished trials")
    done = count(study, FINISHED)
    reason = f"{done} trials finished" + (f" (the target was {target})" if target is not None else "")
    if timeout is not None and (target is None or done < target):
        reason = f"the time budget ({timeout:g} s) ran out after {done} finished trials"
    return _finish(store, sweep_id, study, reason)


def _finish(store: SweepStore, sweep_id: str, study: optuna.Study, note: str) -> SweepStatus:
    log.info("sweep %s done: %s", sweep_id, note)
    return store.update(
        sweep_id, state=JobState.DONE, finished_at=time.time(), stage=None, stage_progress=None, note=note
    )


def _retry_interrupted(study: optuna.Study, storage: optuna.storages.RDBStorage) -> None:
    """Trials left running by a process that died (a kill, a crash) failed; try their settings again.

    Only one process works on a sweep (the launch refuses a second), so a running trial now is stale.
    (FrozenTrial has no public id for the storage's calls: `_trial_id` is what Optuna itself uses.)
    """
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_user_attr(trial._trial_id, "note", "cut short (its process ended): tried again")
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"note": f"trial {trial.number} again"})


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
