"""What training does differently for a multi-label dataset: positive weights, the loss, validation mAP.

A multi-label run ends in a sigmoid per label (core.network.model) and learns with binary cross-entropy, each
label's positive term weighted (core.network.losses.WeightedBinaryCrossentropy) by `positive_weights` (negatives /
positives on the training split, capped), so a rare label is not learnt as "always no".

Validation is measured by mean average precision (core.train.average_precision: scikit-learn's
`average_precision_score`, macro over the labels with a validation positive), which `ValidationMAP` writes into
each epoch's logs as `val_map` before the run's logger, its best weights and early stopping read them.
"""

from __future__ import annotations

import keras
import numpy as np

from core.train.average_precision import mean_average_precision

VAL_MAP = "val_map"  # the key in an epoch's logs and metrics.jsonl
POSITIVE_WEIGHT_CAP = 10.0  # a label with 1 positive in 1,000 photos weighs 10, not 999: a few photos are no signal
PREDICT_BATCH = 512  # rows per validation prediction on cached features


def monitored(multilabel: bool) -> tuple[str, str]:
    """What a phase's best weights, early stopping and plateau watch: (logs key, "min" or "max")."""
    return (VAL_MAP, "max") if multilabel else ("val_loss", "min")


def positive_weights(train_targets: np.ndarray, mode: str, cap: float = POSITIVE_WEIGHT_CAP) -> np.ndarray | None:
    """Per-label weights of the positive term: negatives / positives on the training split, within [1/cap, cap].

    `train_targets` are the training photos' 0/1 rows (N, C). "none" weighs nothing (None); "auto" and "balanced"
    both weigh (a multi-label set is imbalanced by nature: most labels are absent from most photos). A label
    without a training positive weighs 1 (there is no positive term to weigh).
    """
    if mode == "none":
        return None
    targets = np.asarray(train_targets)
    positives = targets.sum(axis=0).astype(np.float64)
    negatives = len(targets) - positives
    ratio = np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
    return np.clip(ratio, 1.0 / cap, cap).astype(np.float32)


class ValidationMAP(keras.callbacks.Callback):
    """Puts the validation mAP into each epoch's logs (`val_map`), ahead of the callbacks that read them.

    `predict(model)` gives the validation scores of the model as it is now (the head on cached features, or the
    classifier on images); `targets` are the validation photos' 0/1 rows in the same order.
    """

    def __init__(self, predict, targets: np.ndarray):
        super().__init__()
        self.predict = predict
        self.targets = np.asarray(targets)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not len(self.targets):
            return
        value = mean_average_precision(self.targets, self.predict(self.model))
        if value is not None:
            logs[VAL_MAP] = value


def predict_rows(model: keras.Model, x, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """The model's outputs for `x` (an array or a batch source), as float32 rows."""
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)
