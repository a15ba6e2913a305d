"""The sweep process: features extracted once, then Optuna trials that each train only the head.

`run_sweep` decodes the images and extracts the pooled backbone features through the feature
cache (every view any trial may use), exactly as a run would, then lets Optuna (TPE sampler
seeded with the sweep's seed, median pruner on the validation loss per epoch, its study in the
sweep folder's SQLite file) draw head settings. Each trial is `core.train.trainer.fit_head` on those
features: the same fit as phase 1 of a run. The validation split chooses; the test split is not
even loaded.

The objective is the validation loss (cross-entropy *without* label smoothing, so trials with
different smoothing compare fairly) at the epoch a run would keep (its lowest validation loss);
validation accuracy at that epoch is recorded beside it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import optuna
from optuna.trial import TrialState

from core.config import TrainConfig
from core.datasets import DatasetError, scan_dataset
from core.device import describe, dtype_policy, input_workers, mixed_precision_policy
from core.model import build_head, classifier_for
from core.paths import cache_dir
from core.processes import RunState
from core.sweeps.results import Publisher, trial_row
from core.sweeps.space import SearchSpace, config_for
from core.sweeps.store import STUDY_NAME, Sweep, SweepStatus, SweepStore
from core.train.callbacks import learning_rate, scalars
from core.train.distribute import data_parallel
from core.train.jobs import StopWhileWaiting, device_lock
from core.train.trainer import (
    Extraction,
    StageReporter,
    StopRequested,
    TrainingData,
    extraction_batch_size,
    fit_head,
    head_features,
    phase_callbacks,
)
from core.train.training import class_weights, load_training_data

log = logging.getLogger("flora")
NLL = "nll"  # the unsmoothed cross-entropy metric: val_nll is what trials are compared on
PRUNE_AFTER_TRIALS = 4  # the median pruner waits for this many finished trials
PRUNE_WARMUP_EPOCHS = 2  # and never prunes a trial before its third epoch
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class SweepStopped(RuntimeError):
    """The sweep was asked to stop; the trial it cut short is tried again on resume."""


def open_study(sweep: Sweep) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    """The sweep's Optuna study in its folder (created on first use): TPE seeded, median pruner, minimise."""
    storage = optuna.storages.RDBStorage(sweep.study_url, engine_kwargs={"connect_args": {"timeout": 30}})
    study = optuna.create_study(
        storage=storage,
        study_name=STUDY_NAME,
        direction="minimize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=PRUNE_AFTER_TRIALS, n_warmup_steps=PRUNE_WARMUP_EPOCHS),
        load_if_exists=True,
    )
    # Seeded, and offset by the trials already there: a resumed sweep must not draw its first
    # launch's settings again, yet the same sweep run the same way draws the same settings.
    seed = sweep.fixed.seed + len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=seed)
    return study, storage


def run_sweep(
    store: SweepStore,
    sweep_id: str,
    data_root: str | Path,
    console: bool = False,
    workers: int | None = None,
    ray: tuple[str | None, int] | None = None,
) -> SweepStatus:
    """Search in this process until the target, the time budget or a stop; the final status. `ray`: (address,
    workers) to run the trials on a Ray cluster's workers instead (core/ray_sweeps.py).

    Raises:
        Exception: whatever failed the sweep, after recording it as failed with the error.
    """
    folder = store.folder(sweep_id)
    folder.claim(state=RunState.QUEUED, error=None, note=None, finished_at=None, trial_running=None)
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
    except (SweepStopped, StopRequested, StopWhileWaiting) as e:
        log.info("sweep %s stopped: %s", sweep_id, e)
        return folder.update(
            state=RunState.STOPPED,
            finished_at=time.time(),
            stage=None,
            stage_progress=None,
            trial_running=None,
            note=f"{e}; launch it again to continue (finished trials are kept)",
        )
    except KeyboardInterrupt:
        folder.update(
            state=RunState.STOPPED, finished_at=time.time(), stage=None, trial_running=None, note="interrupted"
        )
        raise
    except BaseException as e:
        log.exception("sweep %s failed", sweep_id)
        folder.update(
            state=RunState.FAILED,
            finished_at=time.time(),
            stage=None,
            trial_running=None,
            error=f"{type(e).__name__}: {e}",
        )
        raise


