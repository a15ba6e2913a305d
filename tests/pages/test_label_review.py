"""Explore's suspected label errors bounded by their self-test: the supported suspects first, the rest behind an
expander that says why, or a plain warning when the self-test supports none."""

from __future__ import annotations

import hashlib

import pytest

from core.results.labels import issues as label_issues
from core.results.labels.issues import LabelIssue, LabelReview
from core.results.labels.verdict import verdict
from core.runs.store import RunStore
from pages.ui.explore.label_review import BEHIND_WHY, NONE_SUPPORTED
from pages.ui.plain import md
from tests.conftest import copy_run
from tests.pages.conftest import texts

pytestmark = pytest.mark.backend_agnostic

TRUST = {"planted": 10, "found": 6, "chance": 0.5, "lift": 12.0, "photos": 200, "depth": 8, "found_at_depth": 5}


def _stored(workspace, tmp_path, trust, weak: bool = False):
    """A copy of the run with a stored review of 7 training suspects (real photos of its dataset); `weak`: with the
    figures of an over-confident weak model (the walk of issue 39: 100% against 0.0% from a model right on 71%)."""
    store = RunStore(tmp_path / "models")
    copy_run(workspace["store"].run_dir(workspace["run_id"]), store.run_dir(workspace["run_id"]))
    run = store.get(workspace["run_id"])
    photos = sorted(p.relative_to(workspace["dataset"]).as_posix() for p in workspace["dataset"].glob("red/*.png"))
    given, suggested = (4e-6, 0.999996) if weak else (0.1, 0.8)
    issues = [
        LabelIssue(path, "red", "blue", given, suggested, "train", odds=suggested / given - i)
        for i, path in enumerate(photos[:7])
    ]
    supported, why = label_issues.bound(trust, images=75, listed=len(issues))
    review = LabelReview(issues, 75, {"train": 75}, "test", trust=trust, supported=supported, supported_why=why)
    if weak:
        review.model_accuracy, review.chance_accuracy, review.estimated_errors = 0.71, 0.5, 20
    label_issues.save(review, run.directory)
    return store, review


def _row(issue) -> str:
    return f"explore_issue_{hashlib.sha1(issue.path.encode()).hexdigest()[:10]}_exclude"


def test_the_supported_suspects_come_first_and_the_rest_wait_behind_an_expander(app, workspace, tmp_path):
    store, review = _stored(workspace, tmp_path, TRUST)
    at = app("explore", models_dir=store.root)
    at.session_state["explore_tab"] = "Suspected label errors"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = texts(at)
    assert "**Review these first: 3 suspect(s), most suspicious first**" in shown
    [said] = [e.value for e in (*at.info, *at.warning) if "suspects first" in e.value]  # one verdict, vs random
    assert said.startswith("Review the first 3 of these 7 suspects first") and "scaled to these 75 photos" in said
    # walk 51: the caveat on the percentages was inside the collapsed figures only
    assert "they are not the chance that the label is wrong" in " ".join(c.value for c in at.caption)
    behind = next(e for e in at.expander if e.label == "4 more suspect(s), with weaker evidence")
    assert BEHIND_WHY in [c.value for c in behind.caption]
    inside = {b.key for b in behind.button}
    assert {_row(issue) for issue in review.behind} <= inside  # the weaker suspects are inside, still reviewable
    assert not {_row(issue) for issue in review.first} & inside  # the supported ones are not
    assert all(at.button(key=_row(issue)) for issue in review.first)


def test_a_self_test_that_supports_nothing_says_so_and_keeps_the_list_behind(app, workspace, tmp_path):
    store, review = _stored(workspace, tmp_path, {**TRUST, "depth": 0, "found_at_depth": 0})
    at = app("explore", models_dir=store.root)
    at.session_state["explore_tab"] = "Suspected label errors"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert review.supported == 0
    [said] = [w.value for w in at.warning if "as guesses" in w.value]
    assert said.startswith("Treat all 7 suspect(s) as guesses") and "a random pick would find about 0.5" in said
    behind = next(e for e in at.expander if e.label == "All 7 suspect(s), none supported by the self-test")
    assert NONE_SUPPORTED in [c.value for c in behind.caption]
    assert "What the evidence supports" not in texts(at)


