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
    issues = [LabelIssue(f"red/{i}.png", "red", "blue", 0.1, 0.8, "train", odds=8.0 - i) for i in range(7)]
    supported, why = label_issues.bound(TRUST, images=75, listed=len(issues))
    label_issues.save(
        LabelReview(issues, 75, {"train": 75}, "test", trust=TRUST, supported=supported, supported_why=why), run_dir
    )
    return {**trained_run, "models_root": models_root}


def _run(store: dict, *argv: str) -> str:
    where = ["--models-dir", str(store["models_root"]), "--data-dir", str(store["data_root"])]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert cli(["label-issues", store["run_id"], *argv, *where]) == 0
    return out.getvalue()


def test_the_text_lists_the_supported_suspects_and_says_how_many_are_behind(bounded_run):
    text = _run(bounded_run)
    assert "supported by the self-test: the first 3 of 7" in text  # 8 of 200 self-test photos: 3 of these 75
    assert "When 10 of 200 training labels were swapped on purpose" in text
    assert "red/2.png" in text and "red/3.png" not in text
    assert "4 more suspect(s) behind these, weaker evidence: --all prints them" in text
    every = _run(bounded_run, "--all")
    assert "red/6.png" in every and "4 (behind)" in every and "more suspect(s) behind" not in every


def test_the_json_and_the_csv_carry_what_is_supported(bounded_run):
    answer = json.loads(_run(bounded_run, "--json"))
    assert answer["supported"] == 3 and answer["behind"] == 4 and answer["listed"] == 7
    assert answer["supported_why"].startswith("When 10 of 200") and answer["trust"]["depth"] == 8
    assert [row["supported"] for row in answer["issues"]] == [True] * 3 + [False] * 4
    assert len(json.loads(_run(bounded_run, "--json", "--limit", "2"))["issues"]) == 2
    rows = list(csv.DictReader(io.StringIO(_run(bounded_run, "--csv"))))
    assert [row["supported"] for row in rows] == ["yes"] * 3 + ["no"] * 4
