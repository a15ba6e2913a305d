"""Explore's "Data issues" tab: offered as a background task, then every issue type listed with what it means, its
score and its photos; the shared run's "red" and "crimson" (one colour) are suggested for merging."""

from __future__ import annotations

import pytest

from core.data.corrections import Corrections, forget_dataset
from core.results import tasks as run_tasks
from core.results.data_issues import report as data_issues
from core.runs.store import RunStore
from pages.ui.explore.data_issues import mark_words
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
    assert "a screenshot among blue and crimson" in texts(at)  # the dataset's own classes, not flowers

    result = data_issues.for_run_saved(run, workspace["data"])  # what the background task does
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = texts(at)
    for title in ("Label health", "Outliers", "Overlapping classes", "Groups the model does worse on", "Duplicates"):
        assert f"**{title}** · health " in shown
    assert "(1 = nothing of this kind found)" in shown and "the share of photos that are not outliers" in shown
    assert "Consider merging **crimson** and **red**, or write a clearer rule for telling them apart." in shown
    assert f"{result.photos} photos (" in shown and "1 means nothing of that kind was found" in shown
    pair = result.overlapping_classes[0]
    assert f"About {pair['photos']} photos look more like the other class" in shown
    assert "Shown one crimson photo and one red photo, the model says which is which" in shown
    assert "have not been reviewed photo by photo yet" in shown
    assert "started from random weights" in shown  # the shared run's backbone is a random start
    captions = [caption for image in at.get("image") for caption in image.captions]
    examples = result.overlapping_classes[0]["examples"]
    name = md(examples[0]["path"].split("/")[-1])  # captions are Markdown
    assert any(caption.endswith(name) for caption in captions)  # the pair's photos are drawn
    assert at.button(key="explore_data_issues_again").label == "Look again"


def test_label_health_gives_the_label_reviews_figures_links_there_and_marked_photos_say_so(app, own_run, workspace):
    """The same run's Suspected label errors and Data issues count the same wrong labels (the tabs said 1331 and
    1351 on the flowers); the words lead to that tab; a photo the person marked says so under its thumbnail."""
    store, run = own_run
    review = run_tasks.compute_label_issues(run, workspace["data"])
    result = data_issues.for_run_saved(run, workspace["data"])
    pair = result.overlapping_classes[0]
    marks = Corrections.load(workspace["data"], run.dataset_path)
    marks.mark(pair["examples"][0]["path"], "fine")
    if result.outliers:
        marks.mark(result.outliers[0]["path"], "exclude")
    marks.save()
    try:
        at = app("explore", models_dir=store.root)
        at.session_state["explore_tab"] = "Data issues"
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        shown = texts(at)
        health = data_issues.score_text(1 - len(review.issues) / review.images)
        assert f"**Label health** · health {health} of 1 · {len(review.issues)} suspected label errors" in shown
        assert "see Suspected label errors" in shown
        assert "wrong labels in all" not in shown  # one verdict: the review's figures stay in its own tab
        assert f"they add up to {review.estimated_errors}" in shown  # per class, the same estimate
        captions = [caption for image in at.get("image") for caption in image.captions]
        assert any(md("you marked: fine") in caption for caption in captions)  # captions are Markdown
        if result.outliers:
            assert any(md("you marked: exclude") in caption for caption in captions)
        assert "You have already marked" in shown or not result.outliers
        at.button(key="explore_data_to_review").click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.session_state["explore_tab"] == "Suspected label errors"
        assert "What would fixing these be worth?" in [e.label for e in at.expander]  # the review tab is drawn
    finally:
        forget_dataset(workspace["data"], run.dataset_path)


def test_mark_words_say_each_kind_of_mark():
    marks = {"a.png": {"action": "relabel", "to": "red"}, "b.png": {"action": "exclude"}, "c.png": {"action": "fine"}}
    assert [mark_words(marks, p) for p in ("a.png", "b.png", "c.png", "d.png")] == [
        " · you marked: relabel to red",
        " · you marked: exclude",
        " · you marked: fine",
        "",
    ]


def test_outliers_can_be_left_out_of_the_next_run_from_the_tab(app, own_run, workspace):
    store, run = own_run
    import dataclasses

    found = data_issues.for_run_saved(run, workspace["data"])
    photo = found.overlapping_classes[0]["examples"][0]["path"]  # one of the run's photos, taken for an outlier
    result = dataclasses.replace(
        found, outliers=[{"path": photo, "score": 3.0, "class": photo.split("/")[0]}], outliers_flagged=1
    )
    data_issues.save(result, run.directory)
    at = app("explore", models_dir=store.root)
    at.session_state["explore_tab"] = "Data issues"
    at.run()
    first = result.outliers[0]["path"]
    try:
        at.multiselect(key="explore_data_exclude_outliers").set_value([first]).run()
        at.button(key="explore_data_exclude_outliers_go").click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert Corrections.load(workspace["data"], run.dataset_path).action(first) == "exclude"
        assert md("you marked: exclude") in " ".join(c for image in at.get("image") for c in image.captions)
    finally:
        forget_dataset(workspace["data"], run.dataset_path)


def test_counts_of_an_earlier_dataset_say_so_until_looked_at_again(app, trained_run, tmp_path, monkeypatch):
    """Walk 41: after photos were labelled, the tab showed the counts of the dataset before, as today's. It says when
    they were made, that the dataset changed since and by how many photos, and offers to look again."""
    import shutil

    from core.data.unlabelled import Unlabelled
    from tests.conftest import copy_run_and_dataset

    own = copy_run_and_dataset(trained_run, tmp_path)
    run = RunStore(own["models_root"]).get(own["run_id"])
    data_issues.for_run_saved(run, own["data_root"])
    classes = sorted(p.name for p in own["dataset"].iterdir() if p.is_dir())
    (own["dataset"] / "unlabelled").mkdir()
    for i, source in enumerate(sorted((own["dataset"] / classes[0]).iterdir())[:2]):
        shutil.copy(source, own["dataset"] / "unlabelled" / f"new{i}.png")
        Unlabelled.load(own["data_root"], own["dataset"]).label(f"unlabelled/new{i}.png", classes[0], classes)
    monkeypatch.setenv("FLORA_DATA_DIR", str(own["data_root"]))
    at = app("explore", models_dir=own["models_root"])
    at.session_state["explore_tab"] = "Data issues"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    [warning] = [w.value for w in at.warning if "The dataset changed since" in w.value]
    assert "it had 56 photos then and has 58 now (2 more)" in warning and "look again" in warning
    assert at.button(key="explore_data_issues_again").proto.type == "primary"
    data_issues.for_run_saved(run, own["data_root"])  # looked at again (the task), on the run's own photos
    at.run()
    assert not any("The dataset changed since" in w.value for w in at.warning)
