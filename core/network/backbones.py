"""The backbone seam: a name -> the network under the head, its preprocessing and its stages.

Every entry builds a Keras model from preprocessed pixels to its last feature map (the layer global
pooling reads and Grad-CAM explains), says which layer takes raw 0-255 RGB to its input, which
layer-name prefixes are its residual stages (what "unfreeze the top N stages" opens) and where its
ImageNet weights are published. The rest of Flora asks this registry, never `keras.applications`.

  resnet50   ResNet-50 (keras.applications): the one backbone users train, the default everywhere.
  tiny       a few convolutions with ResNet-50's contract (the same output layer name and width, the
             same total stride of 32, the same stage names and preprocessing). For the test suite
             only: it is a valid choice, and the default, only while the environment variable
             FLORA_TEST_BACKBONE=tiny is set (tests/conftest.py sets it), so plumbing tests do not
             pay for ResNet-50. It is never offered to users.

Adding another keras.applications backbone is one entry in BACKBONES (builder, preprocessing,
feature-map layer and width, stage prefixes, ImageNet weights). Importing this module does not
import Keras: core.settings.config validates names with it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from core.network import layer_names

RESNET50 = "resnet50"
DEFAULT_BACKBONE = RESNET50
TEST_BACKBONE_ENV = "FLORA_TEST_BACKBONE"
_RESNET_STAGES = ("conv2_", "conv3_", "conv4_", "conv5_")


@dataclass(frozen=True)
class ImagenetWeights:
    """A published ImageNet weights file for a backbone without its top (downloaded once by Keras)."""

    file: str
    url: str
    md5: str


@dataclass(frozen=True)
class Backbone:
    """One registry entry. `build(input_shape, weights_file_or_None)` returns a model named `name`."""

    name: str  # the TrainConfig value, and the backbone's layer name inside a classifier
    title: str  # what the pages and logs call it
    build: Callable[[tuple[int, int, int], str | None, str], object]  # (shape, weights file, name) -> keras.Model
    preprocess: Callable[[str], object]  # layer name -> the Keras layer: raw 0-255 RGB -> the backbone's input
    stages: tuple[str, ...] = _RESNET_STAGES  # layer-name prefixes of its stages, bottom to top
    stage_outputs: tuple[str, ...] = ()  # the last layer of each stage, bottom to top (earlier Grad-CAM maps)
    feature_map: str = layer_names.FEATURE_MAP  # its last layer
    feature_dim: int = layer_names.FEATURE_DIM  # that layer's channels
    imagenet: ImagenetWeights | None = None
    test_only: bool = False

    def stage_of(self, layer_name: str) -> int | None:
        """Which stage (1 = the lowest in `stages`) a layer belongs to, None for the stem."""
        for i, prefix in enumerate(self.stages, start=1):
            if layer_name.startswith(prefix):
                return i
        return None


def _resnet_preprocess(name: str):
    from core.network.layers import ResNetPreprocess  # heavy: keras

    return ResNetPreprocess(name=name)


def _resnet50(input_shape: tuple[int, int, int], weights: str | None, name: str):
    import keras

    return keras.applications.ResNet50(include_top=False, weights=weights, input_shape=input_shape, name=name)


def _tiny(input_shape: tuple[int, int, int], weights: str | None, name: str):
    """Five small stages with ResNet-50's names and total stride, ending in a 2048-channel conv5_block3_out."""
    import keras
    from keras import layers

    def conv(x, filters: int, kernel: int, strides: int, prefix: str):
        x = layers.Conv2D(filters, kernel, strides=strides, padding="same", name=f"{prefix}_conv")(x)
        x = layers.BatchNormalization(name=f"{prefix}_bn")(x)
        return x

    inputs = keras.Input(input_shape, name="input_layer")
    x = layers.Activation("relu", name="conv1_relu")(conv(inputs, 8, 3, 2, "conv1"))  # /2
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1_pool")(x)  # /4
    x = layers.Activation("relu", name="conv2_block1_out")(conv(x, 8, 3, 1, "conv2_block1_1"))
    x = layers.Activation("relu", name="conv3_block1_out")(conv(x, 16, 3, 2, "conv3_block1_1"))  # /8
    x = layers.Activation("relu", name="conv4_block1_out")(conv(x, 32, 3, 2, "conv4_block1_1"))  # /16
    x = layers.Activation("relu", name="conv5_block1_out")(conv(x, 64, 3, 2, "conv5_block1_1"))  # /32
    x = layers.Activation("relu", name=layer_names.FEATURE_MAP)(
        conv(x, layer_names.FEATURE_DIM, 1, 1, "conv5_block3_3")
    )
    model = keras.Model(inputs, x, name=name)
    if weights is not None:
        model.load_weights(weights)
    return model


BACKBONES: dict[str, Backbone] = {
    RESNET50: Backbone(
        name=RESNET50,
        title="ResNet-50",
        build=_resnet50,
        preprocess=_resnet_preprocess,
        stage_outputs=("conv2_block3_out", "conv3_block4_out", "conv4_block6_out", layer_names.FEATURE_MAP),
        imagenet=ImagenetWeights(
            file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            url="https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            md5="4d473c1dd8becc155b73f8504c6f6626",
        ),
    ),
    "tiny": Backbone(
        name="tiny",
        title="tiny test backbone",
        build=_tiny,
        preprocess=_resnet_preprocess,
        stage_outputs=("conv2_block1_out", "conv3_block1_out", "conv4_block1_out", layer_names.FEATURE_MAP),
        test_only=True,
    ),
}


def test_backbone() -> str | None:
    """The test-only backbone the environment selects (FLORA_TEST_BACKBONE), or None."""
    name = os.environ.get(TEST_BACKBONE_ENV, "").strip()
    entry = BACKBONES.get(name)
    return name if entry is not None and entry.test_only else None


def default_backbone() -> str:
    """ResNet-50, unless the test suite selected its test backbone."""
    return test_backbone() or DEFAULT_BACKBONE


def choices() -> tuple[str, ...]:
    """The backbone names a config may name here: every user backbone, and the test one when selected."""
    selected = test_backbone()
    return tuple(name for name, entry in BACKBONES.items() if not entry.test_only or name == selected)


def get(name: str) -> Backbone:
    """The registry entry `name`.

    Raises:
        ValueError: not a backbone this installation offers.
    """
    if name not in choices():
        raise ValueError(f"backbone must be one of {choices()}. Received: backbone={name!r}")
    return BACKBONES[name]


def find_in(model) -> Backbone:
    """The entry whose backbone layer `model` (a classifier) contains.

    Raises:
        ValueError: `model` has none of the registered backbones.
    """
    names = {layer.name for layer in model.layers}
    for name, entry in BACKBONES.items():
        if name in names:
            return entry
    raise ValueError(f"the model has no backbone layer; expected one of {tuple(BACKBONES)}. Layers: {sorted(names)}")