def test_a_weak_models_list_gets_one_verdict_and_honest_figures(app, workspace, tmp_path):
    # the walk of issue 39: "looks like dandelion (100%, 219,735x its label's 0.0%)" from a model right on 71%, and
    # three verdicts in five numbers ("47 suspects", "supports the first 51", "estimates 63 wrong labels (26%)")
    weak = {**TRUST, "found": 2, "chance": 1.4, "lift": 1.4, "found_at_depth": 4}
    store, review = _stored(workspace, tmp_path, {**weak, "depth": 8}, weak=True)
    at = app("explore", models_dir=store.root)
    at.session_state["explore_tab"] = "Suspected label errors"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    verdicts = [w.value for w in (*at.warning, *at.info, *at.success) if "suspect" in w.value]
    assert len(verdicts) == 1, verdicts
    assert verdicts[0].startswith(f"Review the first {review.supported} of these 7 suspects first")
    assert "where 8 photos picked at random would hold about 0.4" in verdicts[0]
    assert "71% of the training labels right out of sample" in verdicts[0]
    assert "Confident learning" not in verdicts[0] and "close to chance" not in verdicts[0]
    figures = next(e for e in at.expander if e.label == "The figures behind this")
    inside = " ".join(m.value for m in figures.markdown)
    assert "Confident learning estimates 20 wrong labels" in inside and "of 10 labels swapped on purpose" in inside
    shown = texts(at)
    assert md("looks like blue to the scoring model (blue over 99%, red under 1%)") in shown
    rows = [line for line in shown.splitlines() if "looks like" in line]
    assert len(rows) == 7 and not [r for r in rows if "100%" in r or "0.0%" in r or "×" in r or "its label's" in r]


def test_the_verdict_fits_each_kind_of_self_test():
    nothing = LabelReview([], 75, {"train": 75}, "test", trust={**TRUST, "depth": 0}, supported=0)
    assert verdict(nothing).headline.startswith("No suspected label errors")
    issue = LabelIssue("a.png", "red", "blue", 0.3, 0.7, "train")
    untested = LabelReview([issue], 10, {"train": 10}, "test", supported=None)
    assert "too few photos to test" in verdict(untested).headline
    large = {**TRUST, "planted": 40, "photos": 800, "found": 1, "chance": 2.0}  # large enough to judge the list
    lucky = LabelReview([issue], 75, {"train": 75}, "test", trust=large, supported=0)
    said = verdict(lucky, random_start=True)
    assert (
        said.kind == "warning"
        and "found 1 of them among its first 40, where a random pick would find about 2.0" in (said.headline)
    )
    small = LabelReview([issue], 75, {"train": 75}, "test", trust={**TRUST, "found": 1, "chance": 0.5}, supported=0)
    assert "the self-test was too small to judge the list (10 training labels" in verdict(small).headline


def test_a_self_test_too_small_to_judge_shows_the_list_to_look_through(app, workspace, tmp_path):
    # walk of issue 40, item 7: 9 flips among 180 photos, 0 found: "Treat all 85 as guesses" judged on nothing
    small = {"planted": 9, "found": 0, "chance": 0.45, "lift": 0.0, "photos": 180, "depth": 0, "found_at_depth": 0}
    store, review = _stored(workspace, tmp_path, small)
    at = app("explore", models_dir=store.root)
    at.session_state["explore_tab"] = "Suspected label errors"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    [said] = [e.value for e in (*at.info, *at.warning) if "by eye" in e.value]
    assert said.startswith("Look through all 7 suspect(s) by eye, most suspicious first: the self-test was too small")
    assert "as guesses" not in texts(at) and not [e for e in at.expander if "none supported" in e.label]
    assert all(at.button(key=_row(issue)) for issue in review.issues), "every suspect shown, most suspicious first"


def test_a_list_shorter_than_the_depth_that_held_up_is_reviewed_whole(workspace, tmp_path):
    """Walk 51: 'Review the first 82 of these 82' beside the depths 85 and 121 read as three answers."""
    deep = {**TRUST, "depth": 40, "found_at_depth": 8}  # 20% of 200 photos: 15 of these 75, more than the 7 listed
    _, review = _stored(workspace, tmp_path, deep)
    said = verdict(review, random_start=True).headline
    assert said.startswith("Review all 7 suspects, most suspicious first: the list ends before the depth it held")
    assert "(scaled to these 75 photos, that depth is the first 15)" in said and "first 7 of" not in said
    assert "that depth is the first 15 suspects, deeper than the 7 listed: review them all." in review.supported_why
