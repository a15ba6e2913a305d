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


def test_the_whole_list_as_csv_lowest_quality_first():
    given, probabilities, _, _ = _planted(120, 4)
    classes = ["road", "water", "cloud", "field"]
    found = multilabel_issues.find(given, probabilities, classes, [f"p{i}.jpg" for i in range(120)], ["val"] * 120)
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(found.csv())))
    assert [r["path"] for r in rows] == found.table["path"].tolist() and len(rows) == found.suspected
    first = found.table.iloc[0]
    assert rows[0]["labels"] == "|".join(first["labels"]) and rows[0]["missing"] == "|".join(first["missing"])
    assert list(rows[0]) == multilabel_issues.CSV_COLUMNS


def _summary(map_, interval, random_map, weak_labels: int, labels: int = 4) -> dict:
    """An evaluation summary (core.results.evaluation.multilabel) with `weak_labels` labels at chance."""
    per_label = {
        f"l{j}": {"ap": 0.5, "ap_interval": [0.2, 0.8] if j < weak_labels else [0.9, 1.0], "random_ap": 0.45}
        for j in range(labels)
    }
    return {"map": map_, "map_interval": list(interval), "random_map": random_map, "per_label": per_label}


def _issues(suspected: int, photos: int):
    import pandas as pd

    return multilabel_issues.LabelListIssues(photos, pd.DataFrame({"path": [f"p{i}" for i in range(suspected)]}))


@pytest.mark.parametrize(
    ("issues", "summary", "said"),
    [
        # walk 54's run A: mAP above chance overall, but 3 of 4 labels at chance; 92 of 120 flagged
        (
            (92, 120),
            (0.588, (0.46, 0.64), 0.43, 3),
            "**77% of the photos are flagged, by a weak model**: its test mAP "
            "is 0.59 (95% interval 0.46-0.64) against 0.43 for a random scorer, but 3 of its 4 labels are no better "
            "than a random scorer on their own. A list this long from a model this weak is mostly the model's own "
            "mistakes, not label errors",
        ),
        (
            (50, 100),
            (0.5, (0.38, 0.6), 0.43, 1),
            "**50% of the photos are flagged, by a weak model**: its test mAP is 0.50 (95% interval 0.38-0.60) against "
            "0.43 for a random scorer: no better than chance on these test photos.",
        ),
        ((10, 100), (0.5, (0.38, 0.6), 0.43, 4), None),  # a short list: it may well be label errors
        ((60, 100), (0.9, (0.85, 0.95), 0.43, 1), None),  # a strong model: its long list is worth the look
    ],
)
def test_a_long_list_from_a_weak_model_is_said_to_be_mostly_its_own_mistakes(issues, summary, said):
    words = multilabel_issues.weak_model_words(_issues(*issues), _summary(*summary))
    if said is None:
        assert words is None
    else:
        assert said in words


def test_without_the_runs_figures_nothing_is_said():
    assert multilabel_issues.weak_model_words(_issues(90, 100), None) is None
