"""What a phase's fit optimises and watches: the loss and metrics it compiles with, early stopping and the schedule.

A single-label run learns with categorical cross-entropy and reports accuracy; a multi-label run with binary
cross-entropy, its labels' positive terms weighted (core.train.multilabel), and watches its validation mAP where the
other watches its validation loss.
"""

from __future__ import annotations

import keras
import numpy as np

from core.network.losses import WeightedBinaryCrossentropy
from core.settings.config import TrainConfig
from core.train.multilabel import monitored
from core.train.schedules import schedule_callbacks


def phase_callbacks(config: TrainConfig) -> list[keras.callbacks.Callback]:
    """What every phase's fit needs besides reporting: early stopping and the schedule's callback, both watching the
    validation loss (a multi-label run's validation mAP)."""
    monitor, mode = monitored(config.multilabel)
    callbacks: list[keras.callbacks.Callback] = []
    if config.early_stopping_patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=config.early_stopping_patience)
        )
    return callbacks + schedule_callbacks(config.lr_schedule, config.early_stopping_patience, monitor, mode)


def compile_for(
    model: keras.Model,
    learning_rate,
    label_smoothing: float,
    steps_per_execution: int = 1,
    extra_metrics: tuple = (),
    positive_weights: np.ndarray | None = None,
    multilabel: bool | None = None,
) -> None:
    """Adam (at a rate or a schedule) and categorical cross-entropy (optionally smoothed), with accuracy; or, for a
    multi-label model (`multilabel`, implied by `positive_weights`), binary cross-entropy with those per-label
    positive weights and no accuracy (its measure is the validation mAP, core.train.multilabel.ValidationMAP)."""
    if multilabel or positive_weights is not None:
        loss = WeightedBinaryCrossentropy(positive_weights, label_smoothing)
        metrics = list(extra_metrics)
    else:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
        metrics = ["accuracy", *extra_metrics]
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=loss,
        metrics=metrics,
        steps_per_execution=steps_per_execution,
    )
