"""The fits of a training run: the head on cached features, the classifier on images, the test split.

`Trainer` holds what both phases share (the epoch counter, the best weights); `TrainingJob` is what
the run was asked to do and `StageReporter` says what it is doing now. `core.train.training.train_run`
calls them in order.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from core.data.datasets import DatasetIndex
from core.device import DeviceInfo, recommended_batch_size
from core.errors import Cancelled
from core.network.graph import features_and_logits_model, head_logits_model
from core.network.model import backbone_of, head_of
from core.runs.files import run_files
from core.runs.store import RunStore
from core.runtimes.choice import accelerated
from core.settings.config import TrainConfig
from core.tracking.tensorboard import TensorBoardLogger
from core.train.batches import ExtractionBatches, FeatureBatches, ImageBatches
from core.train.callbacks import BestWeights, EpochCounter, EpochProgressBar, RunLogger
from core.train.distribute import Parallelism, pad_rows, padded_length
from core.train.features import FeatureCache, build_extractor, weights_hash
from core.train.multihost import STRATEGY, MultiHost, ProcessShard, across_processes
from core.train.multilabel import ValidationMAP, monitored, predict_rows
from core.train.objective import compile_for, head_steps_per_call, phase_callbacks
from core.train.schedules import learning_rate_for
from core.train.training_data import TrainingData

log = logging.getLogger("flora")
VALIDATION_BATCH = 512  # rows per validation batch on cached features
STAGE_WRITE_INTERVAL = 0.5  # seconds between stage-progress writes to status.json


class StopRequested(Cancelled):
    """The run was asked to stop before any epoch finished."""


@dataclass(frozen=True)
class TrainingJob:
    """What one training run is asked to do: its inputs, none of which change while it trains."""

    store: RunStore
    run_id: str
    index: DatasetIndex
    config: TrainConfig
    cache_root: Path
    console: bool = True  # progress bars and epoch lines on stderr
    ingest_workers: int | None = None
    device: DeviceInfo | None = None  # None: ask the backend
    max_steps: int | None = None  # at most this many steps per epoch on images (benchmarks); None: all
    hosts: MultiHost | None = None  # phase 2 across processes on several hosts (JAX); None: this process alone

    @property
    def run_dir(self) -> Path:
        return self.store.run_dir(self.run_id)

    def should_stop(self) -> bool:
        return self.store.stop_requested(self.run_id)


class StageReporter:
    """Writes the stage a job is in (and its progress) to its status, at most twice a second."""

    def __init__(self, write: Callable[..., Any]):
        self.write = write  # status fields -> the job's status.json (a run's, a sweep's)
        self._written = 0.0
        self._stage: str | None = None

    @classmethod
    def for_run(cls, store: RunStore, run_id: str) -> StageReporter:
        return cls(lambda **fields: store.set_status(run_id, **fields))

    def __call__(self, name: str, done: int | None = None, total: int | None = None, force: bool = False) -> None:
        now = time.time()
        unfinished = done is not None and total and done < total
        new_stage = name != self._stage
        # a new stage is always written: its start is what its ETA is measured from (a first report swallowed by the
        # interval left the start at a later count, and the pace at nothing: "60 / 180 · about 0 s left")
        if not force and not new_stage and unfinished and now - self._written < STAGE_WRITE_INTERVAL:
            return
        self._written = now
        fields: dict[str, Any] = {"stage": name, "stage_progress": None}
        if new_stage:  # a new stage: its ETA is measured from here
            self._stage = name
            fields["stage_started_at"] = now
        if done is not None and total is not None:
            fields["stage_progress"] = (done, total)
        self.write(**fields)


@dataclass
class Trainer:
    """The fits of one run: both phases share the epoch counter and the best weights."""

    job: TrainingJob
    data: TrainingData
    model: keras.Model
    parallel: Parallelism
    report: StageReporter
    workers: int  # threads reading image batches ahead of the model
    device: DeviceInfo
    counter: EpochCounter = field(default_factory=EpochCounter)
    best: BestWeights = field(init=False)
    features: dict[str, np.ndarray] | None = None  # cached features of phase 1 (train views, val, test)

    def __post_init__(self) -> None:
        monitor, mode = monitored(self.data.multilabel)
        self.best = BestWeights(self.model, monitor=monitor, mode=mode)

    @property
    def replicas(self) -> int:
        return self.parallel.replicas

    def callbacks(self, phase: int) -> list[keras.callbacks.Callback]:
        config = self.job.config
        callbacks = [
            RunLogger(self.job.store, self.job.run_id, phase, self.counter, config.total_epochs),
            self.best,
            TensorBoardLogger(self.job.run_dir),
        ]
        callbacks += phase_callbacks(config)
        if self.job.console:
            callbacks.append(EpochProgressBar(phase, config.total_epochs))
        return callbacks

    def fit_head_on_features(self) -> None:
        """Phase 1 on cached pooled features: extract (or load) them, then fit the head alone."""
        config = self.job.config
        views = config.augmented_views if config.augment.enabled else 0
        # The test split too, unless phase 2 will change the backbone under it.
        self.features = head_features(
            self.model, self.data, config, self.extraction(), views, include_test=config.fine_tune_epochs == 0
        )
        log.info(
            "phase 1 on cached features: %d train images x %d view(s)",
            len(self.data.split.train),
            len(self.features["train"]),
        )
        head = head_of(self.model)
        self.best.track(head)  # the backbone stays as it is: only the head's weights need keeping
        self.report("training the head on cached features", force=True)
        fit_head(head, self.features, self.data, config, self.callbacks(1), replicas=self.replicas)

    def extraction(self) -> Extraction:
        return Extraction(
            self.job.cache_root,
            self.workers,
            self.replicas,
            self.extraction_batch_size(),
            self.report,
            self.job.should_stop,
            self.job.console,
            lambda text: self.job.store.set_status(self.job.run_id, runtime=text),
        )

    def fit_on_images(self, phase: int) -> None:
        """Fit the whole classifier on images (augmentation inside the model): phase 1 or 2; phase 2 across the
        processes of a multi-host run."""
        hosts = self.job.hosts
        if phase == 2 and hosts is not None:
            with across_processes(self.model, hosts) as devices:
                log.info("phase 2 across %d processes, %d devices (%s)", hosts.num_processes, devices, STRATEGY)
                self._fit_on_images(phase, devices, hosts)
            return
        self._fit_on_images(phase, self.replicas)

    def _fit_on_images(self, phase: int, replicas: int, hosts: MultiHost | None = None) -> None:
        config, split = self.job.config, self.data.split
        learning_rate = config.learning_rate if phase == 1 else config.fine_tune_learning_rate
        reading = {"replicas": replicas, "workers": self.workers, "max_queue_size": 2 * self.workers}
        shape = {"num_classes": self.data.num_classes, "image_size": config.image_size, "batch_size": config.batch_size}
        train = ImageBatches(
            self.data.cache,
            split.train,
            **shape,
            shuffle=True,
            seed=config.seed + phase,
            sample_weights=self.data.sample_weights,
            targets=self.data.targets,
            **reading,
        )
        val = ImageBatches(self.data.cache, split.val, **shape, targets=self.data.targets, **reading)
        if hosts is not None:  # this process's rows of each global batch
            train, val = ProcessShard(train, hosts), ProcessShard(val, hosts)
        initial_epoch = self.counter.epochs_done
        epochs = initial_epoch + (config.epochs if phase == 1 else config.fine_tune_epochs)
        self.best.track(self.model)
        self.best.checkpoint = run_files(self.job.run_dir).checkpoint  # epochs are slow here: keep the best on disk
        self.report("training" if phase == 1 else "fine-tuning", force=True)
        steps = min(self.job.max_steps, len(train)) if self.job.max_steps else None
        total_steps = (steps or len(train)) * (epochs - initial_epoch)
        rate = learning_rate_for(config.lr_schedule, learning_rate, total_steps)
        compile_for(
            self.model,
            rate,
            config.label_smoothing,
            positive_weights=self._positive_weights(),
            multilabel=self.data.multilabel,
        )
        callbacks = self.callbacks(phase)
        if self.data.multilabel:  # first: the others read its val_map
            callbacks.insert(0, self._validation_map_on_images())
        self.model.fit(
            train,
            validation_data=val,
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps,
            shuffle=False,  # the batches shuffle themselves, from the seed (see fit_head)
            verbose=0,
            callbacks=callbacks,
        )

    def _positive_weights(self):
        return self.data.class_weights if self.data.multilabel else None

    def _validation_map_on_images(self) -> ValidationMAP:
        """The validation mAP of the classifier on the validation images (one forward pass an epoch)."""
        positions = self.data.split.val
        batches = ExtractionBatches(
            self.data.cache, positions, self.job.config.image_size, self.extraction_batch_size(), workers=self.workers
        )
        return ValidationMAP(
            lambda model: predict_rows(model, batches)[: len(positions)], self.data.targets.dense(positions)
        )

    @property
    def features_are_final(self) -> bool:
        """The cached features are the final backbone's: phase 2 did not run (it changes the backbone)."""
        config = self.job.config
        return not (config.fine_tune_epochs > 0 and self.counter.epochs_done > config.epochs)

    def analyse_splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Pooled features and logits of the validation and test splits: {"val": (f, z), "test": (f, z)}.

        From the cached features when the backbone never changed (phase 1 on features alone), else
        one pass of those images through the classifier's own layers, which gives both at once.
        """
        config = self.job.config
        split = self.data.split
        if self.features is not None and "test" in self.features and self.features_are_final:
            logits_of = head_logits_model(head_of(self.model))
            out = {}
            for name in ("val", "test"):
                x = self.features[name].astype("float32")
                n = len(x)
                z = logits_of.predict(
                    pad_rows(x, padded_length(n, self.replicas)), batch_size=256 * self.replicas, verbose=0
                )
                out[name] = (self.features[name], np.asarray(z, dtype=np.float32)[:n])
            return out
        # One fixed batch shape (the last batch padded, the extra rows dropped): one compile for both splits.
        positions = np.concatenate([split.val, split.test])
        batches = ExtractionBatches(
            self.data.cache, positions, config.image_size, self.extraction_batch_size(), workers=self.workers
        )
        forward = accelerated(
            features_and_logits_model(self.model),
            cache_root=self.job.cache_root,
            sample=batches[0][0],
            batch=len(batches[0][0]),
        )
        pooled, logits = forward.predict(batches)
        pooled = np.asarray(pooled, dtype=np.float32)[: len(positions)].astype(np.float16)
        logits = np.asarray(logits, dtype=np.float32)[: len(positions)]
        n_val = len(split.val)
        return {"val": (pooled[:n_val], logits[:n_val]), "test": (pooled[n_val:], logits[n_val:])}

    def extraction_batch_size(self) -> int:
        return extraction_batch_size(self.device, self.job.config, self.replicas)


def extraction_batch_size(device: DeviceInfo, config: TrainConfig, replicas: int = 1) -> int:
    """Images per forward-only step: sized to the device (it is inference), a multiple of the replicas."""
    size = recommended_batch_size(device, config.image_size, training=False)
    return padded_length(max(size, config.batch_size), replicas)


@dataclass(frozen=True)
class Extraction:
    """How pooled features are had: where they are cached, how they are read and computed, who is told."""

    cache_root: Path
    workers: int  # threads reading image batches ahead of the backbone
    replicas: int
    batch_size: int  # images per forward-only step
    report: StageReporter
    should_stop: Callable[[], bool]
    console: bool = False  # progress bars on stderr
    runtime_note: Callable[[str], None] | None = None  # told which runtime runs the backbone, and why


def head_features(
    model: keras.Model,
    data: TrainingData,
    config: TrainConfig,
    extraction: Extraction,
    views: int,
    include_test: bool = True,
) -> dict[str, np.ndarray]:
    """The pooled features a head trains on, through the feature cache.

    Returns:
        {"train": (1 + views, n_train, 2048), "val": (n_val, 2048)[, "test": (n_test, 2048)]}:
        the clean view of every split, then `views` augmented views of the training images.

    Raises:
        Cancelled: `extraction.should_stop` said so (what was computed is kept in the cache).
    """
    split = data.split
    extract = _feature_extractor(model, data, config, extraction)
    # One pass for the clean view of every split (one partial batch, one save, one progress bar).
    parts = {"train": split.train, "val": split.val}
    if include_test:
        parts["test"] = split.test
    clean = extract(" + ".join(parts), np.concatenate(list(parts.values())))
    features, start = {}, 0
    for name, positions in parts.items():
        features[name] = clean[start : start + len(positions)]
        start += len(positions)
    train_views = [features.pop("train")]
    train_views += [extract("train", split.train, view) for view in range(1, views + 1)]
    # One view (no augmentation): a view of the array, not a copy (3.2 KB a training photo: 1 GB at 300k).
    features["train"] = train_views[0][None] if views == 0 else np.stack(train_views)
    return features


def _feature_extractor(model: keras.Model, data: TrainingData, config: TrainConfig, extraction: Extraction):
    """extract(name, positions, view=0) -> features, through the feature cache, with progress."""
    extractor = build_extractor(model)
    key = weights_hash(backbone_of(model))
    store = FeatureCache(
        extraction.cache_root,
        data.cache,
        config.image_size,
        key,
        workers=extraction.workers,
        replicas=extraction.replicas,
    )

    def extract(name: str, positions, view: int = 0) -> np.ndarray:
        label = f"extracting features: {name}" + (f" (augmented view {view})" if view else "")
        bar = console_bar(extraction.console, label, len(positions), unit="img")

        def progress(done: int, total: int) -> None:
            extraction.report(label, done, total)
            if bar is not None:
                bar.total = total
                bar.n = done
                bar.refresh()

        try:
            features = store.get(
                extractor,
                positions,
                view,
                config.augment,
                config.seed,
                extraction.batch_size,
                progress,
                extraction.should_stop,
            )
        finally:
            if bar is not None:
                bar.close()
            if store.decision is not None and extraction.runtime_note is not None:
                extraction.runtime_note(store.decision.text)
        return features

    return extract


def fit_head(
    head: keras.Model,
    features: dict[str, np.ndarray],
    data: TrainingData,
    config: TrainConfig,
    callbacks: list[keras.callbacks.Callback],
    replicas: int = 1,
    extra_metrics: tuple = (),
    compiled: bool = False,
) -> keras.callbacks.History:
    """Fit the head alone on cached features: phase 1 of a run, or one trial of a sweep.

    `config` gives the epochs, batch size, rate and its schedule, label smoothing and seed; `data`
    the labels, the split and the class weights. Each epoch every training image is seen (a few twice:
    the last batch is filled up, core.train.batches), each time in one of its views drawn at random. The
    caller's `callbacks` should include `phase_callbacks(config)` (early stopping, the schedule's callback).
    `compiled`: compiled by an earlier fit of this shape, put back at its start (core.sweeps.trials): only the rate set.
    """
    split = data.split
    train = FeatureBatches(
        features["train"],
        data.labels_of(split.train),
        data.num_classes,
        config.batch_size,
        seed=config.seed,
        sample_weights=data.sample_weights,
        replicas=replicas,
    )
    val = FeatureBatches(  # big batches: validating is a forward pass; the mean loss is the same
        features["val"][None],
        data.labels_of(split.val),
        data.num_classes,
        max(config.batch_size, VALIDATION_BATCH),
        shuffle=False,
        replicas=replicas,
    )
    if data.multilabel:  # first: the run's logger, best weights and early stopping read its val_map
        n_val = len(split.val)
        x_val = pad_rows(features["val"].astype("float32"), padded_length(n_val, replicas))  # whole shards
        callbacks = [
            ValidationMAP(
                lambda model: predict_rows(model, x_val, VALIDATION_BATCH * replicas)[:n_val],
                data.targets.dense(split.val),
            ),
            *callbacks,
        ]
    steps_per_call = head_steps_per_call(len(train) * config.epochs, replicas)
    rate = learning_rate_for(config.lr_schedule, config.learning_rate, len(train) * config.epochs)
    positives = data.class_weights if data.multilabel else None  # a multi-label loss's per-label weights
    if compiled:  # into the optimizer's rate variable, which the traced step reads
        head.optimizer.learning_rate = rate
    else:
        compile_for(head, rate, config.label_smoothing, steps_per_call, extra_metrics, positives, data.multilabel)
    # shuffle=False: the batches shuffle themselves from the config's seed. Keras would also shuffle
    # their order from Python's global random state, so the same trial would train differently in a
    # sweep and in the run made from it.
    return head.fit(train, validation_data=val, epochs=config.epochs, shuffle=False, verbose=0, callbacks=callbacks)


def console_bar(console: bool, desc: str, total: int, unit: str):
    """A tqdm bar on stderr for the CLI (None in the background or when stderr is not a terminal)."""
    if not console:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not sys.stderr.isatty())
