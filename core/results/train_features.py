"""A run's training-split pooled features (train_features.npz): for photos like this, label issues, label-next and the
fix estimate; and the run's data and model read again for them."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.device import without_cuda_noise
from core.errors import Cancelled
from core.fileio import atomic_path
from core.paths import cache_dir
from core.progress import StageCallback
from core.runs.files import run_files
from core.runs.record import Run
from core.runs.split import run_split


class FeaturesStopped(Cancelled):
    """Computing the features was stopped on request."""


def rebuild_data(run: Run, data_root: str | os.PathLike, progress: StageCallback | None = None):
    """The run's images and split as it trained on them (core.runs.split: fingerprint checked, corrections applied).

    Raises:
        DatasetChanged: the dataset is gone or changed since the run (its photos are not the same).
    """

    decoding = (lambda d, t: progress("decoding images", d, t)) if progress else None
    return run_split(run, cache_dir(data_root), progress=decoding)


def load_model(run: Run):
    """The run's saved classifier (model.keras)."""

    with without_cuda_noise():
        from core.network.model import load_classifier  # heavy: keras

        return load_classifier(run_files(run).model)


@dataclass
class TrainFeatures:
    """Pooled features of a run's training split (for neighbours and cross-validated label checks)."""

    features: np.ndarray  # (N, 2048) float16
    labels: np.ndarray
    paths: list[str]

    def save(self, run_dir: str | os.PathLike) -> None:

        with atomic_path(run_files(run_dir).train_features) as tmp, open(tmp, "wb") as f:
            np.savez(f, features=self.features, labels=self.labels, paths=np.array(self.paths, dtype=str))

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> TrainFeatures | None:
        path = run_files(run_dir).train_features
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as data:
            return cls(data["features"], data["labels"], data["paths"].tolist())


def training_features(
    run: Run,
    data_root: str | os.PathLike,
    progress: StageCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainFeatures:
    """The run's training-split features: stored in the run folder, else from the feature cache
    (free when the run trained its head on cached features and never fine-tuned), else computed once."""
    stored = TrainFeatures.load(run.directory)
    if stored is not None:
        return stored
    from core.network.model import backbone_of  # heavy: keras
    from core.train.features import FeatureCache, build_extractor, weights_hash  # heavy: keras

    data = rebuild_data(run, data_root, progress)
    model = load_model(run)
    store = FeatureCache(
        cache_dir(data_root), data.cache, run.train_config.image_size, weights_hash(backbone_of(model))
    )
    features = store.get(
        build_extractor(model),
        data.split.train,
        batch_size=32,
        progress=(lambda d, t: progress("training-split features", d, t)) if progress else None,
        should_stop=should_stop,
    )
    result = TrainFeatures(
        features, data.cache.labels[data.split.train], [data.cache.paths[i] for i in data.split.train]
    )
    result.save(run.directory)
    return result
