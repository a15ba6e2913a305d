"""What a served run is compared against, computed once per run and kept in its folder:

  models/<run_id>/ood.npz    the out-of-distribution detectors (PCA, class means, precision, the normalised
                             training features of kNN, the image statistics' medians and spreads) and the
                             validation baselines the Monitor page tests drift against
  models/<run_id>/ood.json   thresholds, the chosen method and the evidence for it (rates, AUROC)

A run trained before this existed gets its files on first use (`ensure_reference`). Kept apart from
any other per-run analysis files so the two can be joined later without either depending on the other.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.data.datasets import DatasetIndex
from core.data.imaging import center_crop
from core.errors import Unavailable
from core.fileio import atomic_path, read_json, write_json_atomic
from core.network import layer_names as names
from core.paths import cache_dir
from core.progress import StageCallback
from core.results.probabilities.calibration import run_temperature
from core.results.probabilities.foreign import foreign_images
from core.results.probabilities.foreign_features import (
    FrozenBackbone,
    foreign_features_path,
    keep_foreign_features,
    load_foreign_features,
)
from core.results.probabilities.image_stats import StatsCheck, image_statistics
from core.results.probabilities.knn_distance import KNNDistance
from core.results.probabilities.ood import (
    DRIFT_DIMENSIONS,
    PCA_DIMENSIONS,
    Mahalanobis,
    OODDetector,
    Projection,
)
from core.results.probabilities.ood_choice import PictureInputs, fit
from core.runs.analysis import softmax
from core.runs.curves import REFERENCE_STAGE, REFERENCE_TRAIN_SAMPLE
from core.runs.files import run_files
from core.runs.record import Run
from core.runs.split import DatasetChanged, run_split
from core.runtimes.choice import accelerated

log = logging.getLogger("flora")
FORMAT_VERSION = 2  # 2: kNN distance, image statistics and their combinations, picked on a separate foreign set
REPORT_SEED = 1  # the foreign images the figures are reported on (seed 0: the ones the method is picked on)
MAX_TRAIN_IMAGES = REFERENCE_TRAIN_SAMPLE  # enough for class means and a shrunk covariance; bounds the time
RUNTIME_WORTH_IMAGES = 512  # from this many photos to pass, the graph goes to the fastest runtime (core.runtimes)


class ReferenceUnavailable(Unavailable):
    """The reference cannot be computed (no dataset, no model); the message says why."""


@dataclass
class Reference:
    """A run's OOD detector and its validation baselines."""

    run_id: str
    detector: OODDetector
    val_confidence: np.ndarray  # (N,) top probability of each validation photo (calibrated)
    val_projection: np.ndarray  # (N, DRIFT_DIMENSIONS) pooled features of validation photos, PCA
    val_predicted: np.ndarray  # (N,) predicted class of each validation photo
    train_counts: np.ndarray  # (C,) training photos per class
    created: float

    @property
    def projection(self) -> Projection:
        return self.detector.mahalanobis.projection

    def drift_projection(self, features: np.ndarray) -> np.ndarray:
        """Pooled features -> the PCA coordinates the log keeps for input drift."""
        return self.projection(features, DRIFT_DIMENSIONS)

    def summary(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "run_id": self.run_id,
            "method": self.detector.method,
            "thresholds": self.detector.thresholds,
            "scales": self.detector.scales,
            "knn_k": self.detector.knn.k if self.detector.knn is not None else None,
            "evidence": self.detector.evidence,
            "validation_images": len(self.val_confidence),
            "train_counts": self.train_counts.astype(int).tolist(),
            "created": self.created,
        }

    def save(self, run_dir: str | os.PathLike) -> None:
        files = run_files(run_dir)
        m = self.detector.mahalanobis
        with atomic_path(files.reference_arrays) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(
                f,
                pca_mean=m.projection.mean,
                pca_components=m.projection.components,
                class_means=m.means,
                precision=m.precision,
                val_confidence=self.val_confidence.astype(np.float32),
                val_projection=self.val_projection.astype(np.float32),
                val_predicted=self.val_predicted.astype(np.int32),
                train_counts=self.train_counts.astype(np.int64),
                knn_bank=(self.detector.knn.bank if self.detector.knn is not None else np.zeros((0, 1))).astype(
                    np.float16
                ),
                stats_median=self.detector.stats.median if self.detector.stats is not None else np.zeros(0),
                stats_spread=self.detector.stats.spread if self.detector.stats is not None else np.zeros(0),
            )
        write_json_atomic(files.reference_summary, self.summary())

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> Reference | None:
        """The stored reference, or None when there is none (or it is of another version)."""
        files = run_files(run_dir)
        summary = read_json(files.reference_summary)
        if not summary or summary.get("version") != FORMAT_VERSION or not files.reference_arrays.exists():
            return None
        with np.load(files.reference_arrays, allow_pickle=False) as data:
            projection = Projection(data["pca_mean"], data["pca_components"])
            mahalanobis = Mahalanobis(projection, data["class_means"], data["precision"])
            knn = KNNDistance(data["knn_bank"].astype(np.float32), int(summary["knn_k"])) if summary["knn_k"] else None
            stats = StatsCheck(data["stats_median"], data["stats_spread"]) if len(data["stats_median"]) else None
            detector = OODDetector(
                summary["method"],
                dict(summary["thresholds"]),
                mahalanobis,
                summary["evidence"],
                knn=knn,
                stats=stats,
                scales={k: list(v) for k, v in summary["scales"].items()},
            )
            return cls(
                summary["run_id"],
                detector,
                data["val_confidence"],
                data["val_projection"],
                data["val_predicted"],
                data["train_counts"],
                float(summary.get("created", 0.0)),
            )


