"""What label-next works on: the features of the labelled photos and of the unlabelled ones, through one backbone.

For a run: its training split's pooled features (core.results.tasks.training_features) and the unlabelled photos'
through the run's own model, decoded into the image cache like any photo (core.data.ingest) and stored in the run
folder (`label_next.npz`: features, paths, the unlabelled folder's fingerprint, the files that could not be read), so
a page reads them without Keras. For a dataset without a run: every photo through a ResNet-50 with the given weights
(the feature cache's, as `label-issues DATASET` does).

The features are reduced (core.results.labels.out_of_sample.reduce, unsupervised) over labelled and unlabelled rows
together; photos labelled from the unlabelled folder join the labelled rows with their new class.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from core.data.ingest import ingest
from core.data.unlabelled import Unlabelled
from core.fileio import atomic_path
from core.paths import cache_dir
from core.progress import StageCallback
from core.results.dataset_features import DatasetSource, dataset_features
from core.results.label_next import picking, simulation
from core.results.labels.out_of_sample import dimensions, reduce
from core.runs.files import run_files
from core.runs.record import Run


@dataclass
class UnlabelledFeatures:
    """The unlabelled photos' pooled features through one backbone (every photo of the folder when computed)."""

    features: np.ndarray  # (N, width) float16
    paths: list[str]
    fingerprint: str
    failures: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}: could not be read

    def save(self, run_dir: str | os.PathLike) -> None:
        with atomic_path(run_files(run_dir).label_next) as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                features=self.features,
                paths=np.array(self.paths, dtype=str),
                fingerprint=np.array(self.fingerprint),
                failures=np.array(json.dumps(self.failures)),
            )

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> UnlabelledFeatures | None:
        path = run_files(run_dir).label_next
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as data:
            return cls(
                data["features"], data["paths"].tolist(), str(data["fingerprint"]), json.loads(str(data["failures"]))
            )


