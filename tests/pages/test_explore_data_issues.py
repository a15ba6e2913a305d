"""Explore's "Data issues" tab: offered as a background task, then every issue type listed with what it means, its
score and its photos; the shared run's "red" and "crimson" (one colour) are suggested for merging."""

from __future__ import annotations

import pytest

from core.results import data_issues
from core.runs.store import RunStore
from pages.ui.plain import md
from tests.conftest import copy_run
from tests.pages.conftest import texts


@pytest.fixture
def own_run(workspace, tmp_path):
    """A copy of the prepared run in a store of its own (the result is written into the run folder)."""
    store = RunStore(tmp_path / "models")
    copy_run(workspace["store"].run_dir(workspace["run_id"]), store.run_dir(workspace["run_id"]))
    return store, store.get(workspace["run_id"])


def test_the_tab_offers_the_search_then_lists_every_issue_with_its_photos(app, own_run, workspace):
    store, run = own_run
    at = app("explore", models_dir=store.root)
    at.session_state["explore_tab"] = "Data issues"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.button(key="explore_data_issues_start").label == "Look for data issues"
    assert "a screenshot among flowers" in texts(at)

    result = data_issues.for_run_saved(run, workspace["data"])  # what the background task does
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = texts(at)
    for title in ("Label health", "Outliers", "Overlapping classes", "Groups the model does worse on", "Duplicates"):
        assert f"**{title}** · score " in shown
    assert "Consider merging **crimson** and **red**, or write a clearer rule for telling them apart." in shown
    assert f"{result.photos} photos (" in shown and "1.00 means nothing of that kind was found" in shown
    assert "started from random weights" in shown  # the shared run's backbone is a random start
    captions = [caption for image in at.get("image") for caption in image.captions]
    examples = result.overlapping_classes[0]["examples"]
    name = md(examples[0]["path"].split("/")[-1])  # captions are Markdown
    assert any(caption.endswith(name) for caption in captions)  # the pair's photos are drawn
    assert at.button(key="explore_data_issues_again").label == "Look again"
