"""Pooled backbone features, computed once per (dataset, size, backbone weights, view) and cached.

When the backbone is frozen its output for an image never changes, so the head can train on
stored features (2048-d for ResNet-50) in seconds instead of pushing every image through the
backbone every epoch.
View 0 is the clean centre crop; views 1..k are passes through the training augmentation layers,
so augmentation still matters.

  data/.cache/features/<dataset fingerprint>-<image size>-<backbone hash>/view0.npy
  data/.cache/features/<...>/view<k>-<augmentation hash>.npy      (k >= 1)
each with a `.done.npy` mask of the rows already computed, so another split reuses them.

The backbone runs in the fastest runtime measured on this machine (core.runtimes: ONNX Runtime or OpenVINO
on a CPU, each checked against Keras first), batch by batch, with uint8 crops read ahead in background
threads; augmented views pass through the training augmentation layers in Keras first (the same random
streams), then through that runtime. Where Keras runs it (asked for, a GPU, data parallel, or no other
runtime passes), extraction is Keras's compiled `predict` (one trace or XLA compile per extractor: every
batch has the same shape, the last one padded), with the augmentation inside that same compiled function.
"""

from __future__ import annotations

import collections
import hashlib
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np

from core.data.imaging import center_crop
from core.data.ingest import ImageCache
from core.errors import Cancelled
from core.fileio import atomic_path
from core.network import backbones
from core.network import layer_names as names
from core.network.augment import build_augmentation
from core.network.model import allow_jit
from core.paths import features_cache_name, features_dir
from core.progress import CountCallback
from core.runtimes.choice import Decision, Forward, accelerated, keras_forward
from core.runtimes.names import KERAS
from core.settings.config import AugmentConfig, canonical_json
from core.train.batches import ExtractionBatches
from core.train.distribute import padded_length

AUGMENTED_VIEW_VERSION = 2  # 2: augmentation runs inside the compiled extractor, unrounded
SEGMENT_BATCHES = 32  # batches per predict call: bounds memory and how much a stop or crash loses
CHECKPOINT_SECONDS = 60.0  # at most one interim save a minute: each rewrites the view's whole file


class ExtractionStopped(Cancelled):
    """Feature extraction was stopped on request."""


def weights_hash(model: keras.Model) -> str:
    """A short hash of every weight value: equal hashes mean the same backbone."""
    digest = hashlib.blake2b(digest_size=8)
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


def augment_hash(config: AugmentConfig, seed: int) -> str:
    payload = {"augment": config.to_dict(), "seed": seed, "version": AUGMENTED_VIEW_VERSION}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:10]


def build_extractor(classifier: keras.Model) -> keras.Model:
    """Raw pixels -> preprocessing -> the classifier's own backbone -> pooled features (shared weights)."""
    entry = backbones.find_in(classifier)
    backbone = classifier.get_layer(entry.name)
    size = backbone.input_shape[1]
    inputs = keras.Input((size, size, 3), name=names.IMAGE)
    x = entry.preprocess(names.PREPROCESS)(inputs)
    x = backbone(x)
    outputs = keras.layers.GlobalAveragePooling2D(name=names.AVG_POOL)(x)
    return keras.Model(inputs, outputs, name="feature_extractor")


class AlwaysAugment(keras.layers.Layer):
    """Runs augmentation layers in training mode whatever the caller's mode (for `predict`)."""

    def __init__(self, pipeline: keras.Sequential, **kwargs):
        super().__init__(**kwargs)
        self.pipeline = pipeline

    def call(self, inputs):
        return self.pipeline(inputs, training=True)

    def compute_output_shape(self, input_shape):
        return input_shape


def build_augmenting_extractor(extractor: keras.Model, augment: AugmentConfig, seed: int) -> keras.Model:
    """Raw pixels -> the training augmentation (always on) -> `extractor`, as one model to compile."""
    pipeline = build_augmentation(augment, seed=seed)
    if pipeline is None:
        raise ValueError("augmented views need an augmentation config with a transform on")
    allow_jit(pipeline)
    inputs = keras.Input(extractor.input_shape[1:], name="image")
    outputs = extractor(AlwaysAugment(pipeline, name="augment")(inputs))
    model = keras.Model(inputs, outputs, name="augmenting_extractor")
    model.pipeline = pipeline  # for reseed_augmentation
    return model