def extract(
    unlabelled: Unlabelled,
    model,
    image_size: int,
    cache_size: int,
    data_root: str | os.PathLike,
    progress: StageCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> UnlabelledFeatures:
    """Every unlabelled photo (pending or already labelled) decoded once and through `model`'s backbone."""
    from core.network.model import backbone_of  # heavy: keras
    from core.train.features import FeatureCache, build_extractor, weights_hash  # heavy: keras

    index = unlabelled.index(pending_only=False)
    if not index.entries:
        return UnlabelledFeatures(np.zeros((0, 0), dtype=np.float16), [], index.fingerprint)
    cache = ingest(
        index,
        cache_size,
        cache_dir(data_root),
        progress=(lambda d, t: progress("decoding the unlabelled photos", d, t)) if progress else None,
        should_stop=should_stop,
    )
    features = np.zeros((0, 0), dtype=np.float16)
    if len(cache):
        store = FeatureCache(cache_dir(data_root), cache, image_size, weights_hash(backbone_of(model)))
        features = store.get(
            build_extractor(model),
            np.arange(len(cache)),
            batch_size=32,
            progress=(lambda d, t: progress("features of the unlabelled photos", d, t)) if progress else None,
            should_stop=should_stop,
        )
    return UnlabelledFeatures(features, list(cache.paths), index.fingerprint, list(cache.failures))


def prepare_run(
    run: Run,
    data_root: str | os.PathLike,
    progress: StageCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> UnlabelledFeatures:
    """The run's view of its dataset's unlabelled photos, computed and stored in the run folder."""
    from core.network.model import load_classifier  # heavy: keras

    unlabelled = Unlabelled.load(data_root, run.dataset_path)
    config = run.train_config
    result = extract(
        unlabelled, load_classifier(run_files(run).model), config.image_size, config.cache_size, data_root,
        progress, should_stop,
    )  # fmt: skip
    result.save(run.directory)
    return result


@dataclass
class Workbench:
    """Labelled and pending rows on one reduced feature space, ready for `label_next.next_batch`."""

    classes: list[str]
    labelled_x: np.ndarray
    labelled_y: np.ndarray
    pending_x: np.ndarray
    pending_paths: list[str]
    newly_labelled: int  # photos labelled from the unlabelled folder since the run trained (rows added here)
    labelled_here: int  # every photo labelled from the unlabelled folder among the labelled rows (the run's too)
    failures: list[dict[str, str]]
    missing: list[str]  # pending photos without features yet (added after the preparation)

    @property
    def ready(self) -> bool:
        return not self.missing

    def next_batch(self, batch: int = 10, seed: int = 0):
        return picking.next_batch(
            self.labelled_x, self.labelled_y, self.pending_x, self.pending_paths, self.classes, batch, seed
        )


def workbench(
    classes: list[str],
    labelled_features: np.ndarray,
    labelled_labels: np.ndarray,
    unlabelled: Unlabelled,
    computed: UnlabelledFeatures | None,
    seed: int = 0,
    labelled_paths: list[str] | None = None,
) -> Workbench:
    """Join the labelled photos, the photos labelled since (with their new class) and the pending ones.

    `labelled_paths`: the labelled rows' paths; a photo labelled in Flora whose copy is already among them (a run
    trained after it was labelled) is not counted twice, and counts among the photos labelled here."""
    row_of = {p: i for i, p in enumerate(computed.paths)} if computed is not None else {}
    failed = {f["path"] for f in (computed.failures if computed is not None else [])}
    label_of = {name: i for i, name in enumerate(classes)}
    known = set(labelled_paths or ())
    new = [
        (row_of[p], label_of[c])
        for p, c in unlabelled.labelled.items()
        if p in row_of and c in label_of and unlabelled.record[p].get("to") not in known
    ]
    trained_on = sum(1 for p in unlabelled.labelled if unlabelled.record[p].get("to") in known)
    pending = [p for p in unlabelled.pending if p in row_of]
    missing = [p for p in unlabelled.pending if p not in row_of and p not in failed]
    parts = [np.asarray(labelled_features)]
    if computed is not None and len(computed.paths):
        parts.append(computed.features[[r for r, _ in new]])
        parts.append(computed.features[[row_of[p] for p in pending]])
    x = np.concatenate(parts) if len(parts) > 1 else parts[0]
    x = reduce(x, dimensions(len(classes)), seed) if len(x) > 1 else np.asarray(x, dtype=np.float32)
    n_old, n_new = len(labelled_labels), len(new)
    y = np.concatenate([np.asarray(labelled_labels, dtype=np.int64), np.array([c for _, c in new], dtype=np.int64)])
    return Workbench(
        classes,
        x[: n_old + n_new],
        y,
        x[n_old + n_new :],
        pending,
        n_new,
        trained_on + n_new,
        computed.failures if computed is not None else [],
        missing,
    )


def simulate_features(
    pool_features: np.ndarray,
    pool_labels: np.ndarray,
    val_features: np.ndarray,
    val_labels: np.ndarray,
    num_classes: int,
    seeds: int = 3,
    batch: int | None = None,
    progress: StageCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """`label_next_simulation.simulate` on pooled features (reduced together, unsupervised)."""
    x = reduce(np.concatenate([pool_features, val_features]), dimensions(num_classes))
    n = len(pool_labels)
    return simulation.simulate(
        x[:n], pool_labels, x[n:], val_labels, num_classes, seeds=seeds, batch=batch,
        progress=(lambda d, t: progress("labelling batch by batch, both strategies", d, t)) if progress else None,
        should_stop=should_stop,
    )  # fmt: skip


@dataclass
class DatasetPool:
    """A dataset's photos through a ResNet-50 with given weights: the labelled ones and the unlabelled ones."""

    classes: list[str]
    features: np.ndarray
    labels: np.ndarray
    paths: list[str]
    unlabelled: UnlabelledFeatures
    source: str


def dataset_pool(source: DatasetSource, progress: StageCallback | None = None) -> DatasetPool:
    """Every labelled and unlabelled photo of a dataset without a run through one backbone (the feature cache's)."""
    found = dataset_features(source, progress)
    data_root, image_size, weights = source.data_root, source.image_size, source.weights
    index, config, model, cache, features = found.index, found.config, found.model, found.cache, found.features
    unlabelled = extract(
        Unlabelled.load(data_root, index.root), model, image_size, config.cache_size, data_root, progress
    )
    return DatasetPool(
        index.classes, features, np.asarray(cache.labels), list(cache.paths), unlabelled,
        f"ResNet-50 ({weights}) features of {index.name} at {image_size} px",
    )  # fmt: skip
