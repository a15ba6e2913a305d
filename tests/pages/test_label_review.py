"""Explore's suspected label errors bounded by their self-test: the supported suspects first, the rest behind an
expander that says why, or a plain warning when the self-test supports none."""

from __future__ import annotations

import hashlib

import pytest

from core.results.labels import issues as label_issues
from core.results.labels.issues import LabelIssue, LabelReview
from core.runs.store import RunStore
from pages.ui.explore.label_review import BEHIND_WHY, NONE_SUPPORTED, trust_words
from tests.conftest import copy_run
from tests.pages.conftest import texts

pytestmark = pytest.mark.backend_agnostic

TRUST = {"planted": 10, "found": 6, "chance": 0.5, "lift": 12.0, "photos": 200, "depth": 8, "found_at_depth": 5}


def _stored(workspace, tmp_path, trust):
    """A copy of the run with a stored review of 7 training suspects (real photos of its dataset)."""
    store = RunStore(tmp_path / "models")
    copy_run(workspace["store"].run_dir(workspace["run_id"]), store.run_dir(workspace["run_id"]))
    run = store.get(workspace["run_id"])
    photos = sorted(p.relative_to(workspace["dataset"]).as_posix() for p in workspace["dataset"].glob("red/*.png"))
    issues = [LabelIssue(path, "red", "blue", 0.1, 0.8, "train", odds=9.0 - i) for i, path in enumerate(photos[:7])]
    supported, why = label_issues.bound(trust, images=75, listed=len(issues))
    review = LabelReview(issues, 75, {"train": 75}, "test", trust=trust, supported=supported, supported_why=why)
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
    assert "**What the evidence supports: 3 suspect(s), most suspicious first**" in shown
    assert review.supported_why in shown and "Scaled to these 75 photos, that is the first 3 suspects" in shown
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
    assert any(w.value == review.supported_why for w in at.warning)
    behind = next(e for e in at.expander if e.label == "All 7 suspect(s), none supported by the self-test")
    assert NONE_SUPPORTED in [c.value for c in behind.caption]
    assert "What the evidence supports" not in texts(at)


def test_a_list_close_to_chance_whose_top_beats_it_gets_one_verdict(app, workspace, tmp_path):
    # the walk: close to chance over the first 10 suspects (lift 1.4) while the first 8 held 2.6x as many as random
    weak = {**TRUST, "found": 2, "chance": 1.4, "lift": 1.4, "found_at_depth": 1}
    store, review = _stored(workspace, tmp_path, {**weak, "depth": 2, "found_at_depth": 1})
    assert review.close_to_chance and review.supported
    at = app("explore", models_dir=store.root)
    at.session_state["explore_tab"] = "Suspected label errors"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    [warning] = [w.value for w in at.warning if "How far to trust this list" in w.value]
    assert f"Only the first {review.supported} suspect(s) beat chance" in warning
    assert "past them the ranking is close to chance" in warning and "The ranking is close to chance" not in warning
    assert "times as many" in review.supported_why and review.supported_why in texts(at)
    nothing = LabelReview([], 75, {"train": 75}, "test", trust={**weak, "depth": 0}, supported=0)
    assert "The ranking is close to chance: review by eye" in trust_words(nothing, random_start=False)[1]
    # walk of issue 38, item 16: "(a random order would put about 0 there)" beside "1 of the flips came among..."
    lucky = LabelReview([], 75, {"train": 75}, "test", trust={**weak, "found": 1, "chance": 0.3}, supported=0)
    assert "(a random order would put about 0.3 there)" in trust_words(lucky, random_start=False)[1]
