"""Explore's "Label next": preparing the unlabelled photos, labelling a batch in place (a copy in the class folder,
the original kept), none of these, skip, undo, uploads, and the measured saving against random."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.data.unlabelled import Unlabelled
from core.results.label_next import tasks as label_next_tasks
from core.runs.store import RunStore
from pages.ui.plain import md
from tests.conftest import copy_run_and_dataset
from tests.pages.conftest import texts

pytestmark = pytest.mark.backend_agnostic


@pytest.fixture
def own(trained_run, tmp_path, monkeypatch):
    copied = copy_run_and_dataset(trained_run, tmp_path)
    dataset = copied["dataset"]
    classes = sorted(p.name for p in dataset.iterdir() if p.is_dir())
    (dataset / "unlabelled").mkdir()
    for i, cls in enumerate(classes):
        for j, source in enumerate(sorted((dataset / cls).iterdir())[:2]):
            (dataset / "unlabelled" / f"u{i}{j}{source.suffix}").write_bytes(source.read_bytes())
    copied["run"] = RunStore(copied["models_root"]).get(copied["run_id"])
    copied["classes"] = classes
    return copied


def _open(app, own, monkeypatch):
    at = app("explore", models_dir=own["models_root"])
    monkeypatch.setenv("FLORA_DATA_DIR", str(own["data_root"]))
    at.session_state["explore_tab"] = "Label next"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_batch_is_labelled_in_place_and_nothing_is_lost(app, own, monkeypatch):
    at = _open(app, own, monkeypatch)
    assert f"{2 * len(own['classes'])} photo(s) waiting for a label" in texts(at)
    assert at.button(key="explore_label_next_start"), "preparing the features is offered"
    label_next_tasks.compute("label-next", own["run"], own["data_root"])  # what the background task does
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = texts(at)
    assert "The model's guesses:" in shown and "Why this one:" in shown and "retrained on" in shown
    first_class = own["classes"][0]
    at.button(key=f"label_next_b1_0_{first_class}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    waiting = Unlabelled.load(own["data_root"], own["dataset"])
    [(labelled, given)] = waiting.labelled.items()
    copy = own["dataset"] / waiting.record[labelled]["to"]
    assert given == first_class and copy.is_file() and copy.parent.name == first_class
    assert (own["dataset"] / labelled).is_file(), "the original stays in unlabelled/"
    assert "labelled **" in texts(at) and at.button(key="label_next_b1_0_undo")
    at.button(key="label_next_b1_1_none").click().run()
    at.button(key="label_next_b1_2_skip").click().run()
    waiting = Unlabelled.load(own["data_root"], own["dataset"])
    assert len(waiting.set_aside) == 1 and "Skipped for now" in texts(at)
    at.button(key="label_next_b1_2_unskip").click().run()
    assert "Skipped for now" not in texts(at) and at.button(key="label_next_b1_2_skip"), "a skip is undone"
    at.button(key="label_next_b1_0_undo").click().run()
    assert not copy.exists() and labelled in Unlabelled.load(own["data_root"], own["dataset"]).pending


def _files(own):
    return sorted(str(p.relative_to(own["dataset"])) for c in own["classes"] for p in (own["dataset"] / c).iterdir())


def test_clicks_on_the_greyed_page_label_a_photo_once_and_the_summary_counts_what_happened(app, own, monkeypatch):
    from streamlit.runtime.state.session_state import SessionState

    # A click made while a rerun is under way interrupts it before its buttons register again, so Streamlit keeps
    # the old page's buttons live and delivers their clicks (with the arguments they were drawn with). Keeping
    # every drawn button live here makes each click below such a click.
    monkeypatch.setattr(SessionState, "_remove_stale_widgets", lambda self, active: None)
    at = _open(app, own, monkeypatch)
    label_next_tasks.compute("label-next", own["run"], own["data_root"])
    at.session_state["label_next_batch_size"] = 5
    at.run()
    state = at.session_state[f"label_next_{own['run_id']}"]
    assert state["batch"] == 1 and len(state["picks"]) == 5
    before, first = _files(own), own["classes"][0]

    drawn = {b.key: b for b in at.button}  # every button the page has drawn, the greyed ones included

    def click(key):
        shown = {b.key for b in at.button}
        button = drawn[key].click()
        states = at._tree.get_widget_states()
        if key not in shown:  # a button of the old page: its click arrives all the same
            states.widgets.append(button._widget_state)
        at._run(states)
        assert not at.exception, [e.value for e in at.exception]
        drawn.update({b.key: b for b in at.button})

    for _ in range(7):
        click(f"label_next_b1_0_{first}")
    photo = state["picks"][0]["path"]
    record = Unlabelled.load(own["data_root"], own["dataset"]).record
    assert len(_files(own)) == len(before) + 1, "seven clicks, one copy"
    assert (own["dataset"] / record[photo]["to"]).is_file() and record[photo]["label"] == first
    assert "already labelled" in texts(at)
    click("label_next_b1_1_none")
    click("label_next_b1_2_skip")
    click(f"label_next_b1_3_{first}")
    click(f"label_next_b1_4_{first}")  # every card answered: the batch stays until the person asks for the next
    state = at.session_state[f"label_next_{own['run_id']}"]
    assert state["batch"] == 1 and not at.button(key="label_next_b1_next").disabled
    click("label_next_b1_next")  # the head retrains and the next batch is drawn
    state = at.session_state[f"label_next_{own['run_id']}"]
    assert state["batch"] == 2 and "Last batch: 3 labelled, 1 set aside, 1 skipped." in texts(at)
    after = _files(own)
    assert len(after) == len(before) + 3
    old_batch = (f"label_next_b1_4_{first}", f"label_next_b1_3_{first}", "label_next_b1_0_undo", "label_next_b1_2_skip")
    for key in (*old_batch, "label_next_b1_next"):
        click(key)  # clicks on the old batch, made while the head retrained: nothing happens
    assert _files(own) == after
    assert len(Unlabelled.load(own["data_root"], own["dataset"]).record) == 4, "no undo, no new answer"
    assert at.session_state[f"label_next_{own['run_id']}"]["batch"] == 2


def test_the_saving_is_measured_then_shown_in_curves_and_words(app, own, monkeypatch):
    at = _open(app, own, monkeypatch)
    assert at.button(key="explore_label_next_simulate_start"), "the measurement is offered"
    result = label_next_tasks.simulate_run(own["run"], own["data_root"])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = texts(at)
    assert md(result["verdict"][1:]) in shown and "Target (dashed)" in shown
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart"), "the two curves are drawn"
    assert (
        "Measured " in shown and "the same answer" in shown and at.button(key="explore_label_next_simulate_again_start")
    )


def test_photos_are_added_by_upload_and_a_bad_file_is_named(app, own, monkeypatch):
    at = _open(app, own, monkeypatch)
    png = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 200, 10)).save(png, "PNG")
    files = [("green.png", png.getvalue(), "image/png"), ("bad.jpg", b"x", "image/jpeg")]
    at.file_uploader(key=f"label_next_upload_{own['run_id']}_0").set_value(files).run()
    at.button(key=f"label_next_upload_{own['run_id']}_add").click().run()
    assert not at.exception, [e.value for e in at.exception]
    shown = texts(at)
    assert "Added 1 photo(s)." in shown and "bad.jpg" in shown
    assert f"{2 * len(own['classes']) + 1} photo(s) waiting" in shown, "counted at once, no reload"
    assert (own["dataset"] / "unlabelled" / "green.png").is_file()
    assert at.button(key="explore_label_next_start"), "a new photo: the features are prepared again"


def test_a_dataset_without_unlabelled_photos_says_how_to_add_them(app, workspace):
    at = app("explore")
    at.session_state["explore_tab"] = "Label next"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "no unlabelled photos" in texts(at) and "unlabelled" in texts(at)


def test_a_click_during_the_retrain_leaves_the_summary_of_the_batch_that_was_labelled(app, own, monkeypatch):
    from streamlit.runtime.state.session_state import SessionState

    from pages.ui.explore import label_next as page

    # A click on the greyed page while the head retrains starts another run of the page at once (Streamlit's fast
    # reruns) while the first one is still retraining: both find the finished batch, both retrain.
    monkeypatch.setattr(SessionState, "_remove_stale_widgets", lambda self, active: None)
    at = _open(app, own, monkeypatch)
    label_next_tasks.compute("label-next", own["run"], own["data_root"])
    at.session_state["label_next_batch_size"] = 5
    at.run()
    first = own["classes"][0]
    drawn = {b.key: b for b in at.button}

    def click(key):
        states = at._tree.get_widget_states()
        states.widgets.append(drawn[key].click()._widget_state)
        at._run(states)
        assert not at.exception, [e.value for e in at.exception]
        drawn.update({b.key: b for b in at.button if b.key not in drawn or not b.disabled})

    retrains, real = [], page.workbench

    def retrain_meanwhile_clicked(*args, **kwargs):
        retrains.append(1)
        if len(retrains) == 1:
            click(f"label_next_b1_4_{first}")  # the second run of the page, made while this one retrains
        return real(*args, **kwargs)

    for i in range(5):
        click(f"label_next_b1_{i}_{first}")
    monkeypatch.setattr(page, "workbench", retrain_meanwhile_clicked)
    click("label_next_b1_next")
    assert len(retrains) == 2, "both runs of the page retrained"
    assert len(Unlabelled.load(own["data_root"], own["dataset"]).labelled) == 5
    assert "Last batch: 5 labelled, 0 set aside, 0 skipped." in texts(at)
    assert at.session_state[f"label_next_{own['run_id']}"]["batch"] == 2, "one new batch, not two"


def test_a_run_trained_after_photos_were_labelled_here_counts_them_among_its_labelled_photos(app, own, monkeypatch):
    from core.results.label_next.data import UnlabelledFeatures
    from core.results.train_features import TrainFeatures, training_features

    run, classes = own["run"], own["run"].classes
    label_next_tasks.compute("label-next", run, own["data_root"])
    train, computed = training_features(run, own["data_root"]), UnlabelledFeatures.load(run.directory)
    waiting = Unlabelled.load(own["data_root"], own["dataset"])
    early = waiting.pending[:2]
    for path in early:
        waiting.label(path, classes[0], classes)
    # What a run trained after these labels stores: its training split holds the two copies.
    rows = [computed.paths.index(p) for p in early]
    record = Unlabelled.load(own["data_root"], own["dataset"]).record
    TrainFeatures(
        np.concatenate([train.features, computed.features[rows]]),
        np.concatenate([train.labels, [0, 0]]),
        [*train.paths, *(record[p]["to"] for p in early)],
    ).save(run.directory)
    at = _open(app, own, monkeypatch)
    photos = len(train.paths) + 2
    assert f"retrained on {photos} labelled photos (2 of them labelled here)" in texts(at)
    assert len(at.session_state[f"label_next_{own['run_id']}"]["picks"]) == 6, "every photo still waiting"
    for key in [f"label_next_b1_{i}_{classes[1]}" for i in range(5)] + ["label_next_b1_5_skip", "label_next_b1_next"]:
        at.button(key=key).click().run()
        assert not at.exception, [e.value for e in at.exception]
    shown = texts(at)
    assert "Last batch: 5 labelled, 0 set aside, 1 skipped." in shown and "7 labelled here (copied" in shown
    assert f"retrained on {photos + 5} labelled photos (7 of them labelled here)" in shown


def _cards(at) -> list[str]:
    """The photo names on the cards, top to bottom (each card's image caption)."""
    return [caption for image in at.get("image") for caption in image.captions]


def test_a_quick_click_labels_the_photo_it_was_aimed_at_and_no_card_moves(app, own, monkeypatch):
    from streamlit.runtime.state.session_state import SessionState

    # The second click lands while the page reruns after the first: it is the button drawn before that rerun.
    monkeypatch.setattr(SessionState, "_remove_stale_widgets", lambda self, active: None)
    at = _open(app, own, monkeypatch)
    label_next_tasks.compute("label-next", own["run"], own["data_root"])
    at.session_state["label_next_batch_size"] = 5
    at.run()
    picks = [p["path"] for p in at.session_state[f"label_next_{own['run_id']}"]["picks"]]
    cards = _cards(at)
    assert len(cards) == len(picks) >= 3
    drawn = {b.key: b for b in at.button}
    first, second = own["classes"][0], own["classes"][1]
    at.button(key=f"label_next_b1_0_{first}").click().run()
    states = at._tree.get_widget_states()
    states.widgets.append(drawn[f"label_next_b1_1_{second}"].click()._widget_state)  # as drawn before the rerun
    at._run(states)
    assert not at.exception, [e.value for e in at.exception]
    record = Unlabelled.load(own["data_root"], own["dataset"]).record
    assert record[picks[0]]["label"] == first and record[picks[1]]["label"] == second
    assert picks[2] not in record, "the third photo is untouched"
    assert _cards(at) == cards, "every card where it was"
    for i in range(2, len(picks)):
        at.button(key=f"label_next_b1_{i}_skip").click().run()
    assert _cards(at) == cards and at.session_state[f"label_next_{own['run_id']}"]["batch"] == 1, (
        "a batch whose every card is answered stays until the person asks for the next"
    )
    assert "labelled **" in texts(at) and "Skipped for now" in texts(at) and at.button(key="label_next_b1_0_undo")


def test_the_next_batch_waits_until_every_card_is_answered(app, own, monkeypatch):
    at = _open(app, own, monkeypatch)
    label_next_tasks.compute("label-next", own["run"], own["data_root"])
    at.session_state["label_next_batch_size"] = 5
    at.run()
    assert at.button(key="label_next_b1_next").disabled and "5 photo(s) of this batch still wait" in texts(at)
    for i in range(5):
        at.button(key=f"label_next_b1_{i}_none").click().run()
    assert not at.button(key="label_next_b1_next").disabled
    at.button(key="label_next_b1_next").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state[f"label_next_{own['run_id']}"]["batch"] == 2
    assert "Last batch: 0 labelled, 5 set aside, 0 skipped." in texts(at)


def test_a_reload_shows_the_same_batch_until_the_next_is_asked_for(app, own, monkeypatch):
    """Walk 41: a reload drew another batch (the labelled card gone with its Undo, the others moved). The batch is
    kept with the run: a fresh session (a reload, another tab) shows the same cards, skips included, until 'Next
    batch'; then every fresh session shows the new one."""
    at = _open(app, own, monkeypatch)
    label_next_tasks.compute("label-next", own["run"], own["data_root"])
    at.session_state["label_next_batch_size"] = 5
    at.run()
    picks = [p["path"] for p in at.session_state[f"label_next_{own['run_id']}"]["picks"]]
    cards = _cards(at)
    at.button(key=f"label_next_b1_0_{own['classes'][0]}").click().run()
    at.button(key="label_next_b1_1_skip").click().run()

    again = _open(app, own, monkeypatch)  # a reload: a new session, nothing in its state
    state = again.session_state[f"label_next_{own['run_id']}"]
    assert [p["path"] for p in state["picks"]] == picks and state["batch"] == 1 and _cards(again) == cards
    assert again.button(key="label_next_b1_0_undo") and again.button(key="label_next_b1_1_unskip")
    for i in range(2, len(picks)):
        again.button(key=f"label_next_b1_{i}_none").click().run()
    again.button(key="label_next_b1_next").click().run()
    drawn = [p["path"] for p in again.session_state[f"label_next_{own['run_id']}"]["picks"]]
    assert drawn != picks and not set(drawn) & (set(picks) - {picks[1]})

    third = _open(app, own, monkeypatch)
    state = third.session_state[f"label_next_{own['run_id']}"]
    assert state["batch"] == 2 and [p["path"] for p in state["picks"]] == drawn
    assert "Last batch: 1 labelled, 3 set aside, 1 skipped." in texts(third)
