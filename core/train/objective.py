"""What a phase's fit optimises and watches: the loss and metrics it compiles with, early stopping and the schedule.

A single-label run learns with categorical cross-entropy and reports accuracy; a multi-label run with binary
cross-entropy, its labels' positive terms weighted (core.train.multilabel), and watches its validation mAP where the
other watches its validation loss. A head on cached features runs several training steps a compiled call where its fit
is long enough to pay for tracing that loop.
"""

from __future__ import annotations

import keras
import numpy as np

from core.network.losses import WeightedBinaryCrossentropy
from core.settings.config import TrainConfig
from core.train.multilabel import monitored
from core.train.schedules import schedule_callbacks

HEAD_STEPS_PER_CALL = 8  # training steps per compiled call when the head trains on cached features
# ... where the fit has this many steps or more: the loop that runs several per call costs ~0.2 s more to trace
# (TensorFlow, 2 cores: a head fit of 96 steps 1.11 s with one step a call against 1.28 s with 8; 189 steps even;
# 375 steps 0.2 s in the loop's favour), so a small fit (a small dataset, a short sweep trial) runs one a call.
HEAD_LOOP_MIN_STEPS = 200


def head_steps_per_call(steps: int, replicas: int) -> int:
    """Training steps per compiled call for a head fit of `steps` steps in all. A head step is a few milliseconds,
    much of it the framework's per-call cost: several per call, where the fit is long enough to pay for tracing
    that loop, and on one device (Keras's multi-step loop fails under tf.distribute.MirroredStrategy)."""
    return HEAD_STEPS_PER_CALL if replicas == 1 and steps >= HEAD_LOOP_MIN_STEPS else 1


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
    build_training_state(model)


def build_training_state(model: keras.Model) -> None:
    """Create the optimizer's, the loss's and the metrics' variables now, before the first step is traced.

    On TensorFlow without a distribution strategy, Keras leaves them to be made inside the first traced training
    (and evaluation) step, and tf.function then traces that step a second time, without creating variables: every
    fit paid its tracing twice (a small head fit 1.03 -> 0.68 CPU-s with them built first, TensorFlow, 2 cores).
    Keras builds them first itself on JAX and under a strategy (`Trainer._symbolic_build`, from the model's input
    and output specs, nothing computed); here it is asked to for the rest. The same variables, the same zeros: the
    fit is the same."""
    if keras.backend.backend() != "tensorflow" or getattr(model, "_distribute_strategy", None) is not None:
        return  # Keras builds it before tracing there
    inputs, outputs = model.inputs, model.outputs
    if len(inputs) != 1 or len(outputs) != 1 or getattr(model.optimizer, "built", True):
        return
    output = outputs[0]
    model._symbolic_build(data_batch=(inputs[0], keras.KerasTensor(output.shape, output.dtype)))
