"""Learning-rate schedules of a training phase: constant, cosine decay, or reduce on plateau.

Each phase (the head on a frozen backbone, then fine-tuning) follows `TrainConfig.lr_schedule`
from its own starting rate: cosine decays it to zero over the phase's steps; plateau divides it
by `PLATEAU_FACTOR` when validation loss has not improved for a while, before early stopping
would end the phase.
"""

from __future__ import annotations

import keras
from keras.optimizers.schedules import LearningRateSchedule

PLATEAU_FACTOR = 0.3  # the rate after a plateau: about a third of the one before
PLATEAU_PATIENCE_WITHOUT_EARLY_STOPPING = 2


def learning_rate_for(schedule: str, rate: float, total_steps: int) -> float | LearningRateSchedule:
    """What the optimizer gets: `rate` itself, or a cosine decay from it over `total_steps`.

    Raises:
        ValueError: an unknown schedule.
    """
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(rate, decay_steps=max(1, int(total_steps)))
    if schedule in ("constant", "plateau"):
        return rate  # plateau lowers the optimizer's rate variable from a callback
    raise ValueError(f"lr_schedule must be constant, cosine or plateau. Received: lr_schedule={schedule!r}")


def plateau_patience(early_stopping_patience: int) -> int:
    """Epochs without improvement before the rate drops: about half early stopping's, so a lower rate
    gets a chance before the phase is stopped."""
    if early_stopping_patience <= 0:
        return PLATEAU_PATIENCE_WITHOUT_EARLY_STOPPING
    return max(1, early_stopping_patience // 2)


def schedule_callbacks(
    schedule: str, early_stopping_patience: int, monitor: str = "val_loss", mode: str = "min"
) -> list[keras.callbacks.Callback]:
    """The callbacks a schedule needs during `fit` (only plateau has one), watching `monitor` (a multi-label run's
    validation mAP, mode max)."""
    if schedule != "plateau":
        return []
    return [
        keras.callbacks.ReduceLROnPlateau(
            monitor=monitor,
            mode=mode,
            factor=PLATEAU_FACTOR,
            patience=plateau_patience(early_stopping_patience),
            verbose=0,
        )
    ]
