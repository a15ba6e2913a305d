"""Train page, New run form: "Find a learning rate" runs the range test in the background, draws the curve with the
suggestion, and one click puts the suggestion into the learning-rate field."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from core.fileio import write_json_atomic
from core.processes import JobState
from core.settings.config import TrainConfig
from core.train import lr_find_job
from core.train.lr_find import HEAD, RangeTest, learning_rates, suggest
from pages.ui.train.lr_finder import short
from tests.pages.conftest import texts


@pytest.fixture
def own_data(workspace, tmp_path, monkeypatch):
    """The workspace's dataset copied into a data folder of this test's own: the finder's jobs and feature caches
    stay out of the shared one."""
    data = tmp_path / "data"
    shutil.copytree(workspace["dataset"], data / "colours")  # copy2 keeps the times: the same fingerprint
    monkeypatch.setenv("FLORA_DATA_DIR", str(data))
    return data


def _form(app, tmp_path):
    at = app("train", models_dir=tmp_path / "models")
    at.session_state["train_tab"] = "New run"
    at.run()
    at.radio(key="train_weights_kind").set_value("none")
    at.select_slider(key="train_image_size").set_value(32)
    at.select_slider(key="train_batch_size").set_value(16)
    at.text_input(key="train_head").set_value("8")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _planted(data, at) -> RangeTest:
    """A finished range test for the form's settings, as the job leaves it (the curve made up, its suggestion not)."""
    from core.data.datasets import scan_dataset

    config = TrainConfig.from_dict(at.session_state["train_form_values"])
    dataset = at.selectbox(key="train_dataset").value
    fingerprint = scan_dataset(dataset).fingerprint
    lrs = learning_rates(120)
    losses = np.concatenate([np.full(40, 1.4), np.linspace(1.39, 0.3, 60), np.linspace(0.4, 6.0, 20)])
    suggestion = suggest(lrs, losses, 120)
    result = RangeTest(
        HEAD,
        [(float(lr), float(loss)) for lr, loss in zip(lrs, losses, strict=True)],
        [float(loss) for loss in losses],
        suggestion.lr,
        suggestion.method,
        suggestion.reason,
        suggestion.steepest_lr,
        suggestion.min_lr_over_10,
        120,
        120,
        "the last planned step",
        1.5,
    )
    folder = lr_find_job._folder(data, lr_find_job.finder_key(fingerprint, config, HEAD, None))
    folder.directory.mkdir(parents=True)
    folder.write(lr_find_job.FinderStatus(state=JobState.DONE, dataset=dataset, fingerprint=fingerprint))
    write_json_atomic(folder.directory / lr_find_job.RESULT_FILE, result.to_dict())
    return result


def test_a_finished_test_draws_its_curve_and_its_suggestion_goes_into_the_field(app, own_data, tmp_path):
    at = _form(app, tmp_path)
    assert at.button(key="train_lr_find_head").label == "Find a learning rate"
    assert not [b for b in at.button if b.key == "train_lr_find_fine-tune"]  # no phase 2, no rate to find for it
    result = _planted(own_data, at)
    at.session_state["flora_explain"] = True
    at.run()
    chart = next(c for c in at.get("plotly_chart") if "learning rate (log scale)" in c.proto.spec)
    spec = chart.proto.spec.replace(" ", "")
    assert '"type":"log"' in spec and '"name":"suggested"' in spec
    assert f'"text":["{short(result.suggested_lr)}"]' in spec  # the suggestion marked with its rate
    shown = texts(at)
    assert f"Suggested: **{short(result.suggested_lr)}**" in shown and "valley (fastai's rule)" in shown
    assert "Reading the range test" in shown and "below the lowest point" in shown  # the teaching note
    use = at.button(key="train_lr_use_head")
    assert use.label == f"Use {short(result.suggested_lr)}" and not use.disabled
    use.click().run()
    rate = float(f"{result.suggested_lr:.2g}")
    assert at.session_state["train_learning_rate"] == rate
    assert at.select_slider(key="train_learning_rate").value == rate
    assert f"learning rate {rate:g}" in texts(at)  # the plan reads the new rate
    # The rate is not part of the test's name: the curve stays, and its button says it is in use.
    assert at.button(key="train_lr_use_head").disabled


@pytest.mark.slow
def test_find_a_learning_rate_runs_in_the_background_then_offers_its_suggestion(app, own_data, tmp_path):
    at = _form(app, tmp_path)
    at.button(key="train_lr_find_head").click().run()
    assert not at.exception, [e.value for e in at.exception]
    config = TrainConfig.from_dict(at.session_state["train_form_values"])
    dataset = at.selectbox(key="train_dataset").value
    from core.data.datasets import scan_dataset

    finder = lr_find_job.read(own_data, scan_dataset(dataset).fingerprint, config, HEAD, None)
    assert finder is not None
    if finder.active:  # the page watches it: a progress bar and a stop button
        assert at.button(key="train_lr_find_stop_head").label == "Stop"
    deadline = time.time() + 240
    while finder.active and time.time() < deadline:
        time.sleep(1)
        finder = lr_find_job.read_key(own_data, finder.key)
    assert finder.state is JobState.DONE, finder.status.error or finder.log_tail()
    assert len(finder.result.curve) >= 10
    at.run()
    suggested = short(finder.result.suggested_lr)
    assert f"Suggested: **{suggested}**" in texts(at)
    at.button(key="train_lr_use_head").click().run()
    assert at.select_slider(key="train_learning_rate").value == float(f"{finder.result.suggested_lr:.2g}")
