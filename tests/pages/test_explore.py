"""Explore page: the feature map and the photos a selection picks, "photos like this", the suspected label
errors and their corrections, and runs that lack the analysis arrays or a model."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from core.data.corrections import Corrections, forget_dataset
from core.results import tasks as run_tasks
from core.results.labels.verdict import suspect_words, verdict
from core.runs.analysis import RunAnalysis
from core.runs.store import RunStore
from pages.ui.explore.map import selected_keys, selected_photos
from pages.ui.plain import md
from tests.conftest import copy_run
from tests.pages.conftest import texts

pytestmark = pytest.mark.backend_agnostic


@pytest.fixture
def own_run(workspace, tmp_path):
    """A copy of the prepared run in a store of its own (these tests write into the run folder), and the
    dataset's corrections file removed afterwards (it lives in the shared data folder)."""
    store = RunStore(tmp_path / "models")
    copy_run(workspace["store"].run_dir(workspace["run_id"]), store.run_dir(workspace["run_id"]))
    run = store.get(workspace["run_id"])
    yield store, run
    forget_dataset(workspace["data"], run.dataset_path)


def _map_traces(at) -> list[dict]:
    charts = at.get("plotly_chart")
    assert charts, "the map is drawn"
    return json.loads(charts[0].proto.spec)["data"]


def _captions(at) -> list[str]:
    return [caption for image in at.get("image") for caption in image.captions]


def test_selected_keys_come_from_customdata_not_point_numbers():
    frame = pd.DataFrame(
        {
            "key": ["val:0", "test:0", "test:1"],
            "path": ["a/1.png", "b/2.png", "a/3.png"],
            "correct": [True, False, True],
            "p_given": [0.9, 0.2, 0.6],
        }
    )
    # two traces each report their own point 0: only customdata tells them apart
    event = {
        "selection": {
            "points": [
                {"curve_number": 0, "point_index": 0, "customdata": "test:1"},
                {"curve_number": 1, "point_index": 0, "customdata": ["test:0"]},
                {"curve_number": 1, "point_index": 0, "customdata": "test:0"},  # reported twice (box + click)
                {"curve_number": 2, "point_index": 3},  # no customdata: not one of ours
            ],
            "point_indices": [0, 0],
        }
    }
    keys = selected_keys(event)
    assert keys == ["test:1", "test:0"]
    assert selected_keys(None) == [] and selected_keys({"selection": {"points": []}}) == []
    photos = selected_photos(frame, [*keys, "test:99"])
    assert photos["key"].tolist() == ["test:0", "test:1"]  # wrong first; an unknown key is ignored