def _search(store: SweepStore, sweep: Sweep, data_root: Path, device, console: bool, workers, ray=None) -> SweepStatus:
    folder = store.folder(sweep.sweep_id)
    fixed, space = sweep.fixed, sweep.space
    index = scan_dataset(sweep.dataset_path)
    if index.fingerprint != sweep.spec["dataset"]["fingerprint"]:
        raise DatasetError(f"the dataset at {sweep.dataset_path} changed since this sweep began; start a new sweep")
    folder.update(state=RunState.RUNNING, started_at=time.time())
    report = StageReporter(folder.update)
    started = time.perf_counter()
    views = space.max_views(fixed)
    keras.utils.set_random_seed(fixed.seed)  # the order a run follows, so the backbone (and its features) match
    from core.sweeps.launch import sweep_corrections

    corrections = sweep_corrections(sweep, data_root)  # as the run it promotes will apply them
    data = load_training_data(
        index, fixed, cache_dir(data_root), report, folder.stop_requested, console, workers, corrections=corrections
    )
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
    from core.ray_sweeps import run_trials_on_ray

    folder = store.folder(sweep.sweep_id)
    status = folder.read()
    target, timeout = status.trials_target, status.timeout_seconds
    if target is None:
        raise ValueError("a sweep on Ray needs a trial count (--trials) to share out among its workers")
    remaining = target - _count(study, FINISHED)
    deadline = None if timeout is None else time.time() + timeout
    if remaining > 0:
        reports = run_trials_on_ray(store, sweep, data_root, features, address, workers, remaining, deadline)
        for report in reports:
            log.info("sweep %s: %s ran %d trial(s) in %.1f s", sweep.sweep_id, *report.values())
    study = open_study(sweep)[0]  # what every worker wrote
    publisher.publish(study, importance=True)
    if folder.stop_requested():
        raise SweepStopped(f"stopped after {_count(study, FINISHED)} finished trials")
    done = _count(study, FINISHED)
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
    done = _count(study, FINISHED)
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
        if target is not None and _count(study, FINISHED) >= target:
            study.stop()
        if folder.stop_requested():
            study.stop()

    # No n_trials: the target counts finished trials over every launch (after_trial stops there). A trial
    # cut short by a stop is caught (recorded as failed, its settings queued again); after_trial then stops.
    study.optimize(objective, timeout=timeout, callbacks=[after_trial], catch=(SweepStopped,))
    if folder.stop_requested():
        raise SweepStopped(f"stopped after {_count(study, FINISHED)} finished trials")
    done = _count(study, FINISHED)
    reason = f"{done} trials finished" + (f" (the target was {target})" if target is not None else "")
    if timeout is not None and (target is None or done < target):
        reason = f"the time budget ({timeout:g} s) ran out after {done} finished trials"
    return _finish(store, sweep_id, study, reason)


