"""The fits of a training run: the head on cached features, the classifier on images, the test split.

`Trainer` holds what both phases share (the epoch counter, the best weights); `TrainingJob` is what
the run was asked to do and `StageReporter` says what it is doing now. `core.training.train_run`
calls them in order.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from core.analysis import features_and_logits_model, head_logits_model
from core.batches import ExtractionBatches, FeatureBatches, ImageBatches
from core.callbacks import BestWeights, EpochCounter, EpochProgressBar, RunLogger
from core.config import TrainConfig
from core.datasets import DatasetIndex, Split
from core.device import DeviceInfo, recommended_batch_size
from core.distribute import Parallelism, pad_rows, padded_length
from core.features import ExtractionStopped, FeatureCache, build_extractor, weights_hash
from core.ingest import ImageCache
from core.model import backbone_of, head_of
from core.runs import CHECKPOINT_FILE, RunStore

log = logging.getLogger("flora")
HEAD_STEPS_PER_CALL = 8  # training steps per compiled call when the head trains on cached features
VALIDATION_BATCH = 512  # rows per validation batch on cached features
STAGE_WRITE_INTERVAL = 0.5  # seconds between stage-progress writes to status.json


class StopRequested(RuntimeError):
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

    @property
    def run_dir(self) -> Path:
        return self.store.run_dir(self.run_id)

    def should_stop(self) -> bool:
        return self.store.stop_requested(self.run_id)


class StageReporter:
    """Writes the stage a run is in (and its progress) to its status, at most twice a second."""

    def __init__(self, store: RunStore, run_id: str):
        self.store, self.run_id = store, run_id
        self._written = 0.0
        self._stage: str | None = None

    def __call__(self, name: str, done: int | None = None, total: int | None = None, force: bool = False) -> None:
        now = time.time()
        unfinished = done is not None and total and done < total
        if not force and unfinished and now - self._written < STAGE_WRITE_INTERVAL:
            return
        self._written = now
        fields: dict[str, Any] = {"stage": name, "stage_progress": None}
        if name != self._stage:  # a new stage: its ETA is measured from here
            self._stage = name
            fields["stage_started_at"] = now
        if done is not None and total is not None:
            fields["stage_progress"] = (done, total)
        self.store.set_status(self.run_id, **fields)


@dataclass
class TrainingData:
    """What both phases train on: the decoded images, the split, and the class weights."""

    cache: ImageCache
    split: Split
    class_weights: np.ndarray | None
    num_classes: int


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
        self.best = BestWeights(self.model)

    @property
    def replicas(self) -> int:
        return self.parallel.replicas

    def callbacks(self, phase: int) -> list[keras.callbacks.Callback]:
        config = self.job.config
        callbacks = [RunLogger(self.job.store, self.job.run_id, phase, self.counter, config.total_epochs), self.best]
        if config.early_stopping_patience > 0:
            callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.early_stopping_patience))
        if self.job.console:
            callbacks.append(EpochProgressBar(phase, config.total_epochs))
        return callbacks

    def fit_head_on_features(self) -> None:
        """Phase 1 on cached pooled features: extract (or load) them, then fit the head alone."""
        config, split = self.job.config, self.data.split
        extract = self._feature_extractor()
        # One pass for the clean view of every split (one partial batch, one save, one progress bar);
        # the test split too, unless phase 2 will change the backbone under it.
        parts = {"train": split.train, "val": split.val}
        if config.fine_tune_epochs == 0:
            parts["test"] = split.test
        clean = extract(" + ".join(parts), np.concatenate(list(parts.values())))
        features, start = {}, 0
        for name, positions in parts.items():
            features[name] = clean[start : start + len(positions)]
            start += len(positions)
        views = [features.pop("train")]
        if config.augment.enabled:
            views += [extract("train", split.train, view) for view in range(1, config.augmented_views + 1)]
        features["train"] = np.stack(views)
        self.features = features
        log.info("phase 1 on cached features: %d train images x %d view(s)", len(split.train), len(views))

        head = head_of(self.model)
        self.best.track(head)  # the backbone stays as it is: only the head's weights need keeping
        # A head step is a few milliseconds, much of it the framework's per-call cost: run several per
        # call (on one device: Keras's multi-step loop fails under tf.distribute.MirroredStrategy).
        steps_per_call = HEAD_STEPS_PER_CALL if self.replicas == 1 else 1
        compile_for(head, config.learning_rate, config.label_smoothing, steps_per_execution=steps_per_call)
        labels = self.data.cache.labels
        train = FeatureBatches(
            features["train"],
            labels[split.train],
            self.data.num_classes,
            config.batch_size,
            seed=config.seed,
            sample_weights=self.data.class_weights,
            replicas=self.replicas,
        )
        val = FeatureBatches(  # big batches: validating is a forward pass; the mean loss is the same
            features["val"][None],
            labels[split.val],
            self.data.num_classes,
            max(config.batch_size, VALIDATION_BATCH),
            shuffle=False,
            replicas=self.replicas,
        )
        self.report("training the head on cached features", force=True)
        head.fit(train, validation_data=val, epochs=config.epochs, verbose=0, callbacks=self.callbacks(1))

    def _feature_extractor(self):
        """extract(name, positions, view=0) -> features, through the feature cache, with progress."""
        config = self.job.config
        extractor = build_extractor(self.model)
        key = weights_hash(backbone_of(self.model))
        store = FeatureCache(
            self.job.cache_root,
            self.data.cache,
            config.image_size,
            key,
            workers=self.workers,
            replicas=self.replicas,
        )
        batch = self.extraction_batch_size()

        def extract(name: str, positions, view: int = 0) -> np.ndarray:
            label = f"extracting features: {name}" + (f" (augmented view {view})" if view else "")
            bar = console_bar(self.job, label, len(positions), unit="img")

            def progress(done: int, total: int) -> None:
                self.report(label, done, total)
                if bar is not None:
                    bar.total = total
                    bar.n = done
                    bar.refresh()

            try:
                return store.get(
                    extractor, positions, view, config.augment, config.seed, batch, progress, self.job.should_stop
                )
            except ExtractionStopped as e:
                raise StopRequested(str(e)) from None
            finally:
                if bar is not None:
                    bar.close()

        return extract

    def fit_on_images(self, phase: int) -> None:
        """Fit the whole classifier on images (augmentation inside the model): phase 1 or 2."""
        config, split = self.job.config, self.data.split
        learning_rate = config.learning_rate if phase == 1 else config.fine_tune_learning_rate
        compile_for(self.model, learning_rate, config.label_smoothing)
        reading = {"replicas": self.replicas, "workers": self.workers, "max_queue_size": 2 * self.workers}
        shape = {"num_classes": self.data.num_classes, "image_size": config.image_size, "batch_size": config.batch_size}
        train = ImageBatches(
            self.data.cache,
            split.train,
            **shape,
            shuffle=True,
            seed=config.seed + phase,
            sample_weights=self.data.class_weights,
            **reading,
        )
        val = ImageBatches(self.data.cache, split.val, **shape, **reading)
        initial_epoch = self.counter.epochs_done
        epochs = initial_epoch + (config.epochs if phase == 1 else config.fine_tune_epochs)
        self.best.track(self.model)
        self.best.checkpoint = self.job.run_dir / CHECKPOINT_FILE  # epochs are slow here: keep the best on disk
        self.report("training" if phase == 1 else "fine-tuning", force=True)
        steps = min(self.job.max_steps, len(train)) if self.job.max_steps else None
        self.model.fit(
            train,
            validation_data=val,
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps,
            verbose=0,
            callbacks=self.callbacks(phase),
        )

    def analyse_splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Pooled features and logits of the validation and test splits: {"val": (f, z), "test": (f, z)}.

        From the cached features when the backbone never changed (phase 1 on features alone), else
        one pass of those images through the classifier's own layers, which gives both at once.
        """
        config = self.job.config
        split = self.data.split
        phase2_ran = config.fine_tune_epochs > 0 and self.counter.epochs_done > config.epochs
        if self.features is not None and "test" in self.features and not phase2_ran:
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
        pooled, logits = features_and_logits_model(self.model).predict(batches, verbose=0)
        pooled = np.asarray(pooled, dtype=np.float32)[: len(positions)].astype(np.float16)
        logits = np.asarray(logits, dtype=np.float32)[: len(positions)]
        n_val = len(split.val)
        return {"val": (pooled[:n_val], logits[:n_val]), "test": (pooled[n_val:], logits[n_val:])}

    def extraction_batch_size(self) -> int:
        """Images per forward-only step: sized to the device (it is inference), a multiple of the replicas."""
        size = recommended_batch_size(self.device, self.job.config.image_size, training=False)
        return padded_length(max(size, self.job.config.batch_size), self.replicas)


def compile_for(model: keras.Model, learning_rate: float, label_smoothing: float, steps_per_execution: int = 1) -> None:
    """Adam and categorical cross-entropy (optionally smoothed), with accuracy."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )


def console_bar(job: TrainingJob, desc: str, total: int, unit: str):
    """A tqdm bar on stderr for the CLI (None in the background or when stderr is not a terminal)."""
    if not job.console:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not sys.stderr.isatty())
