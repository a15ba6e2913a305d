"""Two-phase transfer learning of one run, reporting to the run store as it goes.

Phase 1 trains the head with the backbone frozen: on cached backbone features when
`feature_cache` is on (seconds per epoch), else on images through the frozen ResNet-50.
Phase 2 (optional) unfreezes the top residual stages, BatchNorm kept frozen, at a lower rate.
The best weights on validation loss (a multi-label run's: validation mAP) win and are saved; their validation and
test outputs are handed on (`Fit`) to the stage that writes what the run keeps (core.results.after_fit), called by
the run's job.

`train_run(job)` reads top to bottom as those steps; the fits themselves are in `core.train.trainer`,
the batch sources in `core.train.batches`, the Keras callbacks in `core.train.callbacks`, the feature cache
in `core.train.features`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from core.data.corrections import relabel_lists
from core.data.datasets import DatasetIndex
from core.data.ingest import ImageCache, ingest
from core.data.multilabel_split import targets_of
from core.device import (
    describe,
    dtype_policy,
    input_workers,
    mixed_precision_policy,
)
from core.network.model import backbone_of, classifier_for, trainable_summary, unfreeze
from core.network.saved import without_inner_training_state
from core.processes import JobState
from core.runs.analysis import RunAnalysis, SplitArrays
from core.runs.files import run_files
from core.runs.split import draw_split, run_split
from core.settings.config import IMBALANCE_RATIO, ConfigError, TrainConfig
from core.train.distribute import data_parallel
from core.train.features import weights_hash
from core.train.multilabel import positive_weights
from core.train.trainer import StageReporter, StopRequested, Trainer, TrainingData, TrainingJob, console_bar

log = logging.getLogger("flora")


@dataclass
class Fit:
    """What the fit hands on to the stage after it (core.results.after_fit): nothing of it is written yet."""

    analysis: RunAnalysis  # the validation and test splits' logits and pooled features, labels, paths
    outputs: dict[str, tuple[np.ndarray, np.ndarray]]  # "val", "test": (pooled features, logits) as computed
    train_features: np.ndarray | None  # the training split's final pooled features, when the fit has them
    best_epoch: int | None
    epochs_done: int
    stopped: bool  # a stop was asked for and honoured: the best weights so far were kept
    model: keras.Model | None = None  # the classifier with those weights: the reference runs it, not model.keras again
    backbone_key: str | None = None  # its backbone's weights_hash while still the frozen one the features came from


def train_run(job: TrainingJob) -> Fit:
    """Train run `job.run_id` (already created in the store), save its best model, and compute the validation
    and test splits' outputs with it.

    Returns:
        What the fit hands on; the run's job writes what the run keeps from it and records how it ended.

    Raises:
        Whatever made the run fail; the caller records it as failed. Cancelled: stopped before a first epoch.
    """
    config = job.config
    keras.utils.set_random_seed(config.seed)
    device = job.device or describe()
    job.store.set_status(
        job.run_id,
        state=JobState.RUNNING,
        started_at=time.time(),
        device=device.label,
        epochs_total=config.total_epochs,
        epochs_done=0,
        phase=None,
        epoch=0,
    )
    log.info("run %s on %s", job.run_id, device.label)
    report = StageReporter.for_run(job.store, job.run_id)
    data = prepare_data(job, report)

    policy = mixed_precision_policy(device)
    with dtype_policy(policy), data_parallel(device) as parallel:
        spread = f"; phase 2 across {job.hosts.num_processes} processes (JAX, multi-host)" if job.hosts else ""
        job.store.set_status(job.run_id, parallel=parallel.label + spread)
        if policy or parallel.replicas > 1:
            log.info("mixed precision: %s; %s", policy or "off", parallel.label)
        report("building model", force=True)
        model = classifier_for(config, data.num_classes, models_dir=job.store.root)
        trainer = Trainer(job, data, model, parallel, report, input_workers(device), device)
        # Phase 1: only the new head learns; ResNet-50 stays frozen.
        if config.epochs > 0 and not job.should_stop():
            if config.feature_cache:
                trainer.fit_head_on_features()
            else:
                trainer.fit_on_images(phase=1)
        # Phase 2: the top stages fine-tune too (BatchNorm stays frozen), at a lower rate.
        if config.fine_tune_epochs > 0 and not job.should_stop():
            unfreeze(model, config.unfreeze_stages)
            log.info("phase 2: unfroze %d stage(s): %s", config.unfreeze_stages, trainable_summary(model))
            trainer.fit_on_images(phase=2)

        stopped = job.should_stop()
        if trainer.counter.epochs_done == 0:
            raise StopRequested("stopped before the first epoch finished")
        best_epoch = trainer.best.restore()
        report("saving model", force=True)
        save_model(model, run_files(job.run_dir).model)
        run_files(job.run_dir).checkpoint.unlink(missing_ok=True)
        report("evaluating on the test split", force=True)
        arrays = trainer.analyse_splits()

    analysis = RunAnalysis(
        job.index.classes,
        *(
            SplitArrays(
                logits=arrays[name][1],
                features=arrays[name][0],
                labels=data.cache.labels[positions],
                paths=[data.cache.paths[i] for i in positions],
                positions=positions,
                targets=None if data.targets is None else data.targets.dense(positions),
            )
            for name, positions in (("val", data.split.val), ("test", data.split.test))
        ),
    )
    final = trainer.features is not None and trainer.features_are_final
    return Fit(
        analysis,
        arrays,
        trainer.features["train"][0] if final else None,
        best_epoch,
        trainer.counter.epochs_done,
        stopped,
        model,
        weights_hash(backbone_of(model)) if final else None,  # the key its features are cached under
    )


def prepare_data(job: TrainingJob, report: StageReporter) -> TrainingData:
    """Decode every image into the cache (once per dataset and size), draw the run's split, weigh the classes."""
    run = job.store.get(job.run_id)
    with _decoding(report, job.console, len(job.index.entries)) as progress:
        data = run_split(
            run,
            job.cache_root,
            index=job.index,
            progress=progress,
            should_stop=job.should_stop,
            workers=job.ingest_workers,
        )
    training = _training_data(data.cache, data.split, job.index, job.config, data.corrections)
    job.store.set_status(
        job.run_id,
        split={**data.split.sizes(), "source": data.split.source, "notes": data.split.notes},
        unreadable_images=len(data.cache.failures),
    )
    return training