@dataclass
class KnownOutputs:
    """Outputs training computed with the run's final weights, in its split's order (float16 features are fine):
    fitting the reference at the end of training reuses them instead of passing those photos again."""

    val: tuple[np.ndarray, np.ndarray] | None = None  # (pooled features, logits) of split.val
    test: tuple[np.ndarray, np.ndarray] | None = None  # ... of split.test
    train_features: np.ndarray | None = None  # (n_train, D) clean pooled features of split.train; None after phase 2

    def split(self, name: str, rows: int) -> dict[str, np.ndarray] | None:
        found = getattr(self, name)
        if found is None or len(found[0]) != rows or len(found[1]) != rows:
            return None
        return {names.FEATURES: np.asarray(found[0], np.float32), names.LOGITS: np.asarray(found[1], np.float32)}

    def train(self, rows: np.ndarray, total: int) -> dict[str, np.ndarray] | None:
        if self.train_features is None or len(self.train_features) != total:
            return None
        return {names.FEATURES: np.asarray(self.train_features[rows], np.float32)}


def reference_stamp(run_dir: str | os.PathLike) -> float:
    """When the run's reference was written (a cache key), 0 when it has none."""
    try:
        return run_files(run_dir).reference_summary.stat().st_mtime
    except OSError:
        return 0.0


def ensure_reference(run: Run, data_root: str | os.PathLike | None = None, model=None, **inputs) -> Reference:
    """The run's reference, computed and stored first when it has none (`inputs`: `compute_reference`'s
    cache_root, index and known).

    Training fits it as its last step (`core.train.training`), so a server's first switch to a run only loads
    it; a run trained before that gets it here, on first use.

    Raises:
        ReferenceUnavailable: no model, or the dataset is gone.
    """
    found = Reference.load(run.directory)
    if found is not None:
        return found
    reference = compute_reference(run, data_root, model, **inputs)
    reference.save(run.directory)
    return reference


