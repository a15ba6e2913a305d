"""The label review's one verdict: a self-test too small to judge the list says so instead of 'guesses', and the
confident-learning figure says what the list holds."""

from __future__ import annotations

import pytest

from core.results.labels import issues as label_issues
from core.results.labels.issues import LabelIssue, LabelReview
from core.results.labels.verdict import figures, verdict

pytestmark = pytest.mark.backend_agnostic


def _review(trust: dict, listed: int = 85, flagged: int = 85, estimated: int = 108, images: int = 260) -> LabelReview:
    issues = [
        LabelIssue(f"rose/{i}.jpg", "rose", "tulip", 0.4, 0.6, "train", odds=2.0 - i / 100) for i in range(listed)
    ]
    supported, why = label_issues.bound(trust, images, listed)
    return LabelReview(
        issues,
        images,
        {"train": 180, "val": 40, "test": 40},
        "a cross-validated classifier",
        flagged=flagged,
        estimated_errors=estimated,
        trust=trust,
        supported=supported,
        supported_why=why,
    )


def test_a_self_test_too_small_to_judge_the_list_says_so_and_sends_the_person_to_the_list():
    # walk of issue 40, item 7: "Treat all 85 as guesses ... found 0 of 9, a random pick would find about 0.5"
    walk = {"planted": 9, "found": 0, "chance": 0.45, "lift": 0.0, "photos": 180, "depth": 0, "found_at_depth": 0}
    said = verdict(_review(walk), random_start=True)
    assert said.headline.startswith(
        "Look through all 85 suspect(s) by eye, most suspicious first: the self-test was too small to judge the list "
        "(9 training labels swapped on purpose among 180 photos"
    )
    assert "only 3 or more would have shown the list beats chance" in said.headline and "guesses" not in said.headline
    assert said.review_first == 85 and said.kind == "warning"
    assert not any("Treat every suspect as a guess" in f for f in said.figures)
    # a test large enough to judge, finding nothing, still calls the list no better than chance
    large = {"planted": 40, "found": 1, "chance": 2.0, "lift": 0.5, "photos": 800, "depth": 0, "found_at_depth": 0}
    assert verdict(_review(large, images=1000)).headline.startswith("Treat all 85 suspect(s) as guesses")


def test_the_confident_learning_figure_says_what_the_list_holds():
    trust = {"planted": 9, "found": 0, "chance": 0.45, "lift": 0.0, "photos": 180, "depth": 0, "found_at_depth": 0}
    [fewer] = [f for f in figures(_review(trust)) if f.startswith("Confident learning")]
    assert "estimates 108 wrong labels (42% of the photos); the list holds the 85 photos the rule flags, fewer" in fewer
    assert "cuts the list there" not in fewer
    [cut] = [f for f in figures(_review(trust, listed=108, flagged=130)) if f.startswith("Confident learning")]
    assert "the list keeps the first 108 of the 130 photos the rule flags, cut at that estimate" in cut
