"""The 102-class confusion matrix: an order that gathers confused classes, and a picked sub-matrix."""

from __future__ import annotations

import numpy as np
import pytest

from core.results.evaluation import confusion

pytestmark = pytest.mark.backend_agnostic


def test_mutually_confused_classes_end_up_side_by_side():
    rng = np.random.default_rng(0)
    n = 30
    matrix = np.diag(rng.integers(20, 40, size=n))
    partner = rng.permutation(n).reshape(-1, 2)  # 15 pairs scattered over the alphabetical order
    for a, b in partner:
        matrix[a, b] = matrix[b, a] = 8
    matrix += (rng.uniform(size=(n, n)) < 0.02).astype(int)  # a little noise
    order = confusion.confused_together_order(matrix)
    assert sorted(order) == list(range(n))
    position = {c: i for i, c in enumerate(order)}
    adjacent = sum(abs(position[a] - position[b]) == 1 for a, b in partner)
    assert adjacent >= 14, adjacent


def test_classes_never_confused_come_last_in_their_order():
    matrix = np.diag([5, 5, 5, 5, 5])
    matrix[3, 1] = 2
    matrix[1, 4] = 1
    order = confusion.confused_together_order(matrix)
    assert order[-2:] == [0, 2] and sorted(order[:3]) == [1, 3, 4]


def test_the_sub_matrix_keeps_the_totals_in_other():
    matrix = np.arange(16).reshape(4, 4)
    sub, names = confusion.submatrix(matrix, ["a", "b", "c", "d"], ["c", "a"])
    assert names == ["c", "a", "(other)"]
    assert sub.sum() == matrix.sum()
    assert sub[0, 1] == matrix[2, 0] and sub[2, 2] == matrix[np.ix_([1, 3], [1, 3])].sum()
    full, all_names = confusion.submatrix(matrix, ["a", "b", "c", "d"], ["a", "b", "c", "d"])
    assert all_names == ["a", "b", "c", "d"] and (full == matrix).all()