def compute_reference(
    run: Run,
    data_root: str | os.PathLike | None = None,
    model=None,
    cache_root: str | os.PathLike | None = None,
    index: DatasetIndex | None = None,
    known: KnownOutputs | None = None,
    progress: StageCallback | None = None,
    make_model: Callable[[], Any] | None = None,
    frozen: FrozenBackbone | None = None,
) -> Reference:
    """Run the model over the run's train (a sample), validation and test splits and foreign images; fit.

    `cache_root` (default `<data_root>/.cache`) holds the decoded images; `index`, the dataset already scanned;
    `known`, what training computed already with the final weights (those photos are not passed again);
    `progress(REFERENCE_STAGE, done, total)`: the images through the model so far (most of the step's time).
    `make_model`: builds the model when `model` is None and some image must pass (else model.keras is loaded);
    `frozen`: the run's backbone is the frozen one its features were cached for, so the foreign images' features
    are kept in the feature cache and a run on the same backbone reads them back (foreign_features.py).
    """
    from core.network.graph import run_outputs  # heavy: keras

    if not run.has_model:
        raise ReferenceUnavailable(f"run {run.run_id} has no saved model")
    started = time.time()
    config = run.train_config
    try:  # the run's own split: its label corrections and exclusions
        data = run_split(run, cache_root if cache_root is not None else cache_dir(data_root), index)
    except DatasetChanged as e:
        raise ReferenceUnavailable(f"{e}; no out-of-distribution reference") from e
    cache, split = data.cache, data.split
    rng = np.random.default_rng(0)
    rows = np.arange(len(split.train))
    if len(rows) > MAX_TRAIN_IMAGES:
        rows = np.sort(rng.choice(rows, MAX_TRAIN_IMAGES, replace=False))
    train = split.train[rows]
    known = known or KnownOutputs()
    features_root = cache_root if cache_root is not None else cache_dir(data_root)

    def network():
        """The model, built on first need: a rerun on a frozen backbone may pass no image at all."""
        nonlocal model
        if model is None and make_model is not None:
            model = make_model()
        elif model is None:
            model = load_inference_model(run)
            passing = 0 if known.train(rows, len(split.train)) else len(train)
            passing += sum(
                len(part)
                for name, part in (("val", split.val), ("test", split.test))
                if not known.split(name, len(part))
            )
            if passing >= RUNTIME_WORTH_IMAGES:  # converting and checking the graph takes a few seconds
                model = accelerated(model, cache_root=features_root)
        return model

    def pixels(positions: np.ndarray) -> np.ndarray:
        size = config.image_size
        chunks = [center_crop(cache.read(positions[i : i + 256]), size) for i in range(0, len(positions), 256)]
        return np.concatenate(chunks) if chunks else np.zeros((0, size, size, 3), np.uint8)

    given = {
        "train": known.train(rows, len(split.train)),
        "val": known.split("val", len(split.val)),
        "test": known.split("test", len(split.test)),
    }

    # The foreign images: seed 0 picks the method, REPORT_SEED reports on it; kept per frozen backbone, else drawn.
    def kept_path(seed: int):
        return foreign_features_path(features_root, frozen.key, config.image_size, config.cache_size, seed)

    kept = {seed: frozen and load_foreign_features(kept_path(seed)) for seed in (0, REPORT_SEED)}
    drawn = {seed: foreign_images(config.image_size, config.cache_size, seed=seed) for seed in kept if not kept[seed]}
    foreign_count = {seed: sum(len(f) for f, _ in kept[seed].values()) if kept[seed] else 0 for seed in kept}
    foreign_count.update({seed: sum(len(images) for images in sets.values()) for seed, sets in drawn.items()})
    through = [
        len(p) for name, p in (("train", train), ("val", split.val), ("test", split.test)) if given[name] is None
    ]
    total = sum(through) + sum(foreign_count.values())
    passed = [0]

    def count(n: int) -> None:  # photos through the model so far: the step's count and, from its pace, time left
        passed[0] += n
        if progress is not None:
            progress(REFERENCE_STAGE, passed[0], total)

    def outputs(positions: np.ndarray) -> dict[str, np.ndarray]:
        return run_outputs(network(), pixels(positions), on_batch=count)

    def foreign_outputs(seed: int) -> dict[str, tuple[dict[str, np.ndarray], np.ndarray]]:
        """{kind: ({features, logits}, image statistics)} of the foreign images of `seed`: kept ones through the head,
        else drawn ones through the network (and kept, on a frozen backbone)."""
        if kept[seed]:
            count(foreign_count[seed])
            return {
                kind: ({names.FEATURES: f, names.LOGITS: frozen.head_logits(f)}, stats)
                for kind, (f, stats) in kept[seed].items()
            }
        found = {
            kind: (run_outputs(network(), images, on_batch=count), image_statistics(images))
            for kind, images in drawn[seed].items()
        }
        if frozen is not None:
            keep_foreign_features(kept_path(seed), {k: (out[names.FEATURES], st) for k, (out, st) in found.items()})
        return found

    def statistics(positions: np.ndarray) -> np.ndarray:  # the decoded photos again: cheap beside a forward pass
        return np.concatenate([image_statistics(pixels(positions[i : i + 256])) for i in range(0, len(positions), 256)])

    if progress is not None:
        progress(REFERENCE_STAGE, 0, total)
    on_train = given["train"] or outputs(train)
    on_val = given["val"] or outputs(split.val)
    on_test = given["test"] or outputs(split.test)
    features, logits = names.FEATURES, names.LOGITS
    foreign = foreign_outputs(0)
    report = {kind: (out[logits], out[features], stats) for kind, (out, stats) in foreign_outputs(REPORT_SEED).items()}
    pictures = PictureInputs(
        train=statistics(train),
        val=statistics(split.val),
        test=statistics(split.test),
        foreign={kind: stats for kind, (_, stats) in foreign.items()},
        report=report,
    )
    projection = Projection.fit(on_train[features], PCA_DIMENSIONS)
    detector = fit(
        (on_train[features], cache.labels[train]),
        (on_val[logits], on_val[features]),
        (on_test[logits], on_test[features]),
        {kind: (out[logits], out[features]) for kind, (out, _) in foreign.items()},
        projection,
        pictures,
    )
    val_probabilities = softmax(on_val[logits], run_temperature(run))
    reference = Reference(
        run.run_id,
        detector,
        val_confidence=val_probabilities.max(axis=1),
        val_projection=projection(on_val[features], DRIFT_DIMENSIONS),
        val_predicted=val_probabilities.argmax(axis=1),
        train_counts=np.bincount(cache.labels[split.train], minlength=len(run.classes)),
        created=time.time(),
    )
    log.info(
        "reference for run %s in %.1fs: OOD method %s (%s)",
        run.run_id,
        time.time() - started,
        detector.method,
        {m: round(e["auroc_test_vs_foreign"] or 0, 3) for m, e in detector.evidence.items()},
    )
    return reference


def load_inference_model(run: Run, share_backbone: bool = False):
    """The run's classifier as a float32 inference graph (probabilities, logits, features).

    `share_backbone`: see `core.network.graph.inference_model` (the server's quicker load).
    """
    from core.network.graph import inference_model  # heavy: keras
    from core.network.model import load_classifier  # heavy: keras

    return inference_model(load_classifier(run_files(run).model), share_backbone=share_backbone)
