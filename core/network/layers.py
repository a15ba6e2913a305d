"""Flora's own Keras layers, saved inside every model (registered as "flora>Name", so old models load).

Kept apart from core.network.model so that the backbone registry can build them without importing the
classifier, and the classifier can use the registry without a circle.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="flora")
class ResNetPreprocess(keras.layers.Layer):
    """ResNet-50's ImageNet preprocessing in "caffe" mode: RGB->BGR, minus the mean pixel, no scaling."""

    def call(self, inputs):
        inputs = ops.cast(inputs, self.compute_dtype)
        return keras.applications.resnet50.preprocess_input(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape
