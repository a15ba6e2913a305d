"""A sweep's trials: the study, the shared preparation, one trial (`Objective`) and a Ray worker's share of them.

Everything that runs trials comes through here: the sweep's own process (core.sweeps.search) and each Ray
worker (`trial_worker`, sent by core.sweeps.ray). Both check the dataset's fingerprint and apply the same
corrections through `checked_dataset` and `training_data`, so a worker cannot drift from the search.

The objective is the validation loss (cross-entropy *without* label smoothing, so trials with
different smoothing compare fairly) at the epoch a run would keep (its lowest validation loss);
validation accuracy at that epoch is recorded beside it. A multi-label dataset's trials are judged as its runs are:
by the validation mAP at the epoch with the highest (the study minimises 1 - mAP).
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

from core.data.datasets import DatasetError, DatasetIndex, scan_dataset
from core.errors import Cancelled
from core.network.model import build_head
from core.paths import cache_dir
from core.settings.config import TrainConfig
from core.sweeps.launch import sweep_corrections
from core.sweeps.results import Publisher
from core.sweeps.space import SearchSpace, config_for
from core.sweeps.store import STUDY_NAME, Sweep, SweepStore
from core.train.callbacks import learning_rate, scalars
from core.train.multilabel import VAL_MAP, positive_weights
from core.train.trainer import StageReporter, TrainingData, fit_head, phase_callbacks
from core.train.training import class_weights, load_training_data

log = logging.getLogger("flora")
NLL = "nll"  # the unsmoothed cross-entropy metric: val_nll is what trials are compared on
PRUNE_AFTER_TRIALS = 4  # the median pruner waits for this many finished trials
PRUNE_WARMUP_EPOCHS = 2  # and never prunes a trial before its third epoch
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class SweepStopped(Cancelled):
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


def checked_dataset(sweep: Sweep) -> DatasetIndex:
    """The sweep's dataset scanned now; DatasetError when it changed since the sweep began (its trials would not
    compare with the earlier ones). Every process that runs trials checks this: the sweep's and each Ray worker."""
    index = scan_dataset(sweep.dataset_path)
    if index.fingerprint != sweep.spec["dataset"]["fingerprint"]:
        raise DatasetError(f"the dataset at {sweep.dataset_path} changed since this sweep began; start a new sweep")
    return index


def training_data(
    sweep: Sweep, index: DatasetIndex, data_root: Path, report, should_stop, console: bool, workers: int | None
) -> TrainingData:
    """The split and decoded cache every trial of `sweep` trains on, with the corrections the run it promotes
    will apply: one preparation for the sweep's own process and for each Ray worker."""
    corrections = sweep_corrections(sweep, data_root)
    return load_training_data(
        index, sweep.fixed, cache_dir(data_root), report, should_stop, console, workers, corrections=corrections
    )


def count(study: optuna.Study, states) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


