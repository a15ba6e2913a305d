"""A run's data, drawn one way for everyone: its images, its train/val/test split and its labels.

A run's split is not stored photo by photo; it is drawn again from its rule: the dataset's own split
where it brings one, else a stratified split with the run's fractions and split seed (`split_seed`, else its seed);
then the label corrections the run recorded (core.data.corrections) are applied, relabelled photos taking their
new label and excluded ones leaving their split. Training, the analysis tasks, the out-of-distribution reference
and retraining with feedback all get a run's data from `run_split`, which first checks that the
dataset is still the one the run was trained on (its fingerprint, once the photos labelled in Flora after the run
was made are left out): a folder changed otherwise would silently give other photos. A sweep, which is not a run,
draws with `draw_split` (the same rule).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.corrections import apply
from core.data.datasets import DatasetError, DatasetIndex, Split, scan_dataset
from core.data.ingest import ImageCache, ingest
from core.data.split_rule import next_split, split_rule
from core.data.unlabelled import before_labelling
from core.progress import CountCallback
from core.runs.record import Run
from core.settings.config import TrainConfig


class DatasetChanged(DatasetError):
    """The run's dataset is gone or no longer the photos it was trained on; the message says which."""


@dataclass
class RunData:
    """A run's images and split as it trained on them.

    `cache.labels` are the corrected labels (this process's copy); `drawn` is the split before the
    corrections (excluded photos still in it), for laying the dataset out again.
    """

    index: DatasetIndex
    cache: ImageCache
    split: Split
    drawn: Split
    corrections: dict | None

    @property
    def classes(self) -> list[str]:
        return self.index.classes

    @property
    def labels(self) -> np.ndarray:
        return self.cache.labels

    def paths(self, positions: np.ndarray) -> list[str]:
        return [self.cache.paths[int(i)] for i in positions]


def draw_split(cache: ImageCache, index: DatasetIndex, config: TrainConfig, corrections: dict | None) -> Split:
    """The split rule: the dataset's own split or a seeded stratified one, then `corrections` applied.

    Relabelled photos take their new label in `cache.labels` (this process's copy).
    """
    given = cache.splits if index.has_split else None
    seed = config.split_draw_seed
    cache.labels, split = next_split(
        cache.labels, cache.paths, index, config.val_fraction, config.test_fraction, seed, given, corrections
    )
    return split


def _drawn(cache: ImageCache, index: DatasetIndex, config: TrainConfig) -> Split:
    given = cache.splits if index.has_split else None
    return split_rule(
        cache.labels, cache.paths, index, config.val_fraction, config.test_fraction, config.split_draw_seed, given
    )  # fmt: skip


def _corrected(cache: ImageCache, index: DatasetIndex, split: Split, corrections: dict | None) -> Split:
    if not corrections:
        return split

    cache.labels, split, _ = apply(corrections, cache.paths, cache.labels, index.classes, split)
    return split


def check_dataset(run: Run, index: DatasetIndex | None = None) -> DatasetIndex:
    """The run's dataset scanned (or `index`), when it is still the one the run trained on: its very photos, or those
    once the photos labelled in Flora after the run was made are left out (core.data.unlabelled.before_labelling;
    the index returned is then without them, so the run's split, cache and analysis find exactly its photos).

    Raises:
        DatasetChanged: the folder is gone, or its photos or classes differ from the run's.
    """
    if index is None:
        try:
            index = scan_dataset(run.dataset_path)
        except DatasetError as e:
            raise DatasetChanged(f"the dataset of run {run.run_id} cannot be read at {run.dataset_path}: {e}") from e
    if index.fingerprint != run.dataset_fingerprint:  # photos labelled in Flora since the run are not its photos
        earlier = before_labelling(index, run.created)
        if earlier is not None and earlier.fingerprint == run.dataset_fingerprint:
            index = earlier
    if index.fingerprint != run.dataset_fingerprint:
        raise DatasetChanged(
            f"the dataset at {run.dataset_path} changed since run {run.run_id} was trained (photos added, removed "
            "or edited): its training, validation and test photos cannot be found again"
        )
    if run.classes and index.classes != run.classes:
        raise DatasetChanged(f"the dataset at {run.dataset_path} no longer has the classes of run {run.run_id}")
    return index


def run_split(
    run: Run,
    cache_root: str | os.PathLike,
    index: DatasetIndex | None = None,
    progress: CountCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    workers: int | None = None,
) -> RunData:
    """Run `run`'s images (decoded once into the cache under `cache_root`) and its split, corrections applied.

    Args:
        index: the dataset already scanned (it is still checked against the run's fingerprint).
        progress, should_stop, workers: passed to the decoding (core.data.ingest).

    Raises:
        DatasetChanged: the dataset is not the run's any more.
        IngestCancelled: `should_stop` said so while decoding.
    """
    index = check_dataset(run, index)
    config = run.train_config
    cache = ingest(
        index, config.cache_size, Path(cache_root), progress=progress, workers=workers, should_stop=should_stop
    )
    drawn = _drawn(cache, index, config)
    corrections = run.corrections
    split = _corrected(cache, index, drawn, corrections)
    return RunData(index, cache, split, drawn, corrections)
