"""Whether an accuracy is better than chance: Wilson's interval against scipy's, and the chance level per classes."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from core.results.evaluation import chance


@pytest.mark.parametrize(("right", "photos"), [(20, 40), (0, 10), (10, 10), (31, 40), (170, 200), (1, 3)])
def test_wilson_matches_scipy(right, photos):
    low, high = binomtest(right, photos).proportion_ci(0.95, method="wilson")
    assert chance.wilson(right, photos) == pytest.approx((low, high), abs=1e-9)


@pytest.mark.parametrize(
    ("accuracy", "photos", "classes", "near"),
    [(0.5, 40, 2, True), (0.65, 40, 2, True), (0.75, 40, 2, False), (0.3, 40, 5, True), (0.45, 40, 5, False)],
)
def test_no_better_than_chance_when_the_interval_reaches_one_over_k(accuracy, photos, classes, near):
    assert chance.no_better_than_chance(accuracy, photos, classes) is near