class TrialReporter(keras.callbacks.Callback):
    """One trial's epochs: report the validation loss to Optuna (which may prune), record the curve, honour STOP."""

    def __init__(self, trial: optuna.Trial, store: SweepStore, sweep_id: str, epochs: int, multilabel: bool = False):
        super().__init__()
        self.trial, self.folder, self.epochs = trial, store.folder(sweep_id), epochs
        self.multilabel = multilabel  # judged by the validation mAP (1 - mAP reported, lower better)
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
            "val_loss": values.get("val_loss" if self.multilabel else f"val_{NLL}"),
            "val_accuracy": values.get("val_accuracy"),
            "lr": learning_rate(self.model),
        }
        if self.multilabel:
            point["val_map"] = values.get(VAL_MAP)
        self.curve.append(point)
        kept, compared = values.get("val_loss"), point["val_loss"]
        if self.multilabel:  # what the run keeps and the study compares: the validation mAP
            kept = compared = None if point["val_map"] is None else 1.0 - point["val_map"]
            if not math.isfinite(values.get("val_loss", math.nan)):
                kept = None
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
            if self.multilabel:
                attrs["val_map"] = self.best["val_map"]
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
    _last_head: tuple | None = dataclasses.field(default=None, init=False, repr=False)

    def __call__(self, trial: optuna.Trial) -> float:
        folder = self.store.folder(self.sweep_id)
        config = config_for(self.fixed, self.space.suggest(trial))
        if folder.stop_requested():  # asked between trials: this one is tried first when the sweep continues
            trial.set_user_attr("note", "stopped before it began: tried again when the sweep continues")
            trial.study.enqueue_trial(trial.params, user_attrs={"note": f"trial {trial.number} again"})
            raise SweepStopped(f"stopped before trial {trial.number}")
        views = 1 + (config.augmented_views if config.augment.enabled else 0)
        features = {"train": self.features["train"][:views], "val": self.features["val"]}
        data = dataclasses.replace(self.data, class_weights=self._weights(config))
        folder.update(
            trial_running=trial.number,
            stage=f"trial {trial.number}: training the head",
            stage_started_at=time.time(),
            stage_progress=(0, config.epochs),
        )
        self.publisher.publish(trial.study)
        head, compiled = self._head(config, data, int(features["val"].shape[-1]), views)
        reporter = TrialReporter(trial, self.store, self.sweep_id, config.epochs, data.multilabel)
        callbacks = [reporter, *phase_callbacks(config)]
        # a multi-label trial is judged by its mAP, which label smoothing leaves fair: no unsmoothed loss needed
        nll = () if data.multilabel else (keras.metrics.CategoricalCrossentropy(name=NLL),)
        fit_head(head, features, data, config, callbacks, replicas=self.replicas, extra_metrics=nll, compiled=compiled)
        if reporter.stopped:
            reporter.record("stopped: tried again when the sweep continues")
            trial.study.enqueue_trial(trial.params, user_attrs={"note": f"trial {trial.number} again"})
            raise SweepStopped(f"stopped during trial {trial.number}")
        reporter.record()
        if reporter.best is None:
            raise RuntimeError(f"trial {trial.number} ran no epoch")
        if data.multilabel:
            return 1.0 - float(reporter.best["val_map"])
        return float(reporter.best["val_loss"])

    def _head(self, config: TrainConfig, data: TrainingData, width: int, views: int) -> tuple[keras.Model, bool]:
        """The trial's head at its start, and whether it is compiled already.

        The start depends on the seed alone: the run trained from this trial starts the same. A trial that differs
        from the one before it only in its learning rate (what a sweep of the rate alone draws) gets that trial's
        head, compiled for the same shapes, loss and metrics, put back at the start: its weights, its dropout's
        seed state and the optimizer's steps and moments as built, only the rate set, so its fit traces nothing
        again (tf_flowers' features, 10-epoch trials, TensorFlow on one thread: 1.06 -> 0.82-0.91 s an epoch, the
        same losses). Only the last head is kept: a sweep over other settings rarely draws the same shape twice."""
        keras.utils.set_random_seed(config.seed)
        rate_alone = config.lr_schedule != "cosine"  # a cosine schedule's rate is part of the traced step
        shape = dataclasses.replace(config, learning_rate=self.fixed.learning_rate) if rate_alone else None
        key = (shape, data.num_classes, data.multilabel, width, views)
        if shape is not None and self._last_head is not None and self._last_head[0] == key:
            _, head, start = self._last_head
            for variable, value in zip(head.variables, start, strict=True):
                variable.assign(value)
            rate_variable = head.optimizer.learning_rate  # a number's variable; Adam's steps and moments start at 0
            for variable in head.optimizer.variables:
                if variable is not rate_variable:
                    variable.assign(np.zeros(variable.shape, variable.dtype))
            return head, True
        head = build_head(data.num_classes, config.head, config.dropout, config.seed, width, config.task)
        start = [keras.ops.convert_to_numpy(variable.value) for variable in head.variables]
        self._last_head = (key, head, start) if shape is not None else None
        return head, False

    def _weights(self, config: TrainConfig):
        """The trial's class weights (a multi-label dataset's per-label positive weights), by its class_weighting."""
        train = self.data.split.train
        if self.data.multilabel:
            return positive_weights(self.data.targets.dense(train), config.class_weighting)
        return class_weights(self.data.cache.labels[train], self.data.num_classes, config.class_weighting)


def trial_worker(
    models_root: str,
    data_root: str,
    sweep_id: str,
    features_file: str,
    trials: int,
    number: int,
    deadline: float | None = None,
) -> dict[str, Any]:
    """On a Ray worker (core.sweeps.ray sends it): the sweep's checked dataset, split and cached features, the
    shared study, `trials` trials of it."""
    import ray  # optional: only a Ray worker runs this

    worker = f"worker {number} on {ray.util.get_node_ip_address()} ({ray.get_runtime_context().get_node_id()[:8]})"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    store = SweepStore(models_root)
    sweep = store.get(sweep_id)
    folder = store.folder(sweep_id)
    quiet = StageReporter(lambda **fields: None)
    data = training_data(sweep, checked_dataset(sweep), Path(data_root), quiet, folder.stop_requested, False, 1)
    with np.load(features_file) as saved:
        features = {name: saved[name] for name in saved.files}
    study, _ = open_study(sweep)
    # Each worker its own seed (the same one would draw the same settings in every worker), and the constant
    # liar: a trial running elsewhere counts as a poor result, so workers spread out instead of piling up.
    drawn = len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=sweep.fixed.seed + 7919 * number + drawn, constant_liar=True)
    publisher = Publisher(store, sweep_id, sweep.fixed, sweep.space)
    objective = Objective(store, sweep_id, sweep.fixed, sweep.space, data, features, 1, publisher)

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
