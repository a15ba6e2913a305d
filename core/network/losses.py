"""Flora's own Keras losses, registered when core.network.model is imported (a saved model names its loss, and
`load_classifier` must find it even with compile=False).

`WeightedBinaryCrossentropy` is a multi-label run's: Keras's `BinaryCrossentropy` has no positive weight, so each
label's positive term is multiplied by its weight (core.train.multilabel.positive_weights), as `pos_weight` does in
PyTorch's `BCEWithLogitsLoss`; label smoothing moves every target towards 0.5 as Keras's does.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="flora")
class WeightedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy on probabilities (a sigmoid's), each label's positive term weighted, averaged over labels.

    loss = -mean_j [ w_j * t_j * log(p_j) + (1 - t_j) * log(1 - p_j) ],  t = y * (1 - smoothing) + smoothing / 2
    """

    def __init__(
        self,
        positive_weights=None,
        label_smoothing: float = 0.0,
        name: str = "weighted_binary_crossentropy",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.positive_weights = None if positive_weights is None else [float(w) for w in positive_weights]
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        epsilon = keras.config.epsilon()
        p = ops.clip(y_pred, epsilon, 1.0 - epsilon)
        positive = y_true * ops.log(p)
        if self.positive_weights is not None:
            positive = positive * ops.convert_to_tensor(np.asarray(self.positive_weights, dtype=np.float32))
        return -ops.mean(positive + (1.0 - y_true) * ops.log(1.0 - p), axis=-1)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "positive_weights": self.positive_weights,
            "label_smoothing": self.label_smoothing,
        }
