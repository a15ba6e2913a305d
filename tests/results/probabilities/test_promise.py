"""The promise's words: an average over many photos, the held-out figure with its count and the sampling slack."""

from __future__ import annotations

from core.results.probabilities import promise


def test_the_promise_is_an_average_not_at_least():
    said = promise.promise_words(0.9)
    assert "on average over many photos like the calibration ones" in said
    assert "9 times in 10; not for each photo or each class" in said and "at least" not in said
    assert promise.promise_words(0.95, by_class=True).endswith("19 times in 20; not for each photo")


def test_a_shortfall_is_judged_against_the_sampling_slack():
    low, high = promise.sampling_range(18, 0.9)
    assert low < 16 <= high == 18  # 16 of 18 is what a true 90% often gives on 18 photos
    within = promise.held_words(16, 18, 0.9)
    assert within.startswith("16 of 18 (89%): below 90%, but within the sampling slack")
    assert f"on 18 photos a true 90% gives {low} to 18 right in 95% of draws" in within
    far = promise.held_words(120, 150, 0.9)
    assert "below 90% by more than chance explains" in far and "did not hold" in far
    assert promise.held_words(19, 20, 0.9) == "19 of 20 (95%), at or above 90%"


def test_sets_of_every_class_are_said_plainly():
    assert (
        promise.full_words(0.61, 2)
        == "on 61% of photos the set holds both classes: the model cannot tell them apart there"
    )
    assert "all 5 classes" in promise.full_words(0.2, 5)
    assert promise.full_words(0.0, 2) is None
    assert promise.by_size_record({"1": [7, 11], "2": [9, 9]}, 2) == (16, 20, 9)
