"""The classifier: raw pixels -> [augmentation] -> preprocessing -> backbone -> GAP -> head.

A multi-label classifier (task "multilabel") ends in a sigmoid per label instead of the softmax, under the same
output name, so graphs, exports and the analysis arrays read it the same way.

The backbone comes from the registry in core.network.backbones (ResNet-50 for users); its preprocessing
lives inside the model, so a saved model takes raw 0-255 RGB pixels. The head is a nested model
named "head" taking the pooled features (2048 for ResNet-50), so it can also be trained alone on
cached features and its weights are the classifier's weights. Layer names: core.network.layer_names.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import keras
from keras import ops

from core.data.tasks import MULTI_LABEL, SINGLE_LABEL, TASKS
from core.errors import Unavailable
from core.network import backbones
from core.network import layer_names as names
from core.network.augment import build_augmentation
from core.network.layers import ResNetPreprocess  # noqa: F401 (registers the layer before load_classifier reads a model)
from core.network.losses import WeightedBinaryCrossentropy  # noqa: F401 (registers it, as the layer above)
from core.network.saved import load_keras_file, made_values_first
from core.paths import keras_home
from core.runs.files import run_files
from core.runs.store import RunStore
from core.settings.config import (
    MAX_UNFREEZE_STAGES,
    MIN_IMAGE_SIZE,
    WEIGHTS_IMAGENET,
    WEIGHTS_NONE,
    AugmentConfig,
)

WEIGHTS_URL_ENV = "FLORA_IMAGENET_WEIGHTS_URL"  # a mirror, for machines that cannot reach Google


class WeightsError(Unavailable, ValueError):
    """The requested starting weights cannot be had; the message says what to do instead."""


def build_classifier(
    num_classes: int,
    image_size: int = 224,
    weights: str = WEIGHTS_IMAGENET,
    head: tuple[int, ...] = (256,),
    dropout: float = 0.2,
    augment: AugmentConfig | None = None,
    seed: int | None = None,
    models_dir: str | os.PathLike | None = None,
    backbone: str | None = None,
    task: str = SINGLE_LABEL,
) -> keras.Model:
    """Build the transfer-learning classifier with its backbone frozen.

    Args:
        num_classes: number of output classes (at least 2).
        image_size: side of the square input in pixels (at least 32).
        weights: "imagenet", "none", a weights file (.h5 / .weights.h5 / .keras), a run folder,
            or "run:<run_id>" (start from that run's backbone; needs `models_dir`).
        head: units of each Dense+Dropout block between the pooled features and the softmax.
        dropout: dropout rate after each head block.
        augment: training-only transforms placed first in the model.
        seed: seeds the augmentation layers.
        models_dir: the run store, to resolve "run:<id>".
        backbone: a name in core.network.backbones (None: the default, ResNet-50).
        task: "single" (a softmax over the classes) or "multilabel" (a sigmoid per label).

    Raises:
        ValueError: an argument is out of range.
        WeightsError: the weights cannot be loaded or downloaded.
    """
    _validate(num_classes, image_size, head, dropout, task)
    entry = backbones.get(backbone or backbones.default_backbone())
    inputs = keras.Input((image_size, image_size, 3), name=names.IMAGE)  # raw 0-255 RGB
    x = inputs
    augmentation = build_augmentation(augment, seed=seed) if augment is not None else None
    if augmentation is not None:
        allow_jit(augmentation)
        x = augmentation(x)
    x = entry.preprocess(names.PREPROCESS)(x)
    network = build_backbone(image_size, weights, models_dir, entry.name)
    network.trainable = False
    x = network(x)
    x = keras.layers.GlobalAveragePooling2D(name=names.AVG_POOL)(x)
    outputs = build_head(num_classes, head, dropout, seed=seed, feature_dim=entry.feature_dim, task=task)(x)
    return keras.Model(inputs, outputs, name=f"flora_{entry.name}")


def classifier_for(config, num_classes: int, models_dir: str | os.PathLike | None = None) -> keras.Model:
    """The classifier a TrainConfig describes (what a run and a sweep both train)."""
    return build_classifier(
        num_classes,
        config.image_size,
        config.weights,
        config.head,
        config.dropout,
        config.augment,
        seed=config.seed,
        models_dir=models_dir,
        backbone=config.backbone,
        task=config.task,
    )


def allow_jit(augmentation: keras.Sequential | None) -> None:
    """On JAX, let the random image layers compile with the rest of the step.

    Keras marks RandomRotation, RandomZoom, RandomTranslation and RandomShear as not jittable
    because TensorFlow's XLA lacks its image-transform op; JAX traces them fine. Left as they
    are, one such layer makes Keras run the whole JAX train step (ResNet-50 included) un-jitted,
    op by op. TensorFlow keeps Keras's choice.

    On a CPU, XLA then fuses each layer's resampling into the next one's reads, so every pixel of a
    rotation, a shift and a zoom in a row recomputes the interpolations before it: the standard
    preset took 0.36 s a batch of 64 at 64 px, 1.27 s a batch of 32 at 224 px. Each layer's output
    goes through a conditional XLA cannot fold (`_KeptApart`), which it does not fuse across: the
    same pixels, bit for bit, in 0.14 s and 0.51-0.64 s (docs/PERFORMANCE.md). On a GPU the layers
    stay as Keras builds them: a conditional there waits for its predicate, and nothing was measured.
    """
    if augmentation is None or keras.backend.backend() != "jax":
        return
    on_cpu = all(device.startswith("cpu") for device in keras.distribution.list_devices())
    for layer in augmentation.layers:
        layer.supports_jit = True
        if on_cpu and not isinstance(layer.call, _KeptApart):
            layer.call = _KeptApart(layer.call)


class _KeptApart:
    """A layer's `call` whose images come out through a conditional both of whose branches return them unchanged.

    The predicate reads a pixel, so XLA cannot fold the conditional away, and its output is a buffer of its own:
    the next layer's gathers read that buffer instead of fusing this layer's interpolation into every read.
    """

    def __init__(self, call):
        self.call = call

    def __call__(self, *args, **kwargs):
        images = self.call(*args, **kwargs)
        if len(getattr(images, "shape", ())) != 4:  # not a batch of images (a dict of boxes, say): as it is
            return images
        corner = ops.sum(images[:1, :1, :1, :1])  # 0 for an empty batch
        return ops.cond(ops.equal(corner, corner), lambda: images, lambda: images + 0)


def _validate(num_classes: int, image_size: int, head, dropout: float, task: str = SINGLE_LABEL) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}. Received: task={task!r}")
    least = 1 if task == MULTI_LABEL else 2  # one label is a yes/no question; one class is none
    if num_classes < least:
        raise ValueError(f"num_classes must be at least {least}. Received: num_classes={num_classes}")
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be at least {MIN_IMAGE_SIZE}. Received: image_size={image_size}")
    if any(int(u) <= 0 for u in head):
        raise ValueError(f"head units must be positive integers. Received: head={tuple(head)}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout}")


def build_head(
    num_classes: int,
    units: tuple[int, ...] = (256,),
    dropout: float = 0.2,
    seed: int | None = None,
    feature_dim: int = names.FEATURE_DIM,
    task: str = SINGLE_LABEL,
) -> keras.Model:
    """Pooled features (`feature_dim`) -> BatchNorm -> [Dense(relu) + Dropout]* -> logits -> softmax (float32), or
    a sigmoid per label (float32) for `task` "multilabel".

    The BatchNorm puts the pooled features on a common scale before the first Dense (as in
    keras-io's EfficientNet fine-tuning example), which makes the head train quickly and stably.
    With a `seed`, the head's starting weights and dropout masks depend on it alone (not on what
    was built before), so a sweep's trial and the run trained from it start from the same head.
    """

    def seeded(offset: int) -> dict:
        if seed is None:
            return {}
        return {"kernel_initializer": keras.initializers.GlorotUniform(seed=seed + offset)}

    def dropout_seed(offset: int) -> dict:
        return {} if seed is None else {"seed": seed + offset}

    features = keras.Input((int(feature_dim),), name=names.FEATURES)
    x = keras.layers.BatchNormalization(momentum=0.9, name=names.HEAD_BN)(features)
    for i, width in enumerate(units, start=1):
        x = keras.layers.Dense(int(width), activation="relu", name=names.head_dense(i), **seeded(2 * i))(x)
        x = keras.layers.Dropout(dropout, name=names.head_dropout(i), **dropout_seed(2 * i + 1))(x)
    if not units:
        x = keras.layers.Dropout(dropout, name=names.HEAD_DROPOUT, **dropout_seed(1))(x)
    logits = keras.layers.Dense(num_classes, name=names.LOGITS, **seeded(0))(x)
    # float32: under mixed precision, probabilities near 0 and 1 must not round away.
    activation = "sigmoid" if task == MULTI_LABEL else "softmax"
    outputs = keras.layers.Activation(activation, dtype="float32", name=names.PROBABILITIES)(logits)
    return keras.Model(features, outputs, name=names.HEAD)


def head_task(head: keras.Model) -> str:
    """What a built head answers, read from its last activation: "multilabel" (a sigmoid per label) or "single"."""
    activation = head.get_layer(names.PROBABILITIES).get_config().get("activation")
    return MULTI_LABEL if activation == "sigmoid" else SINGLE_LABEL


def head_units(head: keras.Model) -> tuple[int, ...]:
    """The widths of a head's Dense+Dropout blocks, read from its layers in block order."""
    blocks = {names.head_dense_block(layer.name): layer for layer in head.layers}
    blocks.pop(None, None)
    return tuple(int(blocks[i].units) for i in sorted(blocks))


def build_backbone(
    image_size: int, weights: str, models_dir: str | os.PathLike | None = None, backbone: str | None = None
) -> keras.Model:
    """The backbone `backbone` (default ResNet-50) without its top, with the requested starting weights."""
    entry = backbones.get(backbone or backbones.default_backbone())
    shape = (image_size, image_size, 3)
    weights = str(weights)
    if weights == WEIGHTS_NONE:
        return entry.build(shape, None, entry.name)
    if weights == WEIGHTS_IMAGENET:  # the file's values, never the random ones it would overwrite (saved.py)
        file = str(imagenet_weights_path(entry=entry))
        return made_values_first(lambda: entry.build(shape, file, entry.name))
    source = resolve_weights_source(weights, models_dir)
    if source.suffix == ".keras":
        values = _backbone_weights_from(source, entry)
        return made_values_first(lambda: with_weights(entry.build(shape, None, entry.name), values))
    try:
        return made_values_first(lambda: entry.build(shape, str(source), entry.name))
    except Exception as e:
        raise WeightsError(f"could not load {entry.title} weights from {source}: {e}") from e


def with_weights(network: keras.Model, values: list) -> keras.Model:
    """`network` given `values` (its weights, in order); inside made_values_first, they are its first values."""
    network.set_weights(values)
    return network


def resolve_weights_source(weights: str, models_dir: str | os.PathLike | None) -> Path:
    """A weights file path from "run:<id>", a run folder, or a file path."""
    if weights.startswith("run:"):
        if models_dir is None:
            raise WeightsError(f"weights={weights!r} needs the run store (models_dir) to find the run")
        try:
            folder = RunStore(models_dir).run_dir(weights[4:])
        except ValueError as e:
            raise WeightsError(f"weights={weights!r}: {e}") from None
        if not folder.is_dir():
            raise WeightsError(f"weights={weights!r}: no such run in {models_dir}")
        weights = str(folder)
    path = Path(weights).expanduser()
    if path.is_dir():
        model_file = run_files(path).model
        if not model_file.exists():
            raise WeightsError(f"run folder {path} has no model.keras (is the run finished?)")
        return model_file
    if not path.exists():
        raise WeightsError(
            f"weights must be 'imagenet', 'none', a weights file, a run folder or 'run:<id>'. "
            f"Received: weights={weights!r} (no such file)"
        )
    return path


def _backbone_weights_from(model_file: Path, entry: backbones.Backbone) -> list:
    try:
        model = load_keras_file(model_file)
    except Exception as e:
        raise WeightsError(f"could not load {model_file}: {e}") from e
    try:
        return model.get_layer(entry.name).get_weights()
    except ValueError:
        if model.layers and model.layers[-1].name == entry.feature_map:  # a bare backbone saved on its own
            return model.get_weights()
        raise WeightsError(f"{model_file} has no {entry.title} backbone layer named {entry.name!r}") from None


def imagenet_weights_path(
    origin: str | None = None, file_hash: str | None = None, entry: backbones.Backbone | None = None
) -> Path:
    """The backbone's published ImageNet weights file (no top), downloading it once into ~/.keras/models.

    Raises:
        WeightsError: the backbone has none, or it is not cached and the download failed (offline,
            blocked, corrupt).
    """
    entry = entry or backbones.get(backbones.RESNET50)
    published = entry.imagenet
    if published is None:
        raise WeightsError(f"the {entry.title} has no ImageNet weights: train it with weights 'none' or a file")
    origin = origin or os.environ.get(WEIGHTS_URL_ENV) or published.url
    file_hash = file_hash or published.md5  # a mirror must serve the very same file
    cached = keras_home() / "models" / published.file
    # get_file silently falls back to /tmp/.keras when the folder does not exist yet
    with contextlib.suppress(OSError):
        cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        return Path(
            keras.utils.get_file(
                published.file, origin, cache_subdir="models", file_hash=file_hash, cache_dir=str(keras_home())
            )
        )
    except Exception as e:  # URLError, HTTPError, a hash mismatch, a full disk: all mean "not available"
        raise WeightsError(
            f"ImageNet weights for {entry.title} are not on this machine and could not be downloaded "
            f"from {origin} ({type(e).__name__}: {e}). Either connect this machine to the internet "
            f"once, copy {published.file} into {cached.parent}, set {WEIGHTS_URL_ENV} to a "
            f"mirror, or train with weights 'none' (random start) or a weights file."
        ) from e


def backbone_of(model: keras.Model) -> keras.Model:
    """The classifier's backbone layer (whichever registered backbone it has)."""
    return model.get_layer(backbones.find_in(model).name)


def head_of(model: keras.Model) -> keras.Model:
    return model.get_layer(names.HEAD)


def unfreeze(model: keras.Model, stages: int) -> None:
    """Make the top `stages` residual stages of the backbone trainable (0 freezes it all).

    BatchNormalization layers stay frozen: a non-trainable BatchNormalization layer runs in
    inference mode, so fine-tuning on small batches cannot wreck its ImageNet statistics.
    Recompile the model afterwards, with a lower learning rate.

    Raises:
        ValueError: `stages` is not between 0 and 4.
    """
    if not 0 <= stages <= MAX_UNFREEZE_STAGES:
        raise ValueError(
            f"unfreeze_stages must be between 0 and {MAX_UNFREEZE_STAGES}. Received: unfreeze_stages={stages}"
        )
    entry = backbones.find_in(model)
    network = model.get_layer(entry.name)
    if stages == 0:
        network.trainable = False
        return
    network.trainable = True
    lowest_open = len(entry.stages) - stages + 1  # stages=1 -> only the top stage (conv5 on ResNet-50)
    for layer in network.layers:
        stage = entry.stage_of(layer.name)
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = stage is not None and stage >= lowest_open and not is_bn


def trainable_summary(model: keras.Model) -> dict[str, int]:
    """Counts of trainable and frozen parameters, for logs and the Train page."""
    trainable = sum(int(ops.size(w)) for w in model.trainable_weights)
    frozen = sum(int(ops.size(w)) for w in model.non_trainable_weights)
    return {"trainable_params": trainable, "frozen_params": frozen}


def load_classifier(path: str | os.PathLike) -> keras.Model:
    """Load a saved classifier (model.keras); custom layers are registered by importing this module. Read without
    first filling the weights the file overwrites (core.network.saved): a third of a ResNet-50's load."""
    return load_keras_file(path)
