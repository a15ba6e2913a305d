"""Pooled ResNet-50 features, computed once per (dataset, size, backbone weights, view) and cached.

When the backbone is frozen its output for an image never changes, so the head can train on
stored 2048-d features in seconds instead of pushing every image through ResNet-50 every epoch.
View 0 is the clean centre crop; views 1..k are passes through the training augmentation layers,
so augmentation still matters.

  data/.cache/features/<dataset fingerprint>-<image size>-<backbone hash>/view0.npy
  data/.cache/features/<...>/view<k>-<augmentation hash>.npy      (k >= 1)
each with a `.done.npy` mask of the rows already computed, so another split reuses them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from core.augment import apply, build_augmentation
from core.config import AugmentConfig, canonical_json
from core.fileio import atomic_path
from core.imaging import center_crop
from core.ingest import ImageCache
from core.model import FEATURE_DIM, ResNetPreprocess, backbone_of

FEATURES_DIRNAME = "features"
Progress = Callable[[int, int], None]


class ExtractionStopped(RuntimeError):
    """Feature extraction was stopped on request."""


def weights_hash(model: keras.Model) -> str:
    """A short hash of every weight value: equal hashes mean the same backbone."""
    digest = hashlib.blake2b(digest_size=8)
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


def augment_hash(config: AugmentConfig, seed: int) -> str:
    return hashlib.sha256(canonical_json({"augment": config.to_dict(), "seed": seed}).encode()).hexdigest()[:10]


def build_extractor(classifier: keras.Model) -> keras.Model:
    """Raw pixels -> preprocessing -> the classifier's own backbone -> pooled features (shared weights)."""
    backbone = backbone_of(classifier)
    size = backbone.input_shape[1]
    inputs = keras.Input((size, size, 3), name="image")
    x = ResNetPreprocess(name="resnet_preprocess")(inputs)
    x = backbone(x)
    outputs = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, outputs, name="feature_extractor")


class FeatureCache:
    """Features of one image cache through one backbone, view by view, computed on demand."""

    def __init__(self, cache_root: str | os.PathLike, images: ImageCache, image_size: int, backbone_key: str):
        self.images = images
        self.image_size = image_size
        self.directory = Path(cache_root) / FEATURES_DIRNAME / f"{images.fingerprint}-{image_size}-{backbone_key}"

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
        progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """Features (len(positions), 2048) float16 of `view` for the images at `positions`.

        Rows already computed are read from disk; the rest go through the backbone and are stored.
        """
        positions = np.asarray(positions, dtype=np.int64)
        if view > 0 and (augment is None or not augment.enabled):
            raise ValueError("augmented views need an augmentation config with a transform on")
        augment_key = augment_hash(augment, seed + view) if view > 0 else None
        data_file, done_file = self._files(view, augment_key)
        total = len(self.images)
        if data_file.exists() and done_file.exists():
            features = np.load(data_file)
            done = np.load(done_file)
            if features.shape != (total, FEATURE_DIM) or done.shape != (total,):
                features, done = _empty(total)
        else:
            features, done = _empty(total)
        missing = positions[~done[positions]]
        missing = np.unique(missing)
        if len(missing):
            pipeline = build_augmentation(augment, seed=seed + view) if view > 0 else None
            computed = 0
            if progress:
                progress(0, len(missing))
            for start in range(0, len(missing), batch_size):
                if should_stop and should_stop():
                    self._save(data_file, done_file, features, done)  # keep what was computed
                    raise ExtractionStopped("feature extraction stopped on request")
                chunk = missing[start : start + batch_size]
                batch = center_crop(self.images.read(chunk), self.image_size)
                if pipeline is not None:
                    batch = apply(pipeline, batch)
                out = extractor.predict_on_batch(batch.astype("float32"))
                features[chunk] = keras.ops.convert_to_numpy(out).astype(np.float16)
                done[chunk] = True
                computed += len(chunk)
                if progress:
                    progress(computed, len(missing))
            self._save(data_file, done_file, features, done)
        elif progress:
            progress(len(positions), len(positions))
        return features[positions]

    def _save(self, data_file: Path, done_file: Path, features: np.ndarray, done: np.ndarray) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for path, array in ((data_file, features), (done_file, done)):
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.save(f, array)


def _empty(total: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((total, FEATURE_DIM), dtype=np.float16), np.zeros(total, dtype=bool)
