"""Explore on a multi-label run: listed, its feature map coloured by a label or by how many labels a photo has, a
selection showing the photos' label lists and one photo's every score, the label lists the model doubts (Evaluate's
view), and plain words on what Data issues and Label next would need."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.results.evaluation import embedding
from core.results.evaluation.multilabel import CELLS, MultilabelEvaluation
from core.results.evaluation.multilabel_map import map_frame, photo_scores
from core.results.labels import multilabel_issues
from core.results.probabilities import label_thresholds
from core.runs.analysis import RunAnalysis
from core.runs.store import RunStore
from pages.ui import label_lists
from pages.ui.explore.multilabel import DATA_ISSUES_WORDS, LABEL_NEXT_WORDS
from pages.ui.explore.multilabel_map import map_words
from pages.ui.plain import md
from pages.ui.teaching import TOGGLE_KEY, note
from tests.conftest import copy_run
from tests.pages.conftest import table_with, texts


@pytest.fixture
def open_explore(app, multilabel_run, tmp_path, monkeypatch):
    """Explore on a copy of the shared multi-label run (the page stores its map in the run folder)."""
    store = RunStore(tmp_path / "models")
    copy_run(multilabel_run["store"].run_dir(multilabel_run["run_id"]), store.run_dir(multilabel_run["run_id"]))
    run = store.get(multilabel_run["run_id"])

    def opened():
        monkeypatch.setenv("FLORA_DATA_DIR", str(multilabel_run["data_root"]))
        at = app("explore", models_dir=store.root)
        assert at.selectbox(key="explore_run").value == run.run_id
        return at

    return opened, run


def _traces(at) -> list[dict]:
    charts = at.get("plotly_chart")
    assert charts, "the map is drawn"
    return json.loads(charts[0].proto.spec)["data"]


def test_the_map_coloured_by_a_label_has_every_photo_in_its_cell(open_explore):
    opened, run = open_explore
    at = opened()
    assert not at.exception, [e.value for e in at.exception]
    shown = texts(at)
    assert "reads single-label runs only" not in shown
    analysis = RunAnalysis.load(run.directory)
    label = at.selectbox(key="explore_ml_label").value
    assert label == analysis.classes[0] and at.selectbox(key="explore_ml_colour").value == "a label"
    frame = map_frame(analysis, embedding.run_map(run.directory, "pca"), label_thresholds.load(run.directory), label)
    traces = _traces(at)
    assert [t["name"] for t in traces] == [
        f"lacks '{label}'", f"lacks '{label}', answered it",
        f"has '{label}', answered it", f"has '{label}', not answered",
    ]  # fmt: skip
    assert set(CELLS) == {"left out", "added", "found", "missed"}
    for trace, cell in zip(traces, ["left out", "added", "found", "missed"], strict=True):
        assert sorted(trace["customdata"]) == sorted(frame.loc[frame["cell"] == cell, "key"])
    assert sorted(k for t in traces for k in t["customdata"]) == sorted(
        [f"val:{i}" for i in range(len(analysis.val.paths))] + [f"test:{i}" for i in range(len(analysis.test.paths))]
    )
    assert md(map_words(frame, "a label", label)) in shown
    other = analysis.classes[-1]
    at.selectbox(key="explore_ml_label").set_value(other).run()
    assert not at.exception, [e.value for e in at.exception]
    assert _traces(at)[0]["name"] == f"lacks '{other}'"


def test_the_map_coloured_by_how_many_labels_a_photo_has(open_explore):
    opened, run = open_explore
    at = opened()
    at.session_state[TOGGLE_KEY] = True  # the notes on: the map's note speaks of labels, not classes
    at.selectbox(key="explore_ml_colour").set_value("number of labels").run()
    assert not at.exception, [e.value for e in at.exception]
    assert note("feature_map_multilabel") in [i.value for i in at.info]
    assert at.selectbox(key="explore_ml_label").disabled
    (trace,) = _traces(at)
    analysis = RunAnalysis.load(run.directory)
    frame = map_frame(analysis, embedding.run_map(run.directory, "pca"), label_thresholds.load(run.directory))
    counts = dict(zip(frame["key"], frame["n_labels"], strict=True))
    assert trace["marker"]["color"] == [counts[k] for k in trace["customdata"]]
    assert md(map_words(frame, "number of labels", "")) in texts(at)


def test_a_selection_shows_the_photos_label_lists_and_one_photos_scores(open_explore):
    opened, run = open_explore
    at = opened()
    analysis = RunAnalysis.load(run.directory)
    picked = ["test:0", "val:1"]
    points = [{"curve_number": n, "point_index": 0, "customdata": key} for n, key in enumerate(picked)]
    at.session_state["explore_ml_map"] = {
        "selection": {"points": points, "point_indices": [0, 0], "box": [], "lasso": []}
    }
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "**2 photo(s) selected**, " in texts(at)
    frame = map_frame(analysis, embedding.run_map(run.directory, "pca"), label_thresholds.load(run.directory))
    captions = [c for image in at.get("image") for c in image.captions]
    for key in picked:
        row = frame.set_index("key").loc[key]
        said = f"has: {row['labels'] or 'none'} · answered: {row['predicted'] or 'none'}"
        assert any(c.startswith(md(said)) and md(Path(row["path"]).name) in c for c in captions), (said, captions)
    photo = at.selectbox(key="explore_ml_photo")
    assert set(photo.options) == {
        f"{Path(frame.set_index('key').loc[k, 'path']).name} (has: {frame.set_index('key').loc[k, 'labels'] or 'none'})"
        for k in picked
    }
    key = next(k for k in frame.sort_values(["exact", "n_labels"], kind="stable")["key"] if k in picked)
    assert photo.value == key  # the photo with a wrong answer first
    table = table_with(at, "label", "score", "threshold", "has", "answered", "right")
    expected = photo_scores(analysis, key, label_thresholds.load(run.directory))
    assert table["label"].tolist() == expected["label"].tolist()
    assert table["score"].tolist() == pytest.approx(expected["score"].tolist())
    assert table["answered"].tolist() == expected["answered"].tolist()
    assert "labels do not compete" in texts(at)


def test_the_label_lists_the_model_doubts_as_evaluate_shows_them(open_explore):
    opened, run = open_explore
    at = opened()
    at.session_state["explore_tab"] = "Suspected label errors"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    found = multilabel_issues.of_analysis(RunAnalysis.load(run.directory))
    shown = texts(at)
    assert f"**{found.suspected} of {found.photos}** validation and test photos" in shown
    if found.suspected:
        table = table_with(at, "path", "split", "quality", "missing", "wrong")
        assert table["path"].tolist() == found.table["path"].tolist()


def test_a_long_list_from_a_weak_model_says_so_pages_its_photos_and_downloads_whole(open_explore, monkeypatch):
    """Walk 54: 92 of 120 flagged on right labels by a weak model, 'the first 24 of 92' and no more, no CSV."""
    monkeypatch.setattr(label_lists, "PAGE_SIZE", 2)
    opened, run = open_explore
    at = opened()
    at.session_state["explore_tab"] = "Suspected label errors"
    at.run()
    found = multilabel_issues.of_analysis(RunAnalysis.load(run.directory))
    weak = multilabel_issues.weak_model_words(found, MultilabelEvaluation.of_run(run.directory).summary())
    assert found.suspected > 2 and weak, "the fixture's run: a weak model flagging many"  # 6 of 18 when written
    assert weak in [w.value for w in at.warning] and "mostly the model's own mistakes" in weak
    csv_button = next(b for b in at.get("download_button") if b.proto.label.startswith("Download all"))
    assert csv_button.proto.label == f"Download all {found.suspected} suspects (CSV)"
    pages = -(-found.suspected // 2)
    assert f"2 photos a page, in the table's order ({found.suspected} in all, {pages} pages)." in texts(at)

    def shown_photos() -> list[str]:  # the review rows' photos, by the file name each row starts with
        return [m.value.split("**")[1] for m in at.markdown if " photo  \nits labels: **" in m.value]

    names = [md(Path(p).name) for p in found.table["path"]]  # a row's words are Markdown, escaped
    assert shown_photos() == names[:2]
    at.session_state["explore_ml_issue_page"] = 2  # the next page
    at.run()
    assert shown_photos() == names[2:4]


def test_a_suspect_is_relabelled_with_a_whole_list_excluded_or_marked_fine_and_the_next_run_applies_it(
    open_explore, tmp_path, monkeypatch
):
    """Walk leftover: the label lists the model doubts had no marks. Each suspect now has relabel (its whole new
    list, the model's suggestion first), exclude, fine and undo, kept as the person's corrections for the next run."""
    from core.data.corrections import Corrections
    from core.train.jobs import dataset_corrections

    opened, run = open_explore
    data_root = tmp_path / "data"  # this test's own store of marks, not the shared run's data folder
    monkeypatch.setattr("pages.ui.common.data_root", lambda: data_root)
    at = opened()
    at.session_state["explore_tab"] = "Suspected label errors"
    at.run()
    found = multilabel_issues.of_analysis(RunAnalysis.load(run.directory))
    assert found.suspected >= 4, "the fixture's run flags a few photos"
    first, second, third = (found.table.iloc[i] for i in range(3))

    def row_key(path: str) -> str:
        import hashlib

        return f"explore_ml_issue_{hashlib.sha1(path.encode()).hexdigest()[:10]}"

    # the list offered is the model's suggestion: its labels, plus the ones suspected missing, less the wrong ones
    picker = at.multiselect(key=f"{row_key(first.path)}_labels")
    suggestion = [n for n in first.labels if n not in first.wrong] + list(first.missing)
    assert picker.value == suggestion and picker.options == run.classes
    chosen = [n for n in run.classes if n not in first.labels][:2]  # a list of the person's own
    picker.set_value(chosen)
    at.button(key=f"{row_key(first.path)}_relabel").click().run()
    at.button(key=f"{row_key(second.path)}_exclude").click().run()
    at.button(key=f"{row_key(third.path)}_fine").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.toast] == [f"{md(Path(third.path).name)}: marked fine"]  # said where one looks
    assert at.multiselect(key=f"{row_key(third.path)}_labels").value == list(third.labels)  # fine: its own list
    kept = Corrections.load(data_root, run.dataset_path)
    assert kept.effective() == {
        first.path: {"action": "relabel", "labels": chosen},
        second.path: {"action": "exclude"},
    }
    assert kept.action(third.path) == "fine"
    shown = texts(at)
    assert (
        md(f"relabel to {', '.join(chosen) or 'none of these'}") in shown
        and "1 relabelled, 1 excluded, 1 fine" in shown
    )
    table = table_with(at, "path", "marked")
    assert dict(zip(table["path"], table["marked"], strict=True))[second.path] == "excluded"
    # the next run on the dataset applies them: the Train page's toggle counts them, the run records them
    assert dataset_corrections(data_root, run.dataset_path) == kept.effective()
    # its own list again is no correction: a review (fine)
    fourth = found.table.iloc[3]
    at.multiselect(key=f"{row_key(fourth.path)}_labels").set_value(list(fourth.labels))
    at.button(key=f"{row_key(fourth.path)}_relabel").click().run()
    assert Corrections.load(data_root, run.dataset_path).action(fourth.path) == "fine"
    assert [t.value for t in at.toast] == [f"{md(Path(fourth.path).name)}: the same as its labels, marked fine"]
    # hidden once reviewed, and undone
    at.toggle(key="explore_ml_hide_reviewed").set_value(True).run()
    assert f"Showing {found.suspected - 4} of the {found.suspected} suspects" in texts(at)
    at.toggle(key="explore_ml_hide_reviewed").set_value(False).run()
    at.button(key=f"{row_key(second.path)}_undo").click().run()
    assert second.path not in Corrections.load(data_root, run.dataset_path).entries
    at.button(key=f"{row_key(third.path)}_undo").click().run()  # undone: the box offers the suggestion again
    third_suggestion = [n for n in third.labels if n not in third.wrong] + list(third.missing)
    assert at.multiselect(key=f"{row_key(third.path)}_labels").value == third_suggestion
    assert not at.exception and "Session State" not in texts(at)  # no widget-state warning


@pytest.mark.parametrize(("tab", "words"), [("Data issues", DATA_ISSUES_WORDS), ("Label next", LABEL_NEXT_WORDS)])
def test_data_issues_and_label_next_say_what_they_would_need(open_explore, tab, words):
    opened, _ = open_explore
    at = opened()
    at.session_state["explore_tab"] = tab
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [i.value for i in at.info] == [words]
    # nothing offered that would run a single-label task on a multi-label run
    assert not [b for b in at.button if (b.key or "").startswith(("explore_data_issues", "label_next"))]