def build_augmenter(image_size: int, augment: AugmentConfig, seed: int) -> keras.Model:
    """Raw pixels -> the training augmentation (always on), alone: its output goes to another runtime's backbone."""
    pipeline = build_augmentation(augment, seed=seed)
    if pipeline is None:
        raise ValueError("augmented views need an augmentation config with a transform on")
    allow_jit(pipeline)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    model = keras.Model(inputs, AlwaysAugment(pipeline, name="augment")(inputs), name="augmenter")
    model.pipeline = pipeline  # for reseed_augmentation
    return model


def reseed_augmentation(model: keras.Model, augment: AugmentConfig, seed: int) -> None:
    """Restart `model`'s augmentation random streams as a pipeline built with `seed` would start.

    One compiled extractor then serves every view (view k draws from seed + k), instead of one
    trace or XLA compile of ResNet-50 per view.
    """
    fresh = build_augmentation(augment, seed=seed)
    for live, new in zip(model.pipeline.layers, fresh.layers, strict=True):
        generator = getattr(live, "generator", None)
        if isinstance(generator, keras.random.SeedGenerator) and getattr(new, "seed", None) is not None:
            state = np.array([int(new.seed), 0], dtype=keras.backend.standardize_dtype(generator.state.dtype))
            generator.state.assign(state)


class _Collect(keras.callbacks.Callback):
    """Stores each predicted batch as it comes, one batch behind so the device never waits on us."""

    def __init__(self, store: Callable[[int, np.ndarray], None], should_stop: Callable[[], bool] | None):
        super().__init__()
        self.store = store
        self.should_stop = should_stop
        self.pending: tuple[int, object] | None = None
        self.stopped = False

    def on_predict_batch_end(self, batch, logs=None):
        previous, self.pending = self.pending, (batch, (logs or {})["outputs"])
        if previous is not None:
            self.store(previous[0], keras.ops.convert_to_numpy(previous[1]))
        if self.should_stop and self.should_stop():
            self.model.stop_predicting = True
            self.stopped = True

    def on_predict_end(self, logs=None):
        if self.pending is not None:
            self.store(self.pending[0], keras.ops.convert_to_numpy(self.pending[1]))
            self.pending = None


