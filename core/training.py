"""Two-phase transfer learning of one run, reporting to the run store as it goes.

Phase 1 trains the head with the backbone frozen: on cached backbone features when
`feature_cache` is on (seconds per epoch), else on images through the frozen ResNet-50.
Phase 2 (optional) unfreezes the top residual stages, BatchNorm kept frozen, at a lower rate.
The best weights on validation loss win; the test split is evaluated and stored with the run.
"""

from __future__ import annotations

import logging
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from core.config import TrainConfig
from core.datasets import DatasetIndex, split_indices
from core.device import (
    DeviceInfo,
    describe,
    dtype_policy,
    input_workers,
    mixed_precision_policy,
    recommended_batch_size,
)
from core.distribute import SINGLE, Parallelism, data_parallel, pad_rows, padded_length
from core.evaluation import Evaluation
from core.features import ExtractionBatches, ExtractionStopped, FeatureCache, build_extractor, weights_hash
from core.imaging import center_crop
from core.ingest import ImageCache, IngestCancelled, ingest
from core.model import backbone_of, build_classifier, head_of, trainable_summary, unfreeze
from core.runs import CHECKPOINT_FILE, MODEL_FILE, RunState, RunStatus, RunStore

log = logging.getLogger("flora")
_STATUS_INTERVAL = 1.0  # seconds between status/metrics writes within an epoch
IMBALANCE_RATIO = 1.5  # "auto" class weighting turns on above this largest/smallest ratio
HEAD_STEPS_PER_CALL = 8  # training steps per compiled call when the head trains on cached features
VALIDATION_BATCH = 512  # rows per validation batch on cached features


class StopRequested(RuntimeError):
    """The run was asked to stop before any epoch finished."""


# ----------------------------------------------------------------------------- batch sources


