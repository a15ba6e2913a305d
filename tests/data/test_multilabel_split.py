"""The split of a multi-label dataset: iterative stratification, seeded, each label in every split or named."""

from __future__ import annotations

import numpy as np
import pytest
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

from core.data.datasets import DatasetError, scan_dataset
from core.data.multilabel import LabelSets
from core.data.multilabel_split import counts_by_label, iterative_stratification, split_multilabel
from core.data.split_rule import split_rule
from tests.data.test_multilabel import make_multilabel


def _skewed(n=2000, labels=20, seed=0) -> np.ndarray:
    """0/1 rows with label frequencies from 40% down to 0.4%, and one label that follows another."""
    rng = np.random.default_rng(seed)
    matrix = (rng.random((n, labels)) < np.geomspace(0.4, 0.004, labels)).astype(np.uint8)
    matrix[:, labels // 4] |= matrix[:, 0] & (rng.random(n) < 0.5)
    return matrix


def _deviation(matrix: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Per label: how far the share of its photos in `chosen` is from the share of all photos there."""
    return np.abs(matrix[chosen].sum(0) / matrix.sum(0) - chosen.mean())


def test_iterative_stratification_spreads_each_label_as_an_independent_implementation_does():
    """Against the `iterative-stratification` package (Sechidis et al.'s algorithm too): per-label proportions in the
    test split as close to 15% as its, and far closer than a random split's."""
    matrix = _skewed()
    fold = iterative_stratification(LabelSets.from_dense(matrix), (0.7, 0.15, 0.15), seed=3)
    assert np.bincount(fold).tolist() == [1400, 300, 300]
    ours = _deviation(matrix, fold == 2)
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=0.15, random_state=3)
    _, test = next(splitter.split(np.zeros(len(matrix)), matrix))
    theirs = _deviation(matrix, np.isin(np.arange(len(matrix)), test))
    random_test = np.isin(np.arange(len(matrix)), np.random.default_rng(3).permutation(len(matrix))[:300])
    drawn = _deviation(matrix, random_test)
    assert ours.mean() <= theirs.mean() + 0.005, (ours.mean(), theirs.mean())
    assert ours.max() <= theirs.max() + 0.02, (ours.max(), theirs.max())
    assert ours.mean() < drawn.mean() / 4, (ours.mean(), drawn.mean())
    for k in range(3):  # every label (the rarest has 9 photos) in every fold
        assert (matrix[fold == k].sum(0) > 0).all()


def test_the_split_is_seeded():
    sets = LabelSets.from_dense(_skewed(400, 8))
    first = iterative_stratification(sets, (0.7, 0.15, 0.15), seed=1)
    assert np.array_equal(first, iterative_stratification(sets, (0.7, 0.15, 0.15), seed=1))
    assert not np.array_equal(first, iterative_stratification(sets, (0.7, 0.15, 0.15), seed=2))


@pytest.mark.parametrize("photos", [3, 4, 5, 8])
def test_a_label_with_as_many_photos_as_splits_is_in_each(photos):
    lists = [[0]] * photos + [[1]] * 100 + [[]] * 20
    for seed in range(5):
        fold = iterative_stratification(LabelSets.from_lists(lists, 2), (0.7, 0.15, 0.15), seed)
        assert sorted(set(fold[:photos].tolist())) == [0, 1, 2], (seed, fold[:photos])


def test_a_label_too_rare_for_every_split_is_named_and_photos_with_none_are_split_too():
    lists = [[0]] * 2 + [[1], [1, 2]] * 30 + [[2]] * 20 + [[]] * 30
    split = split_multilabel(LabelSets.from_lists(lists, 4), ["rare", "common", "other", "unused"], seed=0)
    assert sorted(np.concatenate([split.train, split.val, split.test]).tolist()) == list(range(len(lists)))
    notes = " ".join(split.notes)
    assert "too rare to be in every split" in notes and "rare (2)" in notes
    assert "1 label(s) that no photo has: unused" in notes
    assert "Small test split" in notes
    none = set(range(len(lists) - 30, len(lists)))
    assert all(none & set(getattr(split, s).tolist()) for s in ("train", "val", "test"))  # no-label photos spread
    table = counts_by_label(LabelSets.from_lists(lists, 4), ["rare", "common", "other", "unused"], split)
    assert all(n > 0 for n in table["common"].values()) and sum(table["rare"].values()) == 2


def test_too_few_photos_is_an_error_that_says_so():
    with pytest.raises(DatasetError, match="at least 3 photos"):
        split_multilabel(LabelSets.from_lists([[0], [1]], 2), ["a", "b"])


def test_a_dataset_split_is_kept_and_a_missing_test_split_carved_from_train():
    sets = LabelSets.from_dense(_skewed(300, 5, seed=4))
    given = ["val" if i % 10 == 0 else "train" for i in range(300)]
    split = split_multilabel(sets, list("abcde"), given, test_fraction=0.2, seed=0)
    assert split.source == "dataset" and split.val.tolist() == list(range(0, 300, 10))
    assert not set(split.test.tolist()) & set(split.val.tolist()) and 50 <= len(split.test) <= 60
    assert any("no test split: carved from its train photos" in n for n in split.notes)


def test_split_rule_draws_a_multilabel_dataset_by_its_lists_on_the_photos_given(tmp_path):
    lists = [["cat"], ["dog"], ["cat", "dog"], []] * 10
    index = scan_dataset(make_multilabel(tmp_path / "d", lists=lists, names=["cat", "dog"]))
    paths = [e.path for e in index.entries][5:]  # the readable ones, say
    split = split_rule(np.zeros(len(paths)), paths, index, 0.15, 0.15, 42)
    expected = split_multilabel(index.targets.take(np.arange(5, 40)), index.classes, None, 0.15, 0.15, 42)
    assert [s.tolist() for s in (split.train, split.val, split.test)] == [
        s.tolist() for s in (expected.train, expected.val, expected.test)
    ]
    with pytest.raises(DatasetError, match="is not a photo of the multi-label dataset"):
        split_rule(np.zeros(1), ["images/nope.png"], index, 0.15, 0.15, 42)