class FeatureCache:
    """Features of one image cache through one backbone, view by view, computed on demand."""

    def __init__(
        self,
        cache_root: str | os.PathLike,
        images: ImageCache,
        image_size: int,
        backbone_key: str,
        workers: int = 1,
        replicas: int = 1,
        runtime: str | None = None,
    ):
        self.images = images
        self.cache_root = Path(cache_root)
        self.runtime = runtime  # asked for (core.runtimes.choice.requested); None: $FLORA_RUNTIME, else auto
        self.decision: Decision | None = None  # which runtime ran the backbone last, and why
        self._forwards: dict[int, Forward] = {}  # per extractor
        self.image_size = image_size
        self.directory = features_dir(cache_root) / features_cache_name(images.content_key, image_size, backbone_key)
        self.workers = workers  # threads reading batches ahead of the model
        self.replicas = replicas  # batches are a multiple of this (data-parallel devices)
        self._augmenting: dict[tuple[int, str], keras.Model] = {}  # per extractor and augmentation

    def _files(self, view: int, augment_key: str | None) -> tuple[Path, Path]:
        stem = "view0" if view == 0 else f"view{view}-{augment_key}"
        return self.directory / f"{stem}.npy", self.directory / f"{stem}.done.npy"

    def get(
        self,
        extractor: keras.Model,
        positions: np.ndarray,
        view: int = 0,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        batch_size: int = 64,
        progress: CountCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """Features (len(positions), the backbone's width) float16 of `view` for the images at `positions`.

        Rows already computed are read from disk; the rest go through the backbone and are stored.

        Raises:
            ExtractionStopped: `should_stop` returned True (what was computed is kept).
        """
        positions = np.asarray(positions, dtype=np.int64)
        if view > 0 and (augment is None or not augment.enabled):
            raise ValueError("augmented views need an augmentation config with a transform on")
        augment_key = augment_hash(augment, seed + view) if view > 0 else None
        data_file, done_file = self._files(view, augment_key)
        features, done = self._load(data_file, done_file, int(extractor.output_shape[-1]))
        missing = np.unique(positions[~done[positions]])
        if not len(missing):
            if progress:
                progress(len(positions), len(positions))
            return features[positions]

        batch_size = even_batch_size(len(missing), batch_size, self.replicas)
        forward = self._forward(extractor, missing, batch_size)
        model = extractor
        if view > 0:
            key = (id(extractor), canonical_json(augment.to_dict()), forward.runtime == KERAS)
            if key not in self._augmenting:
                build = build_augmenting_extractor if forward.runtime == KERAS else _augmenter_for
                self._augmenting[key] = build(extractor, augment, seed + view)
            model = self._augmenting[key]
            reseed_augmentation(model, augment, seed + view)
        computed = 0

        def store(batch_index: int, out: np.ndarray) -> None:
            nonlocal computed
            rows = segment[batch_index * batch_size : (batch_index + 1) * batch_size]
            features[rows] = out[: len(rows)].astype(np.float16)
            done[rows] = True
            computed += len(rows)
            if progress:
                progress(computed, len(missing))

        if progress:
            progress(0, len(missing))
        step = SEGMENT_BATCHES * batch_size
        saved_at = time.monotonic()
        for start in range(0, len(missing), step):
            segment = missing[start : start + step]
            collect = _Collect(store, should_stop)
            batches = ExtractionBatches(
                self.images,
                segment,
                self.image_size,
                batch_size,
                workers=self.workers,
                max_queue_size=max(2, 2 * self.workers),
            )
            if forward.runtime == KERAS:
                model.predict(batches, verbose=0, callbacks=[collect])
            else:
                _run_segment(forward, model if view > 0 else None, batches, collect, self.workers)
            if collect.stopped:
                self._save(data_file, done_file, features, done)  # keep what was computed
                raise ExtractionStopped("feature extraction stopped on request")
            if start + step < len(missing) and time.monotonic() - saved_at >= CHECKPOINT_SECONDS:
                self._save(data_file, done_file, features, done)  # a checkpoint a crash will not lose
                saved_at = time.monotonic()
        self._save(data_file, done_file, features, done)
        return features[positions]

    def _forward(self, extractor: keras.Model, missing: np.ndarray, batch_size: int) -> Forward:
        """The extractor through the runtime asked for (or the fastest one here), chosen once per extractor and
        checked against Keras on the first images still to compute. Several replicas: Keras (data parallel)."""
        forward = self._forwards.get(id(extractor))
        if forward is None:
            if self.replicas > 1:
                forward = keras_forward(extractor, f"data parallel over {self.replicas} devices: Keras runs it")
            else:
                sample = center_crop(self.images.read(missing[:4]), self.image_size)
                forward = accelerated(
                    extractor, runtime=self.runtime, cache_root=self.cache_root, sample=sample, batch=batch_size
                )
            self._forwards[id(extractor)] = forward
        self.decision = forward.decision
        return forward

    def _load(self, data_file: Path, done_file: Path, width: int) -> tuple[np.ndarray, np.ndarray]:
        total = len(self.images)
        if data_file.exists() and done_file.exists():
            try:
                features, done = np.load(data_file), np.load(done_file)
            except (OSError, ValueError):  # a torn or foreign file: start over
                return _empty(total, width)
            if features.shape == (total, width) and done.shape == (total,):
                return features, done
        return _empty(total, width)

    def _save(self, data_file: Path, done_file: Path, features: np.ndarray, done: np.ndarray) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for path, array in ((data_file, features), (done_file, done)):
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.save(f, array)


def _augmenter_for(extractor: keras.Model, augment: AugmentConfig, seed: int) -> keras.Model:
    return build_augmenter(int(extractor.input_shape[1]), augment, seed)


def _run_segment(forward: Forward, augmenter: keras.Model | None, batches, collect: _Collect, workers: int) -> None:
    """Every batch of `batches` through `forward` (after `augmenter`, for an augmented view), read `workers`
    batches ahead in threads; each result goes to `collect` as Keras's predict would hand it over."""
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="extraction-read") as pool:
        ahead: collections.deque = collections.deque()
        submitted = 0
        for index in range(len(batches)):
            while submitted < len(batches) and len(ahead) <= workers:
                ahead.append(pool.submit(batches.__getitem__, submitted))
                submitted += 1
            x = ahead.popleft().result()[0].astype(np.float32)
            if augmenter is not None:
                x = keras.ops.convert_to_numpy(augmenter.predict_on_batch(x))
            collect.store(index, forward.run(x)[0])
            if collect.should_stop and collect.should_stop():
                collect.stopped = True
                for pending in ahead:
                    pending.cancel()
                return


def even_batch_size(n: int, largest: int, multiple: int = 1) -> int:
    """The smallest batch, a multiple of `multiple`, that covers `n` rows in as few batches as `largest` does.

    Every batch has one shape (the last one padded), and the padding stays under one row per batch
    instead of up to a whole batch: 350 rows at most 64 go as 6 x 59, not 6 x 64.
    """
    largest = max(1, largest)
    batches = max(1, -(-n // largest))
    return padded_length(-(-n // batches), multiple)


def _empty(total: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((total, width), dtype=np.float16), np.zeros(total, dtype=bool)
