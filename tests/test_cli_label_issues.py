"""`core label-issues RUN`: the suspects the self-test supports first, how many more are behind them and why, in
the text, the JSON object and the CSV."""

from __future__ import annotations

import contextlib
import csv
import io
import json

import pytest

from core.cli import main as cli
from core.results.labels import issues as label_issues
from core.results.labels.issues import LabelIssue, LabelReview
from tests.conftest import copy_run

pytestmark = pytest.mark.backend_agnostic

TRUST = {"planted": 10, "found": 6, "chance": 0.5, "lift": 12.0, "photos": 200, "depth": 8, "found_at_depth": 5}


@pytest.fixture(scope="module")
def bounded_run(trained_run, tmp_path_factory):
    """The shared run in a store of its own with a stored review of 7 suspects, the self-test supporting 3."""
    models_root = tmp_path_factory.mktemp("bounded") / "models"
    run_dir = copy_run(trained_run["models_root"] / trained_run["run_id"], models_root / trained_run["run_id"])
    # a weak model's figures (the walk of issue 39: "100%, 219,735x its label's 0.0%" from a model right on 71%)
    issues = [LabelIssue(f"red/{i}.png", "red", "blue", 4e-6, 0.999996, "train", odds=219_735.0 - i) for i in range(7)]
    supported, why = label_issues.bound(TRUST, images=75, listed=len(issues))
    review = LabelReview(issues, 75, {"train": 75}, "test", trust=TRUST, supported=supported, supported_why=why)
    review.model_accuracy, review.chance_accuracy, review.estimated_errors = 0.71, 0.5, 20
    label_issues.save(review, run_dir)
    return {**trained_run, "models_root": models_root}


def _run(store: dict, *argv: str) -> str:
    where = ["--models-dir", str(store["models_root"]), "--data-dir", str(store["data_root"])]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert cli(["label-issues", store["run_id"], *argv, *where]) == 0
    return out.getvalue()


def test_the_text_lists_the_supported_suspects_and_says_how_many_are_behind(bounded_run):
    text = _run(bounded_run)
    headline = text.splitlines()[0]  # one verdict first: how many to review and why, against a random pick
    assert headline.startswith("Review the first 3 of these 7 suspects first")  # 8 of 200 self-test photos: 3 of 75
    assert "the first 8 suspects held 5 of the swapped ones, where 8 photos picked at random would hold about 0.4" in (
        headline
    )
    assert "gets 71% of the training labels right out of sample, so some suspects are its own mistakes" in headline
    assert "When 10 of 200 training labels were swapped on purpose" in text  # the figures behind it follow
    assert "Confident learning estimates 20 wrong labels (27% of the photos)" in text
    assert "scoring model is weak rather than that so many labels are wrong" in text
    assert "over 99%" in text and "under 1%" in text  # never "100%" and "0.0%" from a model right on 71%
    assert "100%" not in text and "0.0%" not in text and "219" not in text
    assert "red/2.png" in text and "red/3.png" not in text
    assert "4 more suspect(s) behind these, weaker evidence: --all prints them" in text
    every = _run(bounded_run, "--all")
    assert "red/6.png" in every and "4 (behind)" in every and "more suspect(s) behind" not in every


def test_the_json_and_the_csv_carry_what_is_supported(bounded_run):
    answer = json.loads(_run(bounded_run, "--json"))
    assert answer["supported"] == 3 and answer["behind"] == 4 and answer["listed"] == 7
    assert answer["supported_why"].startswith("When 10 of 200") and answer["trust"]["depth"] == 8
    assert answer["verdict"].startswith("Review the first 3 of these 7 suspects first")
    assert [row["supported"] for row in answer["issues"]] == [True] * 3 + [False] * 4
    assert len(json.loads(_run(bounded_run, "--json", "--limit", "2"))["issues"]) == 2
    rows = list(csv.DictReader(io.StringIO(_run(bounded_run, "--csv"))))
    assert [row["supported"] for row in rows] == ["yes"] * 3 + ["no"] * 4