def load_training_data(
    index: DatasetIndex,
    config: TrainConfig,
    cache_root: Path,
    report: StageReporter,
    should_stop: Callable[[], bool],
    console: bool = False,
    workers: int | None = None,
    corrections: dict | None = None,
) -> TrainingData:
    """The decoded images of `index`, its split and class weights, for a sweep (a run uses `prepare_data`).

    The split follows the rule every run follows (core.runs.split.draw_split), so a sweep and the run it
    promotes see the same split for the same seed and `corrections`.

    Raises:
        Cancelled: `should_stop` said so while decoding (what was decoded is kept).
    """
    with _decoding(report, console, len(index.entries)) as progress:
        cache = ingest(
            index, config.cache_size, cache_root, progress=progress, workers=workers, should_stop=should_stop
        )
    return _training_data(cache, draw_split(cache, index, config, corrections), index, config, corrections)


def _training_data(
    cache: ImageCache, split, index: DatasetIndex, config: TrainConfig, corrections: dict | None = None
) -> TrainingData:
    hit = " (cache hit)" if cache.hit else ""
    log.info("images: %d decoded%s, %d unreadable", len(cache), hit, len(cache.failures))
    for failure in cache.failures[:20]:
        log.warning("skipped %s: %s", failure["path"], failure["reason"])
    for note in split.notes:
        log.warning("split: %s", note)
    log.info("split (%s): %s", split.source, split.sizes())
    check_task(index, config)
    num_classes = len(index.classes)
    if index.multilabel:
        targets = relabel_lists(corrections, cache.paths, targets_of(index, cache.paths), index.classes)
        weights = positive_weights(targets.dense(split.train), config.class_weighting)
        if weights is not None:
            log.info("positive weights per label (negatives / positives, capped): %s", weights_summary(weights))
        return TrainingData(cache, split, weights, num_classes, targets)
    weights = class_weights(cache.labels[split.train], num_classes, config.class_weighting)
    if weights is not None:
        log.info("class weights on (imbalanced classes): %s", weights_summary(weights))
    return TrainingData(cache, split, weights, num_classes)


def check_task(index: DatasetIndex, config: TrainConfig) -> None:
    """Refuse settings made for another kind of dataset (core.train.jobs.for_dataset gives the right ones).

    Raises:
        ConfigError: a multi-label dataset with single-label settings, or the other way round.
    """
    if index.task != config.task:
        raise ConfigError(
            f"{index.name} is a {'multi-label' if index.multilabel else 'single-label'} dataset but the settings say "
            f"task={config.task!r}: train it with task={index.task!r}"
        )


@contextlib.contextmanager
def _decoding(report: StageReporter, console: bool, total: int) -> Iterator[Callable[[int, int], None]]:
    """A progress callback for decoding (the run's status, and a console bar)."""
    bar = console_bar(console, "decoding images", total, unit="img")

    def progress(done: int, total: int) -> None:
        report("decoding images", done, total)
        if bar is not None:
            bar.n = done
            bar.refresh()

    try:
        yield progress
    finally:
        if bar is not None:
            bar.close()


def weights_summary(weights: np.ndarray, listed: int = 20) -> str:
    """The class weights for a log line: each one for a few classes, their range for many (1,000 numbers are no log)."""
    if len(weights) <= listed:
        return str(np.round(weights, 2).tolist())
    used = weights[weights > 0]
    low, high = (float(used.min()), float(used.max())) if len(used) else (0.0, 0.0)
    unused = int((weights == 0).sum())
    median = float(np.median(used)) if len(used) else 0.0
    return f"{len(weights)} classes, from {low:.2f} to {high:.2f} (median {median:.2f})" + (
        f"; {unused} with no training photo weigh 0" if unused else ""
    )


def class_weights(train_labels: np.ndarray, num_classes: int, mode: str) -> np.ndarray | None:
    """Per-class weights n / (classes * count), or None when weighting is off or not needed.

    "auto" weighs only when the largest class has more than IMBALANCE_RATIO times the images of
    the smallest; an absent class gets weight 0.
    """
    counts = np.bincount(train_labels, minlength=num_classes).astype(np.float64)
    present = counts[counts > 0]
    if mode == "none" or len(present) == 0:
        return None
    if mode == "auto" and present.max() / present.min() <= IMBALANCE_RATIO:
        return None
    weights = np.where(counts > 0, counts.sum() / (len(present) * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32)


def save_model(model: keras.Model, path: str | os.PathLike) -> None:
    """Save in Keras format, atomically (Keras wants the name to end in .keras)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        with without_inner_training_state(model):  # the head's own Adam: never read back, and it slows every load
            model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
