"""Every photo of a dataset without a run through a backbone with given weights (the feature cache's): what
`label-issues`, `data-issues` and `label-next` look at when they are given a dataset instead of a run.

`DatasetSource` is that request (the dataset, the data folder, the input size, the weights, the seed), the one
argument of each of them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.datasets import DatasetIndex, scan_dataset
from core.data.ingest import ImageCache, ingest
from core.paths import cache_dir
from core.progress import StageCallback
from core.settings.config import TrainConfig


@dataclass(frozen=True)
class DatasetSource:
    """A dataset without a run, and how its photos are seen: through a backbone with `weights` at `image_size`;
    `seed` makes a random backbone (weights "none"), draws folds and a random start."""

    path: Path
    data_root: Path
    image_size: int = 224
    weights: str = "imagenet"
    seed: int = 42

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "data_root", Path(self.data_root))


@dataclass
class DatasetFeatures:
    """A dataset's readable photos (the image cache's order), their pooled features and the network that made them."""

    index: DatasetIndex
    cache: ImageCache
    config: TrainConfig
    model: object  # the keras classifier whose backbone gave the features (weights as asked, head untrained)
    features: np.ndarray  # (photos, width) float16

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.cache.labels, dtype=np.int64)


def dataset_features(source: DatasetSource, progress: StageCallback | None = None) -> DatasetFeatures:
    """Scan, decode (once, into the cache) and extract pooled features (once, into the feature cache)."""
    import keras  # heavy: keras

    from core.network.model import backbone_of, build_classifier  # heavy: keras
    from core.train.features import FeatureCache, build_extractor, weights_hash  # heavy: keras

    index = scan_dataset(source.path)
    image_size, weights, seed = source.image_size, source.weights, source.seed
    config = TrainConfig(image_size=image_size, weights=weights, seed=seed)
    cache = ingest(
        index,
        config.cache_size,
        cache_dir(source.data_root),
        progress=(lambda d, t: progress("decoding images", d, t)) if progress else None,
    )
    keras.utils.set_random_seed(seed)  # weights "none": the same random backbone for the same seed
    model = build_classifier(len(index.classes), image_size, weights, head=(8,), seed=seed, backbone=config.backbone)
    store = FeatureCache(cache_dir(source.data_root), cache, image_size, weights_hash(backbone_of(model)))
    features = store.get(
        build_extractor(model),
        np.arange(len(cache)),
        batch_size=32,
        progress=(lambda d, t: progress("extracting features", d, t)) if progress else None,
    )
    return DatasetFeatures(index, cache, config, model, features)
