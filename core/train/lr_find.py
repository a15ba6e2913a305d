"""The learning-rate range test: the loss as the rate grows exponentially, and the rate it suggests.

Leslie Smith's range test as fastai runs it (`Learner.lr_find`): a fresh model takes one optimizer
step per batch while the rate grows geometrically from `START_LR` to `END_LR`; the loss of each step
is smoothed (an exponential moving average with bias correction, beta 0.98) and the test stops once
the smoothed loss passes 4x its minimum (once the first tenth of the steps have settled: a trained
head's first batches swing tenfold) or is not a number. The curve is flat where the rate is too small
to move the weights, falls where it learns, and explodes past the largest usable rate.

The suggestion is fastai's `valley`: the middle (on the log scale) of the longest stretch over which
the loss keeps falling, with `steepest` (where it falls fastest before its lowest point) and
`minimum / 10` beside it.

The head phase is the real phase 1 on the same pooled features (core.train.trainer.head_features, through
the feature cache: a run afterwards reuses them), the same head, Adam, loss and label smoothing. The
fine-tune phase is phase 2: the head first trained as phase 1 would, then the config's top stages
unfrozen (BatchNorm frozen) and the whole classifier stepped on images.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.data.datasets import DatasetError, DatasetIndex
from core.device import describe, dtype_policy, input_workers, mixed_precision_policy, without_cuda_noise
from core.errors import Unavailable
from core.settings.config import ConfigError, TrainConfig

log = logging.getLogger("flora")
HEAD, FINE_TUNE = "head", "fine-tune"
PHASES = (HEAD, FINE_TUNE)
START_LR, END_LR = 1e-7, 10.0
STEPS = {HEAD: 200, FINE_TUNE: 100}  # default steps: the head's take milliseconds, fine-tuning's a backward pass
MIN_POINTS = 10  # the fewest recorded steps a suggestion is made from
BETA = 0.98  # fastai's AvgSmoothLoss
DIVERGED = 4.0  # stop when the smoothed loss passes this multiple of its minimum
VALLEY = "valley"
# The fields a phase's range test depends on; the others (epochs, schedules, the rates themselves) change
# nothing in it, so two configs that differ only there share one test.
HEAD_FIELDS = (
    "image_size",
    "weights",
    "backbone",
    "head",
    "dropout",
    "batch_size",
    "label_smoothing",
    "class_weighting",
    "augment",
    "augmented_views",
    "val_fraction",
    "test_fraction",
    "seed",
)
FINE_TUNE_FIELDS = (
    *HEAD_FIELDS,
    "epochs",
    "learning_rate",
    "lr_schedule",
    "early_stopping_patience",
    "unfreeze_stages",
)


class RangeTestFailed(Unavailable):
    """The range test recorded too few points to suggest a rate (the loss was not a number from the start)."""


@dataclass
class RangeTest:
    """What a range test found: its curve, the rate it suggests and why, and what it ran on."""

    phase: str
    curve: list[tuple[float, float]]  # (learning rate, smoothed loss) per recorded step
    raw_losses: list[float]  # each step's own loss, for the faint line under the smoothed one
    suggested_lr: float
    method: str
    reason: str
    steepest_lr: float
    min_lr_over_10: float
    steps: int  # steps run
    planned_steps: int
    stopped: str  # why it ended: "the last planned step", "the loss diverged ..."
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)  # the essentials of what it ran on

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["curve"] = [[lr, loss] for lr, loss in self.curve]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RangeTest:
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["curve"] = [(float(lr), float(loss)) for lr, loss in values.get("curve", [])]
        return cls(**values)


# ----------------------------------------------------------------------------- the numbers


def learning_rates(steps: int, start: float = START_LR, end: float = END_LR) -> np.ndarray:
    """`steps` rates from `start` to `end`, each a constant factor above the one before."""
    if steps < 2:
        raise ConfigError(f"a range test needs at least 2 steps. Received: steps={steps}")
    return start * (end / start) ** (np.arange(steps) / (steps - 1))


class SmoothedLoss:
    """An exponential moving average of the losses, bias-corrected (fastai's AvgSmoothLoss), and the stop rule."""

    def __init__(self, beta: float = BETA, diverged: float = DIVERGED, settle: int = 0):
        self.beta, self.diverged = beta, diverged
        self.settle = settle  # steps before the divergence rule applies: the first ones swing with each batch
        self.average, self.count = 0.0, 0
        self.best = math.inf

    def add(self, loss: float) -> float:
        """The smoothed loss after `loss`: without the correction the first values would lean towards 0."""
        self.count += 1
        self.average = self.beta * self.average + (1 - self.beta) * loss
        smoothed = self.average / (1 - self.beta**self.count)
        if smoothed < self.best:
            self.best = smoothed
        return smoothed

    def stop_reason(self, smoothed: float) -> str | None:
        if not math.isfinite(smoothed):
            return "the loss stopped being a number"
        if self.count > self.settle and smoothed > self.diverged * self.best:
            return f"the smoothed loss passed {self.diverged:g}x its minimum"
        return None


def smooth(losses, beta: float = BETA) -> np.ndarray:
    """Every smoothed value of `losses` (SmoothedLoss applied in turn)."""
    average = SmoothedLoss(beta)
    return np.array([average.add(float(loss)) for loss in losses])


def valley(losses) -> tuple[int, int, int]:
    """fastai's valley rule: (suggested index, valley start, valley end).

    The longest decreasing subsequence of the losses marks the longest valley; the suggestion sits half-way
    along it (a third plus a sixth of its length, as fastai computes it). Quadratic, on a few hundred points.
    """
    n = len(losses)
    longest = [1] * n  # longest[i]: the longest decreasing subsequence ending at i
    end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
        if longest[end] < longest[i]:
            end = i
    start = max(0, end - longest[end])  # fastai's start, one before the subsequence (never before the curve)
    sections = (end - start) / 3
    return start + int(sections) + int(sections / 2), start, end


def steepest(lrs, losses) -> int:
    """The index where the loss falls fastest per factor of rate on its way to its minimum (fastai's `steep`).

    fastai looks at the whole curve; past an explosion a broken head's loss can fall again towards chance (its
    outputs flattened), steeply and with nothing learnt, so the search stops at the lowest point.
    """
    lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    lowest = int(np.argmin(losses))
    if lowest == 0:
        return 0
    slopes = np.diff(losses[: lowest + 1]) / np.diff(np.log(lrs[: lowest + 1]))
    return int(np.argmin(slopes))


@dataclass(frozen=True)
class Suggestion:
    lr: float
    method: str
    reason: str
    steepest_lr: float
    min_lr_over_10: float


def suggest(lrs, losses, planned_steps: int) -> Suggestion:
    """The rate to train at from a smoothed curve, and why.

    As fastai does, the first tenth of the planned steps (the smoothing still settling) and the last five
    points (the explosion) are left out, when that leaves enough to read.

    Raises:
        RangeTestFailed: fewer than MIN_POINTS points.
    """
    lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    if len(lrs) < MIN_POINTS:
        raise RangeTestFailed(
            f"the range test recorded only {len(lrs)} step(s) before the loss stopped being a number: too few to "
            "suggest a rate (the features or the labels may be broken)"
        )
    first, last = planned_steps // 10, len(lrs) - 5
    if last - first >= MIN_POINTS:
        lrs, losses = lrs[first:last], losses[first:last]
    index, start, end = valley(losses)
    lowest = int(np.argmin(losses))
    steep = steepest(lrs, losses)
    reason = (
        f"valley (fastai's rule): the smoothed loss keeps falling for longest between {lrs[start]:.1e} and "
        f"{lrs[end]:.1e}; the suggestion is half-way along that stretch on the log scale, where the loss still falls "
        "steadily."
    )
    if index < lowest:
        reason += (
            f" It sits below the rate of the lowest loss ({lrs[lowest]:.1e}) on purpose: there the loss is about to "
            "blow up, and training holds a rate for thousands of steps, not one."
        )
    else:
        reason += (
            f" The curve is noisy: the suggestion is not below its lowest point ({lrs[lowest]:.1e}), so the lowest "
            f"loss's rate / 10 ({lrs[lowest] / 10:.1e}) is the safer choice."
        )
    return Suggestion(float(lrs[index]), VALLEY, reason, float(lrs[steep]), float(lrs[lowest] / 10))


def identity(config: TrainConfig, phase: str = HEAD) -> TrainConfig:
    """`config` with every field the phase's range test does not depend on at its default: the test's name."""
    check_phase(phase)
    kept = HEAD_FIELDS if phase == HEAD else FINE_TUNE_FIELDS
    defaults = TrainConfig()
    changes = {name: getattr(defaults, name) for name in defaults.__dataclass_fields__ if name not in kept}
    changes["fine_tune_epochs"] = 1 if phase == FINE_TUNE else 0
    return config.replace(**changes)


def rate_field(phase: str) -> str:
    """The TrainConfig field a phase's suggestion is for: `learning_rate` or `fine_tune_learning_rate`."""
    check_phase(phase)
    return "learning_rate" if phase == HEAD else "fine_tune_learning_rate"


def rounded(rate: float) -> float:
    """A suggested rate to two significant figures, as people type it (3.2e-4, not 3.1623e-4)."""
    return float(f"{rate:.2g}")


def check_phase(phase: str) -> None:
    if phase not in PHASES:
        raise ConfigError(f"phase must be one of {', '.join(PHASES)}. Received: phase={phase!r}")


# ----------------------------------------------------------------------------- running it


def find_learning_rate(
    index: DatasetIndex,
    config: TrainConfig,
    cache_root: str | Path,
    phase: str = HEAD,
    steps: int | None = None,
    corrections: dict | None = None,
    models_dir: str | Path | None = None,
    report: Callable[..., None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    console: bool = False,
    workers: int | None = None,
) -> RangeTest:
    """Run the range test for `phase` on the split and features `config` would train on.

    Args:
        index: the dataset, scanned (a run's: checked against its fingerprint by the caller).
        corrections: the label corrections applied (a run's own, or those kept for the dataset).
        models_dir: the run store, for weights "run:<id>".
        report: stage and progress, as a run reports them; should_stop: checked between steps.

    Raises:
        ConfigError: an unknown phase, too few steps, nothing to unfreeze. DatasetError: fewer than two classes.
        Cancelled: `should_stop` said so. RangeTestFailed: the loss was not a number from the start.
    """
    check_phase(phase)
    config = config.for_dataset(index)  # a multi-label dataset's test runs its loss (the form knows no task)
    steps = STEPS[phase] if steps is None else int(steps)
    if steps < MIN_POINTS:
        raise ConfigError(f"a range test needs at least {MIN_POINTS} steps. Received: steps={steps}")
    if phase == FINE_TUNE and config.unfreeze_stages < 1:
        raise ConfigError("the fine-tune range test needs unfreeze_stages >= 1 (there is nothing to fine-tune)")
    if len(index.classes) < (1 if index.multilabel else 2):
        raise DatasetError(f"a range test needs at least 2 classes; {index.root} has {len(index.classes)}")

    with without_cuda_noise():  # Keras and its framework load here: on a CPU-only machine, quietly
        import keras  # heavy: keras

        from core.train.trainer import Extraction, StageReporter, compile_for, extraction_batch_size  # heavy: keras
        from core.train.training import load_training_data  # heavy: keras

        device = describe()
    report = report or StageReporter(lambda **fields: None)
    started = time.perf_counter()
    keras.utils.set_random_seed(config.seed)  # the order a run follows, so the backbone (and its features) match
    data = load_training_data(index, config, Path(cache_root), report, should_stop, console, workers, corrections)
    batch_size = extraction_batch_size(device, config)
    extraction = Extraction(Path(cache_root), input_workers(device), 1, batch_size, report, should_stop, console)
    with dtype_policy(mixed_precision_policy(device)):
        subject = _head_subject if phase == HEAD else _fine_tune_subject
        model, batches = subject(data, config, extraction, models_dir)
        weights = data.class_weights if data.multilabel else None
        compile_for(model, START_LR, config.label_smoothing, positive_weights=weights, multilabel=data.multilabel)
        curve, raw, stopped = _sweep(model, batches, learning_rates(steps), phase, extraction)
    suggestion = suggest([lr for lr, _ in curve], [loss for _, loss in curve], steps)
    log.info("range test (%s): %d steps, suggested %.2e (%s)", phase, len(curve), suggestion.lr, stopped)
    return RangeTest(
        phase=phase,
        curve=curve,
        raw_losses=raw,
        suggested_lr=suggestion.lr,
        method=suggestion.method,
        reason=suggestion.reason,
        steepest_lr=suggestion.steepest_lr,
        min_lr_over_10=suggestion.min_lr_over_10,
        steps=len(curve),
        planned_steps=steps,
        stopped=stopped,
        seconds=round(time.perf_counter() - started, 3),
        config=_essentials(index, config, phase, len(data.split.train)),
    )


def _features(data, config: TrainConfig, extraction, models_dir):
    """The classifier `config` describes and the pooled features phase 1 trains on (through the feature cache)."""
    from core.network.model import classifier_for  # heavy: keras
    from core.train.trainer import head_features  # heavy: keras

    extraction.report("building model", force=True)
    model = classifier_for(config, data.num_classes, models_dir=models_dir)
    views = config.augmented_views if config.augment.enabled else 0
    return model, head_features(model, data, config, extraction, views, include_test=False)


def _head_subject(data, config: TrainConfig, extraction, models_dir):
    """Phase 1's subject: a new head (seeded as a run's and a sweep trial's) and batches of the cached features."""
    import keras  # heavy: keras

    from core.network.model import build_head  # heavy: keras
    from core.train.batches import FeatureBatches  # heavy: keras

    _, features = _features(data, config, extraction, models_dir)
    keras.utils.set_random_seed(config.seed)
    width = int(features["val"].shape[-1])
    head = build_head(data.num_classes, config.head, config.dropout, config.seed, width, config.task)
    batches = FeatureBatches(
        features["train"],
        data.labels_of(data.split.train),
        data.num_classes,
        config.batch_size,
        seed=config.seed,
        sample_weights=data.sample_weights,
    )
    return head, batches


def _fine_tune_subject(data, config: TrainConfig, extraction, models_dir):
    """Phase 2's subject: the classifier with the head phase 1 trains (on the cached features, as a run does), the
    config's top stages unfrozen (BatchNorm frozen), and batches of images (augmented inside the model)."""
    from core.network.model import head_of, unfreeze  # heavy: keras
    from core.train.batches import ImageBatches  # heavy: keras
    from core.train.trainer import fit_head, phase_callbacks  # heavy: keras

    model, features = _features(data, config, extraction, models_dir)
    if config.epochs > 0:
        extraction.report("training the head on cached features (phase 1)", force=True)
        fit_head(head_of(model), features, data, config, phase_callbacks(config))
    unfreeze(model, config.unfreeze_stages)
    batches = ImageBatches(
        data.cache,
        data.split.train,
        data.num_classes,
        config.image_size,
        config.batch_size,
        shuffle=True,
        seed=config.seed + 2,  # phase 2's order, as a run draws it
        sample_weights=data.sample_weights,
        targets=data.targets,
    )
    return model, batches


def _sweep(model, batches, rates: np.ndarray, phase: str, extraction):
    """One step per rate, each on the next batch (a new epoch's order when they run out); the recorded curve."""
    from core.train.trainer import StopRequested, console_bar  # heavy: keras

    label = f"range test ({phase})"
    bar = console_bar(extraction.console, label, len(rates), unit="step")
    # As many steps as `suggest` skips settle first: a trained head's first batches can differ 10x in loss.
    average = SmoothedLoss(settle=max(MIN_POINTS, len(rates) // 10))
    curve: list[tuple[float, float]] = []
    raw: list[float] = []
    stopped = "the last planned step"
    try:
        for step, rate in enumerate(rates):
            if extraction.should_stop():
                raise StopRequested("the range test was stopped on request")
            epoch, position = divmod(step, len(batches))
            if position == 0 and epoch:
                batches.on_epoch_end()
            x, y, *weights = batches[position]
            model.optimizer.learning_rate = float(rate)
            logs = model.train_on_batch(x, y, sample_weight=weights[0] if weights else None, return_dict=True)
            loss = float(logs["loss"])
            smoothed = average.add(loss)
            if math.isfinite(smoothed):  # an exploding point is kept too: it is what the plot shows
                curve.append((float(rate), smoothed))
                raw.append(loss)
            extraction.report(label, step + 1, len(rates))
            if bar is not None:
                bar.update(1)
            reason = average.stop_reason(smoothed)
            if reason:
                stopped = f"{reason} at a rate of {rate:.1e}"
                break
    finally:
        if bar is not None:
            bar.close()
    return curve, raw, stopped


def _essentials(index: DatasetIndex, config: TrainConfig, phase: str, train_images: int) -> dict[str, Any]:
    essentials = {
        "dataset": str(index.root),
        "classes": len(index.classes),
        "train_images": train_images,
        "image_size": config.image_size,
        "weights": config.weights,
        "backbone": config.backbone,
        "head": list(config.head),
        "dropout": config.dropout,
        "batch_size": config.batch_size,
        "label_smoothing": config.label_smoothing,
        "augmented_views": config.augmented_views if config.augment.enabled else 0,
        "seed": config.seed,
    }
    if phase == FINE_TUNE:
        essentials["unfreeze_stages"] = config.unfreeze_stages
        essentials["head_epochs"] = config.epochs
    return essentials
