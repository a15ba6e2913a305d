"""The promise's words: an average over many photos, the held-out figure with its count and the sampling slack."""

from __future__ import annotations

from core.results.probabilities import promise


def test_the_promise_is_an_average_not_at_least():
    said = promise.promise_words(0.9)
    assert "on average over many photos like the calibration ones" in said
    assert "9 times in 10, all classes taken together (one threshold for all: marginal coverage)" in said
    assert said.endswith("not for each photo or each class") and "at least" not in said
    each = promise.promise_words(0.95, by_class=True)
    assert "19 times in 20, and so do the photos of each class" in each and each.endswith("not for each photo")


def test_classes_sharing_the_overall_threshold_are_not_promised_one_by_one():
    """Walk 42: one paragraph said the promise was marginal, the chart's caption that it was made for each class,
    and a third line that tulip had no threshold of its own: one statement now names who is covered how."""
    one = promise.promise_words(0.9, by_class=True, shared=["tulip"])
    assert "for each class with a threshold of its own the same holds among its photos" in one
    assert "but tulip has too few calibration photos for one and shares the overall threshold" in one
    assert "so for tulip the promise holds only with the other classes taken together" in one
    two = promise.promise_words(0.9, by_class=True, shared=["rose", "tulip"])
    assert "rose, tulip have too few" in two and "share the overall threshold" in two
    assert promise.promise_words(0.9, by_class=False, shared=["tulip"]) == promise.promise_words(0.9)


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
