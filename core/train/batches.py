"""Batch sources that feed Keras from Flora's caches: decoded images, or pooled backbone features.

  ImageBatches       centre-cropped uint8 images with one-hot labels (training on images)
  ExtractionBatches  centre-cropped uint8 images only, every batch one shape (predict, extraction)
  FeatureBatches     cached 2048-d features, one random view per sample and epoch (the head alone)

A multi-label dataset's photos carry label lists (core.data.multilabel.LabelSets) instead of class ids: the same
sources hand their 0/1 rows (float32) where they hand one-hot rows for a class.

Training batches (`shuffle=True`) all have `batch_size` rows: a short last batch is completed with the first photos
of the same epoch's order (`whole_batch`), so that each of the epoch's steps has one shape. On JAX a second shape made
XLA compile the training step again in every phase (the costliest compile there is, a ResNet-50 step's on a GPU; the
tests' fits on JAX 12% less CPU); TensorFlow's dataset over a PyDataset leaves the batch dimension open and traced once
either way. Every photo is still seen each epoch, and a few twice.

uint8, not float32: a quarter of the bytes to copy and to send to a GPU; the model's input casts
them. With `replicas` > 1 (data parallel) each batch is padded to a multiple of it, because JAX
shards batches evenly: padded rows repeat the last sample and carry sample weight 0.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from core.data.imaging import center_crop
from core.data.ingest import ImageCache
from core.data.multilabel import LabelSets
from core.train.distribute import pad_rows, padded_length


class ImageBatches(keras.utils.PyDataset):
    """Batches of centre-cropped cached images (uint8 0-255) with one-hot labels.

    `predict` callers drop the padded rows (see the module docstring).
    """

    def __init__(
        self,
        cache: ImageCache,
        positions: np.ndarray,
        num_classes: int,
        image_size: int,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        sample_weights: np.ndarray | None = None,  # one weight per class
        labels: bool = True,
        replicas: int = 1,
        targets: LabelSets | None = None,  # a multi-label dataset's lists, in the cache's order
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.cache = cache
        self.targets = targets
        self.positions = np.asarray(positions, dtype=np.int64)
        self.num_classes = num_classes
        self.image_size = image_size
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.class_weights = sample_weights
        self.with_labels = labels
        self.replicas = max(1, replicas)
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(self.positions) if shuffle else self.positions

    def __len__(self) -> int:
        return math.ceil(len(self.positions) / self.batch_size)

    def __getitem__(self, index: int):
        chosen = whole_batch(self._order, index, self.batch_size, self.shuffle)
        x = np.ascontiguousarray(center_crop(self.cache.read(chosen), self.image_size))
        labels = self.targets[chosen] if self.targets is not None else self.cache.labels[chosen]
        return labelled_batch(x, labels, self, with_labels=self.with_labels)

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self._order = self._rng.permutation(self.positions)


class FeatureBatches(keras.utils.PyDataset):
    """Batches of cached features; each sample draws one of its views at random every epoch."""

    def __init__(
        self,
        views: np.ndarray,
        labels: np.ndarray | LabelSets,  # class ids, or a multi-label dataset's lists
        num_classes: int,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        sample_weights: np.ndarray | None = None,
        replicas: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.views = views  # (V, N, 2048)
        self.labels = labels if isinstance(labels, LabelSets) else np.asarray(labels)
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.class_weights = sample_weights
        self.replicas = max(1, replicas)
        self._rng = np.random.default_rng(seed)
        self._draw()

    def _draw(self) -> None:
        n = self.views.shape[1]
        self._order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        self._view = self._rng.integers(0, self.views.shape[0], size=n)

    def __len__(self) -> int:
        return math.ceil(self.views.shape[1] / self.batch_size)

    def __getitem__(self, index: int):
        chosen = whole_batch(self._order, index, self.batch_size, self.shuffle)
        x = self.views[self._view[chosen], chosen].astype("float32")
        return labelled_batch(x, self.labels[chosen], self)

    def on_epoch_end(self) -> None:
        self._draw()


class ExtractionBatches(keras.utils.PyDataset):
    """Centre-cropped uint8 batches of cached images, all `batch_size` rows (the last one padded).

    A fixed shape means one trace (TensorFlow) or one XLA compile (JAX) for the whole pass;
    callers drop the rows past the end.
    """

    def __init__(self, images: ImageCache, positions: np.ndarray, image_size: int, batch_size: int, **kwargs):
        super().__init__(**kwargs)
        self.images = images
        self.positions = np.asarray(positions, dtype=np.int64)
        self.image_size = image_size
        self.batch_size = batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.positions) / self.batch_size)

    def __getitem__(self, index: int):
        chosen = self.positions[index * self.batch_size : (index + 1) * self.batch_size]
        batch = np.ascontiguousarray(center_crop(self.images.read(chosen), self.image_size))
        return (pad_rows(batch, self.batch_size),)


def whole_batch(order: np.ndarray, index: int, batch_size: int, fill: bool) -> np.ndarray:
    """The entries of `order` in batch `index`; with `fill` (training), a short last batch completed with the first
    entries of `order` (this epoch's), unless the whole of `order` is shorter than one batch."""
    chosen = order[index * batch_size : (index + 1) * batch_size]
    if fill and len(chosen) < batch_size <= len(order):
        chosen = np.concatenate([chosen, order[: batch_size - len(chosen)]])
    return chosen


def labelled_batch(x: np.ndarray, classes: np.ndarray, source, with_labels: bool = True) -> tuple:
    """(x,) or (x, y[, w]) for one batch, its rows padded to a multiple of `source.replicas`.

    `classes` are class ids (one-hot rows follow) or, for a multi-label dataset, 0/1 rows (N, C) handed as float32.
    `source` carries num_classes, class_weights (per class, or None) and replicas. Under several
    replicas every batch carries weights (one structure for all batches) and padded rows weigh 0,
    so they count in neither the loss's numerator nor the metrics.
    """
    n = len(x)
    length = padded_length(n, source.replicas)
    x = pad_rows(x, length)
    if not with_labels:
        return (x,)
    classes = np.asarray(classes)
    if classes.ndim == 2:  # a multi-label batch: its rows as they are (its loss weighs the labels)
        y = pad_rows(classes.astype("float32"), length)
        weights = None
    else:
        y = pad_rows(keras.utils.to_categorical(classes, source.num_classes).astype("float32"), length)
        weights = None if source.class_weights is None else source.class_weights[classes].astype("float32")
    if source.replicas > 1:
        weights = np.ones(n, dtype="float32") if weights is None else weights
        weights = np.concatenate([weights, np.zeros(length - n, dtype="float32")])
    return (x, y) if weights is None else (x, y, weights)
