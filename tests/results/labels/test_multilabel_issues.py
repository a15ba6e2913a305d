"""Suspected label errors in label lists: the same pairs, photos and ranking as cleanlab's multilabel_classification
on the same probabilities, and planted errors found."""

from __future__ import annotations

import numpy as np
import pytest
from cleanlab.multilabel_classification import filter as cl_filter
from cleanlab.multilabel_classification import rank as cl_rank

from core.results.labels import multilabel_issues

pytestmark = pytest.mark.backend_agnostic


def _lists(targets: np.ndarray) -> list[list[int]]:
    return [list(np.flatnonzero(row)) for row in targets]


def _planted(n: int, seed: int):
    rng = np.random.default_rng(seed)
    truth = (rng.random((n, 4)) < [0.5, 0.3, 0.2, 0.4]).astype(np.uint8)
    probabilities = np.clip(0.75 * truth + 0.25 * rng.random((n, 4)) + rng.normal(0, 0.08, (n, 4)), 0.001, 0.999)
    given = truth.copy()
    flipped = rng.choice(n, size=n // 10, replace=False)
    columns = rng.integers(0, 4, size=len(flipped))
    given[flipped, columns] ^= 1  # a label dropped or added
    return given, probabilities, flipped, columns


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_pairs_photos_and_ranking_are_cleanlabs(seed):
    given, probabilities, _, _ = _planted(150, seed)
    lists = _lists(given)
    pairs = multilabel_issues.suspected_pairs(given, probabilities)
    theirs = cl_filter.find_multilabel_issues_per_class(lists, probabilities, filter_by="confident_learning")
    np.testing.assert_array_equal(pairs, theirs)
    photos = cl_filter.find_label_issues(lists, probabilities, filter_by="confident_learning")
    np.testing.assert_array_equal(pairs.any(axis=1), photos)
    scores = cl_rank.get_label_quality_scores(lists, probabilities)
    np.testing.assert_allclose(multilabel_issues.quality_scores(given, probabilities), scores, atol=1e-12)


def test_planted_errors_are_found_as_missing_or_wrong_labels_lowest_quality_first():
    given, probabilities, flipped, columns = _planted(200, 3)
    classes = ["road", "water", "cloud", "field"]
    found = multilabel_issues.find(given, probabilities, classes, [f"p{i}" for i in range(200)], ["test"] * 200)
    assert found.photos == 200 and found.table["quality"].is_monotonic_increasing
    caught = 0
    rows = found.table.set_index("path")
    for i, j in zip(flipped, columns, strict=True):
        if f"p{i}" in rows.index:
            row = rows.loc[f"p{i}"]
            kind = "missing" if given[i, j] == 0 else "wrong"
            caught += classes[j] in row[kind]
    assert caught >= 0.6 * len(flipped)  # planted with a clear signal: most are found, under the right kind
    assert found.suspected <= 2 * len(flipped)