def _finish(store: SweepStore, sweep_id: str, study: optuna.Study, note: str) -> SweepStatus:
    log.info("sweep %s done: %s", sweep_id, note)
    return store.update(
        sweep_id, state=RunState.DONE, finished_at=time.time(), stage=None, stage_progress=None, note=note
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


def _count(study: optuna.Study, states) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


class TrialReporter(keras.callbacks.Callback):
    """One trial's epochs: report the validation loss to Optuna (which may prune), record the curve, honour STOP."""

    def __init__(self, trial: optuna.Trial, store: SweepStore, sweep_id: str, epochs: int):
        super().__init__()
        self.trial, self.folder, self.epochs = trial, store.folder(sweep_id), epochs
        self.curve: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None  # the epoch a run would keep: lowest (smoothed) val_loss
        self._best_loss = math.inf
        self.stopped = False
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.folder.stop_requested():
            self.model.stop_training = True
            self.stopped = True

    def on_epoch_end(self, epoch, logs=None):
        values = scalars(logs)
        point = {
            "epoch": epoch + 1,
            "loss": values.get("loss"),
            "accuracy": values.get("accuracy"),
            "val_loss": values.get(f"val_{NLL}"),
            "val_accuracy": values.get("val_accuracy"),
            "lr": learning_rate(self.model),
        }
        self.curve.append(point)
        kept, compared = values.get("val_loss"), point["val_loss"]
        if kept is None or compared is None or not (math.isfinite(kept) and math.isfinite(compared)):
            self.record(f"diverged at epoch {epoch + 1}: the loss is not a number (the learning rate is too high)")
            raise optuna.TrialPruned(f"diverged at epoch {epoch + 1}")
        if kept < self._best_loss:
            self._best_loss, self.best = kept, point
        self.folder.update(stage_progress=(epoch + 1, self.epochs))
        if self.stopped:
            return
        self.trial.report(compared, epoch)
        if self.trial.should_prune():
            self.record(
                f"pruned after epoch {epoch + 1}: its validation loss was worse than the median of the "
                "earlier trials at that epoch"
            )
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")

    def record(self, note: str | None = None) -> None:
        attrs: dict[str, Any] = {
            "curve": self.curve,
            "epochs_run": len(self.curve),
            "seconds": round(time.perf_counter() - self.started, 3),
        }
        if self.best is not None:
            attrs |= {
                "val_loss": self.best["val_loss"],
                "val_accuracy": self.best["val_accuracy"],
                "best_epoch": self.best["epoch"],
            }
        if note:
            attrs["note"] = note
        for key, value in attrs.items():
            self.trial.set_user_attr(key, value)


@dataclasses.dataclass
class Objective:
    """One trial: the fixed settings with the drawn ones, a fresh head fitted on the shared features."""

    store: SweepStore
    sweep_id: str
    fixed: TrainConfig
    space: SearchSpace
    data: TrainingData
    features: dict[str, np.ndarray]
    replicas: int
    publisher: Publisher

    def __call__(self, trial: optuna.Trial) -> float:
        folder = self.store.folder(self.sweep_id)
        config = config_for(self.fixed, self.space.suggest(trial))
        if folder.stop_requested():  # asked between trials: this one is tried first when the sweep continues
            trial.set_user_attr("note", "stopped before it began: tried again when the sweep continues")
            trial.study.enqueue_trial(trial.params, user_attrs={"note": f"trial {trial.number} again"})
            raise SweepStopped(f"stopped before trial {trial.number}")
        views = 1 + (config.augmented_views if config.augment.enabled else 0)
        features = {"train": self.features["train"][:views], "val": self.features["val"]}
        labels = self.data.cache.labels[self.data.split.train]
        data = dataclasses.replace(
            self.data, class_weights=class_weights(labels, self.data.num_classes, config.class_weighting)
        )
        folder.update(
            trial_running=trial.number,
            stage=f"trial {trial.number}: training the head",
            stage_started_at=time.time(),
            stage_progress=(0, config.epochs),
        )
        self.publisher.publish(trial.study)
        # The head's start depends on the seed alone: the run trained from this trial starts the same.
        keras.utils.set_random_seed(config.seed)
        width = int(features["val"].shape[-1])  # the backbone's
        head = build_head(data.num_classes, config.head, config.dropout, seed=config.seed, feature_dim=width)
        reporter = TrialReporter(trial, self.store, self.sweep_id, config.epochs)
        callbacks = [reporter, *phase_callbacks(config)]
        nll = keras.metrics.CategoricalCrossentropy(name=NLL)
        fit_head(head, features, data, config, callbacks, replicas=self.replicas, extra_metrics=(nll,))
        if reporter.stopped:
            reporter.record("stopped: tried again when the sweep continues")
            trial.study.enqueue_trial(trial.params, user_attrs={"note": f"trial {trial.number} again"})
            raise SweepStopped(f"stopped during trial {trial.number}")
        reporter.record()
        if reporter.best is None:
            raise RuntimeError(f"trial {trial.number} ran no epoch")
        return float(reporter.best["val_loss"])
