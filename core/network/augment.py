"""Augmentation: an AugmentConfig turned into Keras preprocessing layers, and a preview of them.

The layers run inside the model, active in training only. `preview` calls exactly the layers the
model gets, so what the Augmentation page shows is what training sees.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from core.settings.config import AUGMENT_EXPLANATIONS as EXPLANATIONS  # noqa: F401 (re-exported)
from core.settings.config import AugmentConfig


def build_augmentation(config: AugmentConfig, seed: int | None = None) -> keras.Sequential | None:
    """The Keras layers for `config`, in a Sequential named "augmentation"; None when all are off.

    Each layer gets its own seed derived from `seed`, so the same seed gives the same transforms.
    """
    if not config.enabled:
        return None

    def layer_seed(k: int) -> int | None:
        return None if seed is None else seed * 1000 + k

    layers: list[keras.layers.Layer] = []
    flip_mode = _flip_mode(config)
    if flip_mode:
        layers.append(keras.layers.RandomFlip(flip_mode, seed=layer_seed(0), name="flip"))
    if config.rotation:
        layers.append(
            keras.layers.RandomRotation(
                config.rotation / 360.0, fill_mode="reflect", seed=layer_seed(1), name="rotation"
            )
        )
    if config.width_shift or config.height_shift:
        layers.append(
            keras.layers.RandomTranslation(
                height_factor=config.height_shift,
                width_factor=config.width_shift,
                fill_mode="reflect",
                seed=layer_seed(2),
                name="shift",
            )
        )
    if config.shear:
        factor = math.tan(math.radians(config.shear))
        layers.append(
            keras.layers.RandomShear(
                x_factor=factor,
                y_factor=factor,
                fill_mode="reflect",
                seed=layer_seed(3),
                name="shear",
            )
        )
    if config.zoom:
        layers.append(
            keras.layers.RandomZoom((-config.zoom, config.zoom), fill_mode="reflect", seed=layer_seed(4), name="zoom")
        )
    if config.brightness:
        layers.append(
            keras.layers.RandomBrightness(
                config.brightness, value_range=(0, 255), seed=layer_seed(5), name="brightness"
            )
        )
    if config.contrast:
        layers.append(
            keras.layers.RandomContrast(config.contrast, value_range=(0, 255), seed=layer_seed(6), name="contrast")
        )
    return keras.Sequential(layers, name="augmentation")


def _flip_mode(config: AugmentConfig) -> str | None:
    if config.horizontal_flip and config.vertical_flip:
        return "horizontal_and_vertical"
    if config.horizontal_flip:
        return "horizontal"
    if config.vertical_flip:
        return "vertical"
    return None


def apply(pipeline: keras.Sequential | None, images: np.ndarray) -> np.ndarray:
    """Run the augmentation layers in training mode on a uint8 batch; return uint8."""
    if pipeline is None:
        return np.asarray(images, dtype=np.uint8)
    out = pipeline(keras.ops.convert_to_tensor(np.asarray(images, dtype="float32")), training=True)
    return np.clip(np.round(keras.ops.convert_to_numpy(out)), 0, 255).astype(np.uint8)


def preview(images: np.ndarray, config: AugmentConfig, n: int = 8, seed: int = 0) -> np.ndarray:
    """`n` augmented versions of each image, made by exactly the training layers.

    Args:
        images: one (H, W, 3) image or a (k, H, W, 3) batch, uint8.
        config: the transforms to apply.
        n: versions per image.
        seed: same seed, same versions.

    Returns:
        (n, H, W, 3) uint8 for one image, (k, n, H, W, 3) for a batch.
    """
    images = np.asarray(images)
    single = images.ndim == 3
    batch = images[None] if single else images
    pipeline = build_augmentation(config, seed=seed)
    repeated = np.repeat(batch, n, axis=0)  # each image n times, transformed independently
    out = apply(pipeline, repeated).reshape(batch.shape[0], n, *batch.shape[1:])
    return out[0] if single else out
