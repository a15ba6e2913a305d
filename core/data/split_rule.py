"""The split rule every run draws with, on any list of a dataset's photos: the dataset's own split or a seeded
stratified one (core.data.datasets.split_indices), photos labelled in Flora put in training. core.runs.split draws a
run's split with it and the health check measures leaks under it, so both name the same photos."""

from __future__ import annotations

import numpy as np

from core.data.datasets import LABELLED_IN_FLORA, DatasetIndex, Split, split_indices


def split_rule(
    labels: np.ndarray,
    paths: list[str],
    index: DatasetIndex,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    given: list[str | None] | None = None,
) -> Split:
    """The split a run draws of these photos (its decoded ones, or the health check's readable ones): the dataset's
    own split where it brings one (`given`), else stratified with the seed (split_indices); photos labelled in Flora
    (listed in flora.json) join training and the others split exactly as they did before those were added (the same
    photos, order, labels and seed), so a run before and after stays comparable. core.runs.split draws every run's
    split with it and the health check measures leaks under it: one rule, so both name the same photos.

    Raises:
        DatasetError: as split_indices.
    """
    joined = set(index.meta.get(LABELLED_IN_FLORA) or []) if not index.has_split else set()
    if not joined:
        return split_indices(labels, index.classes, given, val_fraction, test_fraction, seed)
    labels = np.asarray(labels)
    added = np.array([p in joined for p in paths], dtype=bool)
    others = np.flatnonzero(~added)
    drawn = split_indices(labels[others], index.classes, None, val_fraction, test_fraction, seed)
    notes = [*drawn.notes, f"{int(added.sum())} photo(s) labelled in Flora join training; the rest split as before"]
    train = np.sort(np.concatenate([others[drawn.train], np.flatnonzero(added)])).astype(np.int64)
    return Split(train, others[drawn.val], others[drawn.test], drawn.source, notes)