class ImageBatches(keras.utils.PyDataset):
    """Batches of centre-cropped cached images (uint8 0-255) with one-hot labels.

    uint8, not float32: a quarter of the bytes to copy and to send to a GPU; the model's input
    casts them. With `replicas` > 1 each batch is padded to a multiple of it (JAX shards batches
    evenly): padded rows repeat the last image and carry sample weight 0, and `predict` callers
    drop the extra rows.
    """

    def __init__(
        self,
        cache: ImageCache,
        positions: np.ndarray,
        num_classes: int,
        image_size: int,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        sample_weights: np.ndarray | None = None,  # one weight per class
        labels: bool = True,
        replicas: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.cache = cache
        self.positions = np.asarray(positions, dtype=np.int64)
        self.num_classes = num_classes
        self.image_size = image_size
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.class_weights = sample_weights
        self.with_labels = labels
        self.replicas = max(1, replicas)
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(self.positions) if shuffle else self.positions

    def __len__(self) -> int:
        return math.ceil(len(self.positions) / self.batch_size)

    def __getitem__(self, index: int):
        chosen = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        x = np.ascontiguousarray(center_crop(self.cache.read(chosen), self.image_size))
        return _batch(x, self.cache.labels[chosen], self, with_labels=self.with_labels)

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self._order = self._rng.permutation(self.positions)


class FeatureBatches(keras.utils.PyDataset):
    """Batches of cached features; each sample draws one of its views at random every epoch."""

    def __init__(
        self,
        views: np.ndarray,
        labels: np.ndarray,
        num_classes: int,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        sample_weights: np.ndarray | None = None,
        replicas: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.views = views  # (V, N, 2048)
        self.labels = np.asarray(labels)
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.class_weights = sample_weights
        self.replicas = max(1, replicas)
        self._rng = np.random.default_rng(seed)
        self._draw()

    def _draw(self) -> None:
        n = self.views.shape[1]
        self._order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        self._view = self._rng.integers(0, self.views.shape[0], size=n)

    def __len__(self) -> int:
        return math.ceil(self.views.shape[1] / self.batch_size)

    def __getitem__(self, index: int):
        chosen = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        x = self.views[self._view[chosen], chosen].astype("float32")
        return _batch(x, self.labels[chosen], self)

    def on_epoch_end(self) -> None:
        self._draw()


def _batch(x: np.ndarray, classes: np.ndarray, source, with_labels: bool = True) -> tuple:
    """(x,) or (x, y[, w]) for one batch, its rows padded to a multiple of `source.replicas`.

    Under several replicas every batch carries weights (one structure for all batches) and
    padded rows weigh 0, so they count in neither the loss's numerator nor the metrics.
    """
    n = len(x)
    length = padded_length(n, source.replicas)
    x = pad_rows(x, length)
    if not with_labels:
        return (x,)
    y = pad_rows(keras.utils.to_categorical(classes, source.num_classes).astype("float32"), length)
    weights = None if source.class_weights is None else source.class_weights[classes].astype("float32")
    if source.replicas > 1:
        weights = np.ones(n, dtype="float32") if weights is None else weights
        weights = np.concatenate([weights, np.zeros(length - n, dtype="float32")])
    return (x, y) if weights is None else (x, y, weights)


# ----------------------------------------------------------------------------- callbacks


@dataclass
class _Progress:
    """Counters shared by the callbacks of both phases."""

    epochs_done: int = 0
    global_step: int = 0
    started: float = field(default_factory=time.time)


class RunLogger(keras.callbacks.Callback):
    """Appends metrics to the run store every epoch and every second or so, and honours STOP."""

    def __init__(self, store: RunStore, run_id: str, phase: int, progress: _Progress, epochs_total: int):
        super().__init__()
        self.store, self.run_id, self.phase = store, run_id, phase
        self.progress = progress
        self.epochs_total = epochs_total
        self.stopped = False
        self._last_write = 0.0
        self._epoch_start = time.time()
        self._epoch = 0
        self._last_batch = -1

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1  # Keras counts from 0; fit(initial_epoch=...) keeps phase 2 global
        self._epoch_start = time.time()
        self._last_batch = -1

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution > 1 Keras calls this once per execution, with its last step.
        self.progress.global_step += batch - self._last_batch
        self._last_batch = batch
        if self.store.stop_requested(self.run_id):
            self.model.stop_training = True
            self.stopped = True
        now = time.time()
        steps = self.params.get("steps") or 0
        if now - self._last_write >= _STATUS_INTERVAL or batch + 1 == steps:
            self._last_write = now
            record = {
                "kind": "batch",
                "phase": self.phase,
                "epoch": self._epoch,
                "batch": batch + 1,
                "steps": steps,
                "step": self.progress.global_step,
                "time": now,
                **_scalars(logs),
            }
            self.store.append_metrics(self.run_id, record)
            self.store.set_status(
                self.run_id,
                phase=self.phase,
                epoch=self._epoch,
                batch=batch + 1,
                steps=steps,
                epochs_total=self.epochs_total,
                epoch_started_at=self._epoch_start,
            )

    def on_epoch_end(self, epoch, logs=None):
        self.progress.epochs_done = epoch + 1
        now = time.time()
        record = {
            "kind": "epoch",
            "phase": self.phase,
            "epoch": epoch + 1,
            "step": self.progress.global_step,
            "time": now,
            "duration": now - self._epoch_start,
            "lr": _learning_rate(self.model),
            **_scalars(logs),
        }
        if self.stopped:
            record["partial"] = True  # cut short by STOP; Keras still validated it
        self.store.append_metrics(self.run_id, record)
        self.store.set_status(
            self.run_id,
            phase=self.phase,
            epoch=epoch + 1,
            epochs_done=epoch + 1,
            epochs_total=self.epochs_total,
            last_epoch=record,
        )


class BestWeights(keras.callbacks.Callback):
    """Keeps the classifier's weights from the epoch with the lowest validation loss (across phases).

    It copies only the part that is training (`track`): in phase 1 on features that is the head,
    a few hundred KB, rather than all of ResNet-50 (~100 MB) at every better epoch.
    """

    def __init__(self, classifier: keras.Model, checkpoint: Path | None = None, state: dict | None = None):
        super().__init__()
        self.classifier = classifier
        self.tracked = classifier  # the part of the classifier whose weights change now
        self.checkpoint = checkpoint
        self.state = state if state is not None else {"best": math.inf, "epoch": None, "weights": None}

    def track(self, part: keras.Model) -> None:
        """From now on only `part` (the head, or the whole classifier) changes.

        A best snapshot of a smaller part grows into one of `part`: the rest has not changed since.
        """
        saved = self.state.get("part", self.tracked)
        if self.state["weights"] is not None and saved is not part:
            current = saved.get_weights()
            saved.set_weights(self.state["weights"])
            self.state["weights"] = part.get_weights()
            saved.set_weights(current)
        self.state["part"] = part
        self.tracked = part

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_loss")
        if value is None or not math.isfinite(value) or value >= self.state["best"]:
            return
        self.state.update(best=float(value), epoch=epoch + 1, weights=self.tracked.get_weights(), part=self.tracked)
        if self.checkpoint is not None:
            self.classifier.save_weights(self.checkpoint)

    def restore(self) -> int | None:
        """Put the best weights back; returns the epoch they came from."""
        if self.state["weights"] is not None:
            self.state.get("part", self.tracked).set_weights(self.state["weights"])
        return self.state["epoch"]


class ConsoleProgress(keras.callbacks.Callback):
    """A progress bar per epoch on stderr (a line per epoch when stderr is not a terminal)."""

    def __init__(self, phase: int, epochs_total: int):
        super().__init__()
        self.phase, self.epochs_total = phase, epochs_total
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        from tqdm import tqdm

        self.bar = tqdm(
            total=self.params.get("steps"),
            desc=f"phase {self.phase} epoch {epoch + 1}/{self.epochs_total}",
            unit="batch",
            file=sys.stderr,
            leave=False,
            disable=not sys.stderr.isatty(),
        )

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is not None:
            self.bar.update(batch + 1 - self.bar.n)  # several steps per call with steps_per_execution
            self.bar.set_postfix({k: f"{v:.3f}" for k, v in _scalars(logs).items()}, refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        if self.bar is not None:
            self.bar.close()
        scalars = _scalars(logs)
        text = "  ".join(f"{k} {v:.4f}" for k, v in scalars.items())
        log.info("phase %d epoch %d/%d  %s", self.phase, epoch + 1, self.epochs_total, text)


def _scalars(logs) -> dict[str, float]:
    out = {}
    for key, value in (logs or {}).items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def _learning_rate(model) -> float | None:
    try:
        return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    except Exception:
        return None


# ----------------------------------------------------------------------------- the run


@dataclass
class RunContext:
    """Everything one training run needs, and where it reports."""

    store: RunStore
    run_id: str
    index: DatasetIndex
    config: TrainConfig
    cache_root: Path
    console: bool = True
    ingest_workers: int | None = None
    device: DeviceInfo | None = None
    # At most this many training steps per epoch on images (benchmarks, smoke tests); None: all.
    max_steps: int | None = None
    parallel: Parallelism = field(default_factory=lambda: Parallelism(SINGLE, 1))
    _stage_write: float = 0.0
    _stage_name: str | None = None

    @property
    def replicas(self) -> int:
        return self.parallel.replicas

    @property
    def workers(self) -> int:
        """Threads reading batches from the image cache ahead of the model."""
        return input_workers(self.device) if self.device is not None else 1

    @property
    def run_dir(self) -> Path:
        return self.store.run_dir(self.run_id)

    def should_stop(self) -> bool:
        return self.store.stop_requested(self.run_id)

    def stage(self, name: str, done: int | None = None, total: int | None = None, force: bool = False) -> None:
        """Report the current stage (and its progress), at most about once a second."""
        now = time.time()
        if not force and done is not None and total and done < total and now - self._stage_write < 0.5:
            return
        self._stage_write = now
        fields: dict[str, Any] = {"stage": name}
        if name != self._stage_name:  # a new stage: its ETA is measured from here
            self._stage_name = name
            fields["stage_started_at"] = now
        if done is not None and total is not None:
            fields["stage_progress"] = [done, total]
        else:
            fields["stage_progress"] = None
        self.store.set_status(self.run_id, **fields)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and Keras's global generator, for reproducible runs.

    keras.utils.set_random_seed also seeds TensorFlow whenever it is installed, which imports it
    (and may start its GPU runtime) inside a JAX or torch process. Flora feeds data without tf.data,
    so on other backends it seeds what they use and leaves TensorFlow alone.
    """
    if keras.backend.backend() == "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    random.seed(seed)
    np.random.seed(seed)
    try:
        from keras.src.backend.common import global_state
        from keras.src.random import seed_generator

        global_state.set_global_attribute("global_random_seed", seed)
        global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    except (ImportError, AttributeError):  # Keras moved its internals: fall back to the public call
        keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "torch":
        import torch

        torch.manual_seed(seed)


def train_run(ctx: RunContext) -> RunStatus:
    """Train, evaluate and save run `ctx.run_id` (already created in the store).

    Returns:
        The final status (state "done", or "stopped" when a stop was requested).

    Raises:
        Whatever made the run fail; the caller records it as failed.
    """
    config = ctx.config
    seed_everything(config.seed)
    ctx.device = ctx.device or describe()
    ctx.store.set_status(
        ctx.run_id,
        state=RunState.RUNNING,
        started_at=time.time(),
        device=ctx.device.label,
        epochs_total=config.total_epochs,
        epochs_done=0,
        phase=None,
        epoch=0,
    )
    log.info("run %s on %s", ctx.run_id, ctx.device.label)

    cache = _ingest(ctx)
    split = split_indices(
        cache.labels,
        ctx.index.classes,
        cache.splits if ctx.index.has_split else None,
        config.val_fraction,
        config.test_fraction,
        config.seed,
    )
    for note in split.notes:
        log.warning("split: %s", note)
    ctx.store.set_status(
        ctx.run_id,
        split={**split.sizes(), "source": split.source, "notes": split.notes},
        unreadable_images=len(cache.failures),
    )
    log.info("split (%s): %s", split.source, split.sizes())
    num_classes = len(ctx.index.classes)
    class_weights = _class_weights(cache.labels[split.train], num_classes, config.class_weighting)
    if class_weights is not None:
        log.info("class weights on (imbalanced classes): %s", np.round(class_weights, 2).tolist())

    policy = mixed_precision_policy(ctx.device)
    with dtype_policy(policy), data_parallel(ctx.device) as parallel:
        ctx.parallel = parallel
        ctx.store.set_status(ctx.run_id, parallel=parallel.label)
        if parallel.replicas > 1:
            log.info("training %s", parallel.label)
        ctx.stage("building model", force=True)
        model = build_classifier(
            num_classes,
            config.image_size,
            config.weights,
            config.head,
            config.dropout,
            config.augment,
            seed=config.seed,
            models_dir=ctx.store.root,
        )
        if policy:
            log.info("mixed precision: %s", policy)
        progress = _Progress()
        best = BestWeights(model)
        features = None
        if config.epochs > 0 and not ctx.should_stop():
            if config.feature_cache:
                features = _phase1_on_features(ctx, model, cache, split, class_weights, progress, best)
            else:
                _fit_images(ctx, model, cache, split, class_weights, progress, best, phase=1)
        if config.fine_tune_epochs > 0 and not ctx.should_stop():
            unfreeze(model, config.unfreeze_stages)
            log.info("phase 2: unfroze %d stage(s): %s", config.unfreeze_stages, trainable_summary(model))
            _fit_images(ctx, model, cache, split, class_weights, progress, best, phase=2)

        stopped = ctx.should_stop()
        if progress.epochs_done == 0:
            raise StopRequested("stopped before the first epoch finished")
        best_epoch = best.restore()
        ctx.stage("saving model", force=True)
        save_model(model, ctx.run_dir / MODEL_FILE)
        (ctx.run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
        ctx.stage("evaluating on the test split", force=True)
        phase2_ran = config.fine_tune_epochs > 0 and progress.epochs_done > config.epochs
        if features is not None and "test" in features and not phase2_ran:
            probabilities = _predict_arrays(ctx, head_of(model), features["test"].astype("float32"))
        else:
            probabilities = _predict_images(ctx, model, cache, split.test)
    evaluation = Evaluation(
        probabilities=np.asarray(probabilities, dtype=np.float32),
        labels=cache.labels[split.test],
        classes=ctx.index.classes,
        paths=[cache.paths[i] for i in split.test],
        cache_positions=np.asarray(split.test),
    )
    evaluation.save(ctx.run_dir)
    summary = evaluation.summary()
    log.info(
        "test accuracy %.4f on %d images (best epoch %s)",
        summary["accuracy"],
        len(split.test),
        best_epoch,
    )
    return ctx.store.set_status(
        ctx.run_id,
        state=RunState.STOPPED if stopped else RunState.DONE,
        finished_at=time.time(),
        stage=None,
        stage_progress=None,
        accuracy=summary["accuracy"],
        macro_f1=summary["macro"]["f1"],
        best_epoch=best_epoch,
        epochs_done=progress.epochs_done,
    )


def _ingest(ctx: RunContext) -> ImageCache:
    bar = _console_bar(ctx, "decoding images", len(ctx.index.entries), unit="img")

    def report(done: int, total: int) -> None:
        ctx.stage("decoding images", done, total)
        if bar is not None:
            bar.n = done
            bar.refresh()

    try:
        cache = ingest(
            ctx.index,
            ctx.config.cache_size,
            ctx.cache_root,
            progress=report,
            workers=ctx.ingest_workers,
            should_stop=ctx.should_stop,
        )
    except IngestCancelled as e:
        raise StopRequested(str(e)) from None
    finally:
        if bar is not None:
            bar.close()
    log.info(
        "images: %d decoded%s, %d unreadable",
        len(cache),
        " (cache hit)" if cache.hit else "",
        len(cache.failures),
    )
    for failure in cache.failures[:20]:
        log.warning("skipped %s: %s", failure["path"], failure["reason"])
    return cache


def _console_bar(ctx: RunContext, desc: str, total: int, unit: str):
    if not ctx.console:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not sys.stderr.isatty())


def _class_weights(train_labels: np.ndarray, num_classes: int, mode: str) -> np.ndarray | None:
    """Per-class weights n / (classes * count), or None when weighting is off or not needed."""
    counts = np.bincount(train_labels, minlength=num_classes).astype(np.float64)
    present = counts[counts > 0]
    if mode == "none" or len(present) == 0:
        return None
    if mode == "auto" and present.max() / present.min() <= IMBALANCE_RATIO:
        return None
    weights = np.where(counts > 0, counts.sum() / (len(present) * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32)


def _compile(model: keras.Model, learning_rate: float, label_smoothing: float, steps_per_execution: int = 1) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )


def _callbacks(ctx: RunContext, phase: int, progress: _Progress, best: BestWeights) -> list:
    config = ctx.config
    callbacks = [RunLogger(ctx.store, ctx.run_id, phase, progress, config.total_epochs), best]
    if config.early_stopping_patience > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.early_stopping_patience))
    if ctx.console:
        callbacks.append(ConsoleProgress(phase, config.total_epochs))
    return callbacks


def _phase1_on_features(ctx, model, cache, split, class_weights, progress, best) -> dict[str, np.ndarray]:
    """Phase 1 on cached pooled features: extract (or load) them, then fit the head alone."""
    config = ctx.config
    extractor = build_extractor(model)
    key = weights_hash(backbone_of(model))
    store = FeatureCache(ctx.cache_root, cache, config.image_size, key, workers=ctx.workers, replicas=ctx.replicas)
    batch = extraction_batch_size(ctx)

    def extract(name: str, positions, view: int = 0) -> np.ndarray:
        label = f"extracting features: {name}" + (f" (augmented view {view})" if view else "")
        bar = _console_bar(ctx, label, len(positions), unit="img")

        def report(done: int, total: int) -> None:
            ctx.stage(label, done, total)
            if bar is not None:
                bar.total = total
                bar.n = done
                bar.refresh()

        try:
            return store.get(
                extractor,
                positions,
                view,
                config.augment,
                config.seed,
                batch,
                report,
                ctx.should_stop,
            )
        except ExtractionStopped as e:
            raise StopRequested(str(e)) from None
        finally:
            if bar is not None:
                bar.close()

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
    log.info("phase 1 on cached features: %d train images x %d view(s)", len(split.train), len(views))

    head = head_of(model)
    best.track(head)  # the backbone stays as it is: only the head's weights need keeping
    # A head step is a few milliseconds, much of it the framework's per-call cost: run several per
    # call (on one device: Keras's multi-step loop fails under tf.distribute.MirroredStrategy).
    steps_per_call = HEAD_STEPS_PER_CALL if ctx.replicas == 1 else 1
    _compile(head, config.learning_rate, config.label_smoothing, steps_per_execution=steps_per_call)
    num_classes = len(ctx.index.classes)
    train = FeatureBatches(
        features["train"],
        cache.labels[split.train],
        num_classes,
        config.batch_size,
        seed=config.seed,
        sample_weights=class_weights,
        replicas=ctx.replicas,
    )
    val = FeatureBatches(  # big batches: validating is a forward pass; the mean loss is the same
        features["val"][None],
        cache.labels[split.val],
        num_classes,
        max(config.batch_size, VALIDATION_BATCH),
        shuffle=False,
        replicas=ctx.replicas,
    )
    ctx.stage("training the head on cached features", force=True)
    head.fit(
        train,
        validation_data=val,
        epochs=config.epochs,
        verbose=0,
        callbacks=_callbacks(ctx, 1, progress, best),
    )
    return features


def extraction_batch_size(ctx: RunContext) -> int:
    """Images per feature-extraction step: sized to the device (it is inference), a multiple of the replicas."""
    size = recommended_batch_size(ctx.device, ctx.config.image_size, training=False) if ctx.device else 64
    return padded_length(max(size, ctx.config.batch_size), ctx.replicas)


def _predict_arrays(ctx: RunContext, model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """`model.predict` on in-memory rows, padded so that every replica gets an equal share."""
    n = len(x)
    out = model.predict(pad_rows(x, padded_length(n, ctx.replicas)), batch_size=batch_size * ctx.replicas, verbose=0)
    return np.asarray(out)[:n]


def _predict_images(ctx: RunContext, model: keras.Model, cache: ImageCache, positions: np.ndarray) -> np.ndarray:
    """Class probabilities for cached images at `positions`.

    Every batch has the same shape (the last one padded, the extra rows dropped), so the classifier
    is traced or compiled once for the whole split.
    """
    batches = ExtractionBatches(
        cache, positions, ctx.config.image_size, extraction_batch_size(ctx), workers=ctx.workers
    )
    return np.asarray(model.predict(batches, verbose=0))[: len(positions)]


def _fit_images(ctx, model, cache, split, class_weights, progress, best, phase: int) -> None:
    """Fit the whole classifier on images (augmentation inside the model)."""
    config = ctx.config
    num_classes = len(ctx.index.classes)
    learning_rate = config.learning_rate if phase == 1 else config.fine_tune_learning_rate
    _compile(model, learning_rate, config.label_smoothing)
    reading = {"replicas": ctx.replicas, "workers": ctx.workers, "max_queue_size": 2 * ctx.workers}
    train = ImageBatches(
        cache,
        split.train,
        num_classes,
        config.image_size,
        config.batch_size,
        shuffle=True,
        seed=config.seed + phase,
        sample_weights=class_weights,
        **reading,
    )
    val = ImageBatches(cache, split.val, num_classes, config.image_size, config.batch_size, **reading)
    initial_epoch = progress.epochs_done
    epochs = initial_epoch + (config.epochs if phase == 1 else config.fine_tune_epochs)
    best.track(model)
    best.checkpoint = ctx.run_dir / CHECKPOINT_FILE  # epochs are slow here: keep the best on disk too
    ctx.stage("training" if phase == 1 else "fine-tuning", force=True)
    steps = min(ctx.max_steps, len(train)) if ctx.max_steps else None
    model.fit(
        train,
        validation_data=val,
        epochs=epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=steps,
        verbose=0,
        callbacks=_callbacks(ctx, phase, progress, best),
    )


def save_model(model: keras.Model, path: str | os.PathLike) -> None:
    """Save in Keras format, atomically (Keras wants the name to end in .keras)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
