"""What the data-issues checks read, gathered from a run or from a dataset without one.

  a run       its training split's pooled features (core.results.train_features: stored, or from the feature
              cache) and its validation and test arrays (analysis.npz); out-of-sample probabilities: 5-fold
              cross-validation for the training photos (core.results.labels.out_of_sample), the run's calibrated softmax
              for validation and test (the model never trained on them), exactly as the label review makes them
  a dataset   every photo's features through a backbone (the feature cache's, when it has them), every photo
              cross-validated

Both add the dataset health check's per-file results (core.health: hashes and 32 px thumbnails, cached by the
dataset's fingerprint, so read in a moment once the Dataset page or `data check` ran, and cached for them
otherwise) and its duplicate, leak and imbalance findings, computed under the run's own split rule.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from core.data.datasets import DatasetError, scan_dataset
from core.health.findings import Checks
from core.health.hashing import analyse, duplicate_groups
from core.health.report import Finding
from core.health.table import image_table
from core.paths import cache_dir
from core.progress import StageCallback
from core.results.data_issues.outliers import LOOK_WIDTH, look_statistics
from core.results.dataset_features import DatasetSource, dataset_features
from core.results.labels.issues import Stacked
from core.results.labels.out_of_sample import FOLDS, dimensions, out_of_sample, reduce
from core.results.probabilities.calibration import calibrate_run
from core.results.train_features import FeaturesStopped, training_features
from core.runs.analysis import RunAnalysis, softmax
from core.runs.record import Run
from core.settings.config import TrainConfig

HEALTH_KINDS = {
    "duplicates": ("exact_duplicates", "near_duplicates", "conflicting_labels"),
    "leaks": ("split_leakage",),
    "imbalance": ("class_imbalance", "small_class"),
}


Stopped = FeaturesStopped  # stopped on request (the run task's own stop: core.results.tasks.TaskStopped)


@dataclass
class Inputs:
    """Every photo's reduced features, out-of-sample probabilities, label, path and split, and the health check's."""

    classes: list[str]
    features: np.ndarray  # (n, d) reduced: principal directions first
    probabilities: Stacked  # (n, classes), out of sample, read in place
    labels: np.ndarray
    paths: list[str]  # relative to the dataset folder
    splits: list[str]  # "train" | "val" | "test" | "all"
    how: str  # how the probabilities were made, in words
    source: dict  # {"run_id": ...} or {"dataset": ...}, and "dataset_path"
    look: np.ndarray | None = None  # (n, LOOK_WIDTH), nan where the health check has no thumbnail
    findings: dict[str, list[Finding]] = field(default_factory=dict)  # HEALTH_KINDS' keys
    health_note: str | None = None  # why the health check's findings are missing, when they are
    random_start: bool = False  # the features come from a backbone started from random weights
    dataset_fingerprint: str = ""  # the dataset folder as the health check read it (its counts are of that)
    dataset_photos: int | None = None


def _stage(progress: StageCallback | None, stage: str, done: int = 0, total: int = 1) -> None:
    if progress:
        progress(stage, done, total)


def for_run(
    run: Run,
    data_root: str | os.PathLike,
    progress: StageCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Inputs:
    """The run's photos of every split (its training features stored, from the feature cache, or computed once).

    Raises:
        AnalysisMissing: the run has no analysis arrays yet.
        Cancelled: `should_stop` asked to stop.
    """
    train = training_features(run, data_root, progress, should_stop)
    analysis = RunAnalysis.load(run.directory)
    temperature = calibrate_run(run.directory).temperature
    classes = analysis.classes
    _stage(progress, "reducing the features")
    parts = [train, analysis.val, analysis.test]
    x = reduce(np.concatenate([np.asarray(p.features) for p in parts]), dimensions(len(classes)))
    if should_stop and should_stop():
        raise Stopped("stopped on request")
    _stage(progress, "cross-validating the training split")
    # Reduced alone, as the label review reduces them (core.results.tasks.compute_label_issues): the same
    # probabilities, so label health counts the wrong labels Suspected label errors counts (reduced with the other
    # splits, the flowers' 1,331 suspects read 1,351 here). The joint reduction above places every split together.
    scored = out_of_sample(reduce(train.features, dimensions(len(classes))), train.labels, len(classes), reduced=True)
    probabilities = [scored.probabilities] + [softmax(p.logits, temperature) for p in parts[1:]]
    paths = [path for part in parts for path in part.paths]
    inputs = Inputs(
        classes=classes,
        features=x,
        probabilities=Stacked(probabilities, len(classes)),
        labels=np.concatenate([np.asarray(p.labels, dtype=np.int64) for p in parts]),
        paths=paths,
        splits=[name for name, part in zip(("train", "val", "test"), parts, strict=True) for _ in part.paths],
        how=f"training photos: a {FOLDS}-fold cross-validated classifier on the run's features (each photo scored by a "
        "model that never saw it); validation and test photos: the run's own calibrated predictions",
        source={"run_id": run.run_id, "dataset_path": run.dataset_path},
        random_start=run.train_config.weights == "none",
    )
    add_health(inputs, run.dataset_path, data_root, run.train_config, progress, should_stop)
    return inputs


def for_dataset(source: DatasetSource, progress: StageCallback | None = None) -> Inputs:
    """Every photo of a dataset without a run, through a backbone with `weights` (labels: the folders')."""
    found = dataset_features(source, progress)
    seed, weights, data_root = source.seed, source.weights, source.data_root
    index, config, cache, features = found.index, found.config, found.cache, found.features
    classes = list(index.classes)
    _stage(progress, "cross-validating")
    x = reduce(features, dimensions(len(classes)), seed)
    labels = np.asarray(cache.labels, dtype=np.int64)
    scored = out_of_sample(x, labels, len(classes), seed=seed, reduced=True)
    inputs = Inputs(
        classes=classes,
        features=x,
        probabilities=Stacked([scored.probabilities], len(classes)),
        labels=labels,
        paths=list(cache.paths),
        splits=["all"] * len(cache),
        how=f"a {FOLDS}-fold cross-validated classifier on {config.backbone} features "
        f"({'random' if weights == 'none' else weights} weights; each photo scored by a model that never saw it)",
        source={"dataset": index.name, "dataset_path": str(index.root)},
        random_start=weights == "none",
    )
    add_health(inputs, index.root, data_root, config, progress)
    return inputs


def add_health(
    inputs: Inputs,
    dataset_path: str | os.PathLike,
    data_root: str | os.PathLike,
    config: TrainConfig,
    progress: StageCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """The health check's per-photo look and its duplicate, leak and imbalance findings (leaks under the run's own
    split, photo by photo, for a run; under the split rule with `config`'s fractions and seed for a dataset), from
    its caches; sets `inputs.health_note` instead when the dataset cannot be read."""
    try:
        index = scan_dataset(dataset_path)
    except (DatasetError, OSError) as e:
        inputs.health_note = (
            f"the dataset's folder cannot be read now ({e}): duplicates, leaks and imbalance are left out"
        )
        return
    inputs.dataset_fingerprint, inputs.dataset_photos = index.fingerprint, len(index.entries)
    cache_root = cache_dir(data_root)
    table = image_table(index, None, cache_root)
    analysis, _ = analyse(
        index,
        (lambda s, d, t: progress("the health check: reading every photo once", d, t)) if progress else None,
        cache_root,
        None,
        should_stop,
    )
    readable = analysis.readable
    table["readable"] = readable
    paths = table["path"].tolist()
    checks = Checks(index, table, paths, config.image_size, config)
    run_id = (inputs.source or {}).get("run_id")
    if run_id:  # a run: the split it trained on, photo by photo, never one drawn again by other rules
        split_of, split_info = checks.run_split(
            {path: split for path, split in zip(inputs.paths, inputs.splits, strict=True)}, run_id
        )
    else:
        split_of, split_info = checks.split(readable)
    exact, near, combined = duplicate_groups(analysis)
    checks.duplicates(exact, near, analysis)
    checks.leakage(combined, split_of, split_info)
    checks.conflicting_labels(combined, index.labels)
    checks.classes(readable, index.labels)
    inputs.findings = {key: [f for f in checks.findings if f.kind in kinds] for key, kinds in HEALTH_KINDS.items()}
    look = look_statistics(analysis.thumbs, analysis.colour, analysis.chroma_mean, analysis.chroma_peak)
    position = {path: i for i, path in enumerate(paths)}
    rows = np.array([position.get(path, -1) for path in inputs.paths], dtype=np.int64)
    known = rows >= 0
    known[known] = readable[rows[known]]
    inputs.look = np.full((len(inputs.paths), LOOK_WIDTH), np.nan, dtype=np.float32)
    inputs.look[known] = look[rows[known]]
    if not known.all():
        inputs.health_note = (
            f"{int((~known).sum())} photo(s) are no longer in the dataset as the run saw them: their look is not "
            "compared (their features still are)"
        )