def test_the_pca_map_carries_every_photo_key_and_a_selection_shows_those_photos(app, own_run, workspace):
    store, run = own_run
    analysis = RunAnalysis.load(run.directory)
    at = app("explore", models_dir=store.root)
    assert at.title[0].value == "Explore"
    traces = _map_traces(at)
    keys = [key for trace in traces for key in trace["customdata"]]
    expected = [f"val:{i}" for i in range(len(analysis.val.labels))] + [
        f"test:{i}" for i in range(len(analysis.test.labels))
    ]
    assert sorted(keys) == sorted(expected)
    assert {trace["name"] for trace in traces} == set(analysis.classes)  # coloured by true class
    assert "No photos selected yet." in texts(at)

    # a lasso over two points of different traces, as the browser reports it
    picked = ["test:0", "val:1"]
    points = [{"curve_number": n, "point_index": 0, "customdata": key} for n, key in enumerate(picked)]
    at.session_state["explore_map"] = {"selection": {"points": points, "point_indices": [0, 0], "box": [], "lasso": []}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "**2 photo(s) selected**, " in texts(at)
    names = {md(Path(analysis.test.paths[0]).name), md(Path(analysis.val.paths[1]).name)}  # captions: Markdown
    shown = {c.split("\n")[-1] for c in _captions(at)}
    assert names <= shown

    # photos like this: the training features are offered as a background task, then used
    assert at.button(key="explore_train_features_start")
    run_tasks.training_features(run, workspace["data"])  # what the background task does
    at.run()
    assert "training photos whose features are most similar" in texts(at)
    train = run_tasks.TrainFeatures.load(run.directory)
    classes = set(analysis.classes)
    neighbours = [c for c in _captions(at) if re.match(r"^\w+ · [01]\\\.\d\d\n", c)]  # "label · similarity"
    assert len(neighbours) == 8 and {c.split(" · ")[0] for c in neighbours} <= classes
    assert {c.split("\n")[-1] for c in neighbours} <= {md(Path(p).name) for p in train.paths}


def test_colour_by_correct_and_a_highlighted_class(app, own_run):
    store, run = own_run
    analysis = RunAnalysis.load(run.directory)
    at = app("explore", models_dir=store.root)
    at.selectbox(key="explore_colour").select("correct or wrong")
    at.selectbox(key="explore_highlight").select(analysis.classes[0])
    at.run()
    traces = _map_traces(at)
    assert [t["name"] for t in traces] == ["other classes", "correct", "wrong"]
    n_class = int((analysis.val.labels == 0).sum() + (analysis.test.labels == 0).sum())
    assert len(traces[1]["customdata"]) + len(traces[2]["customdata"]) == n_class


def test_label_errors_are_computed_then_listed_and_exclude_writes_the_corrections_file(app, own_run, workspace):
    store, run = own_run
    at = app("explore", models_dir=store.root)
    at.session_state["explore_tab"] = "Suspected label errors"
    at.run()
    assert at.button(key="explore_issues_start"), "the computation is offered"
    review = run_tasks.compute_label_issues(run, workspace["data"])  # what the background task does
    at.run()
    assert review.issues, "red and crimson share a colour: some labels must look wrong"
    first = next(issue for issue in review.issues if issue.split != "test")  # test photos: only when asked for
    shown = texts(at)
    assert md(f"{len(review.issues)} suspect(s) among {review.images} photos") in shown  # behind the verdict
    assert f"labelled **{first.given}**, {md(suspect_words(first))}" in shown
    assert "test" not in at.pills(key="explore_issue_splits").value
    on_test = sum(issue.split == "test" for issue in review.issues)
    if on_test:  # the verdict counts every suspect; the list says how many it leaves out and how to see them
        assert (
            f"Showing {len(review.issues) - on_test} of the {len(review.issues)} suspects the verdict above counts: "
            f"{on_test} test photo(s) are left out (add them under Splits)."
        ) in [c.value for c in at.caption]
    csv_button = next(b for b in at.get("download_button") if b.proto.label.startswith("Download all"))
    assert csv_button.proto.label == f"Download all {len(review.issues)} suspects (CSV)"  # the whole list, whole
    said = verdict(review, random_start=True)  # the fixture's run is a random start: a warning
    assert said.kind == "warning" and said.headline in [w.value for w in at.warning]
    assert f"gets {review.model_accuracy:.0%} of the training labels right out of sample" in said.headline
    assert "never to your photos" in shown and "new run id" in shown
    again = next(p for p in at.get("page_link") if p.proto.label == "Train again with these corrections")
    assert again.proto.page == "train" and again.proto.query_string == f"train_prefill={run.run_id}"
    row = hashlib.sha1(first.path.encode()).hexdigest()[:10]
    at.button(key=f"explore_issue_{row}_exclude").click().run()
    assert not at.exception, [e.value for e in at.exception]
    corrections = Corrections.load(workspace["data"], run.dataset_path)
    assert corrections.action(first.path) == "exclude"
    assert corrections.file.is_relative_to(workspace["data"]) and (Path(run.dataset_path) / first.path).exists()
    assert ":green[:material/check: excluded]" in texts(at)
    assert "1 excluded" in texts(at)

    # relabel another suspect to a class picked in its row
    assert len(review.issues) >= 2, "red and crimson: more than one suspect"
    second = next(i for i in review.issues if i.split != "test" and i.path != first.path)  # test photos: hidden
    row = hashlib.sha1(second.path.encode()).hexdigest()[:10]
    other = next(c for c in run.classes if c not in (second.given, second.suggested))
    at.selectbox(key=f"explore_issue_{row}_to").select(other).run()
    at.button(key=f"explore_issue_{row}_relabel").click().run()
    marks = Corrections.load(workspace["data"], run.dataset_path)
    assert marks.entries[second.path]["action"] == "relabel" and marks.entries[second.path]["to"] == other
    assert marks.action(first.path) == "exclude"

    # where the model looked: a contrast heatmap beside each photo on the page
    at.toggle(key="explore_issue_heatmaps").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    painted = [c for c in _captions(at) if c.startswith("red: ")]
    assert f"red: {first.suggested} · blue: {first.given}" in painted
    listed = [issue for issue in review.issues if issue.split != "test"]  # test photos: only when asked for
    supported = [issue for issue in listed if issue in review.first]  # the supported ones, then the rest behind
    assert len(painted) == min(len(supported), 10) + min(len(listed) - len(supported), 10)  # a page of 10 each


def test_a_run_without_analysis_offers_to_compute_it(app, own_run, monkeypatch):
    store, run = own_run
    run.path("analysis.npz").unlink()
    launched = []
    monkeypatch.setattr(run_tasks, "launch", lambda run, kind, data_root: launched.append((run.run_id, kind)))
    at = app("explore", models_dir=store.root)
    assert "from before Flora stored each validation and test photo's logits and features" in texts(at)
    assert "the map and the label review" in texts(at)
    assert not at.get("plotly_chart")
    at.button(key="explore_analysis_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert launched == [(run.run_id, "analysis")]


def test_a_failed_run_without_a_model_says_what_it_cannot_show(app, own_run):
    store, run = own_run
    run.path("model.keras").unlink()
    store.set_status(run.run_id, state="failed", error="out of memory")
    at = app("explore", models_dir=store.root)
    shown = texts(at)
    assert "This run failed before it saved a model: out of memory" in shown
    assert "no predictions or features to map" in shown
    assert not at.get("plotly_chart")


def test_a_failed_background_task_says_why_and_is_offered_again(app, own_run):
    from core.processes import JobState

    store, run = own_run
    folder = run_tasks.task_folder(run, "label-issues")
    folder.directory.mkdir(parents=True)
    folder.write(run_tasks.RunTaskStatus(state=JobState.FAILED, kind="label-issues", error="MemoryError: too big"))
    at = app("explore", models_dir=store.root)
    at.session_state["explore_tab"] = "Suspected label errors"
    at.run()
    assert f"The last attempt failed: {md('MemoryError: too big')}" in texts(at)
    assert at.button(key="explore_issues_start").label == "Find suspected label errors"


def test_picking_t_sne_starts_it_in_the_background_without_a_button(app, own_run, monkeypatch):
    store, run = own_run
    run.path("embedding.npz").unlink(missing_ok=True)
    launched = []
    monkeypatch.setattr(run_tasks, "launch", lambda run, kind, data_root: launched.append((run.run_id, kind)))
    at = app("explore", models_dir=store.root)
    assert launched == []  # the PCA map is the default: nothing starts until t-SNE is asked for
    at.segmented_control(key="explore_method").set_value("t-SNE").run()
    assert not at.exception, [e.value for e in at.exception]
    assert launched == [(run.run_id, "tsne")]
    assert "computed once in the background" in texts(at)


def test_a_thousand_classes_colour_the_largest_and_lump_the_rest():
    from pages.ui.explore.map import LEGEND_CLASSES, figure

    classes = [f"class_{i:04d}" for i in range(1000)]
    given = [classes[i % 1000] for i in range(3000)] + [classes[7]] * 40  # class 7 has the most photos
    frame = pd.DataFrame(
        {
            "x": range(len(given)),
            "y": range(len(given)),
            "key": [f"test:{i}" for i in range(len(given))],
            "path": [f"{g}/{i}.jpg" for i, g in enumerate(given)],
            "split": "test",
            "given": given,
            "predicted": given,
            "confidence": 0.5,
            "correct": True,
        }
    )
    traces = figure(frame, "true class", None, classes).data
    names = [t.name for t in traces]
    assert names[0] == f"{1000 - LEGEND_CLASSES} other classes" and len(traces) == LEGEND_CLASSES + 1
    assert "class_0007" in names
    assert sorted(k for t in traces for k in t.customdata) == sorted(frame["key"])  # every photo drawn once
    few = figure(frame[frame["given"].isin(classes[:5])], "true class", None, classes).data
    assert [t.name for t in few] == classes[:5]  # a few classes: each its own colour, no "other"


def test_the_coloured_classes_never_share_a_colour_whatever_their_place_in_the_list():
    from pages.ui.explore.map import LEGEND_CLASSES, figure

    classes = [f"class_{i:04d}" for i in range(1000)]
    largest = [classes[48 * k] for k in range(LEGEND_CLASSES)]  # places that a 48-colour cycle would give one colour
    given = classes + largest * 5
    frame = pd.DataFrame(
        {"x": range(len(given)), "y": range(len(given)), "key": [f"test:{i}" for i in range(len(given))],
         "path": [f"{g}/{i}.jpg" for i, g in enumerate(given)], "split": "test", "given": given,
         "predicted": given, "confidence": 0.5, "correct": True}
    )  # fmt: skip
    coloured = [t for t in figure(frame, "true class", None, classes).data if not t.name.endswith("other classes")]
    assert sorted(t.name for t in coloured) == sorted(largest)
    assert len({t.marker.color for t in coloured}) == LEGEND_CLASSES


def test_a_mark_on_a_classmates_run_is_a_proposal_its_owner_accepts(own_run, workspace, monkeypatch):
    """Before (walk): bob pressed Exclude on root's run and alice's next run applied it."""
    from streamlit.testing.v1 import AppTest

    from core.sharing import User, sessions
    from pages.ui.navigation import page_file
    from tests.pages.conftest import APP

    store, run = own_run
    review = run_tasks.compute_label_issues(run, workspace["data"])
    first = next(issue for issue in review.issues if issue.split != "test")
    monkeypatch.setenv("FLORA_SHARED", "1")
    monkeypatch.setenv("FLORA_ACCESS_TOKEN", "class-token-12345")
    monkeypatch.setenv("FLORA_DATA_DIR", str(workspace["data"]))
    monkeypatch.setenv("FLORA_MODELS_DIR", str(store.root))

    def signed_in(name: str, admin: bool) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=120)
        at.session_state["flora_user"] = User(name, name, admin=admin, how="token")
        at.session_state["flora_session"] = sessions.open_session(workspace["data"], name, admin=admin)
        at.session_state["explore_tab"] = "Suspected label errors"
        at.run()
        at.switch_page(page_file("explore")).run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    gary = signed_in("Gary", admin=False)
    assert "This is local's run: your marks are yours" in texts(gary)
    row = hashlib.sha1(first.path.encode()).hexdigest()[:10]
    gary.button(key=f"explore_issue_{row}_exclude").click().run()
    assert Corrections.load(workspace["data"], run.dataset_path, "Gary").action(first.path) == "exclude"
    assert Corrections.load(workspace["data"], run.dataset_path, "local").action(first.path) is None  # not local's
    # walk of issue 38, item 11: the row said only "✓ excluded"
    said = [c.value for c in gary.caption if c.value.startswith("Your mark, and a proposal to local")]
    assert said == [
        "Your mark, and a proposal to local: their runs apply it only if they accept it; your own next "
        "run on this dataset applies it."
    ]
    teacher = signed_in("Oak", admin=True)
    inbox = next(e for e in teacher.expander if e.label.startswith("Proposed corrections for local's runs: 1"))
    assert "proposed by **Gary**" in " ".join(m.value for m in inbox.markdown)
    next(b for b in teacher.button if b.label == "Accept").click().run()
    assert Corrections.load(workspace["data"], run.dataset_path, "local").action(first.path) == "exclude"
    assert not [e for e in teacher.expander if e.label.startswith("Proposed corrections")]
