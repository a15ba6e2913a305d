"""Sweep page: the launch form's checks, a finished sweep's trials and charts, and its best trained as a run."""

from __future__ import annotations

import json
import time

import pytest

from core.sweeps import SEARCHABLE
from pages.ui.plain import md
from tests.pages.conftest import table_with, texts


@pytest.fixture(scope="module")
def finished_sweep(workspace, tmp_path_factory):
    """A sweep of 3 trials on the workspace's colours, in a run store of its own."""
    from core.sweeps import SweepStore, submit
    from core.sweeps.search import run_sweep

    models = tmp_path_factory.mktemp("sweep-models")
    fixed = workspace["config"].replace(epochs=3)
    space = {"learning_rate": {"low": 1e-3, "high": 3e-2, "log": True}, "dropout": {"low": 0.0, "high": 0.5}}
    submission = submit(models, workspace["dataset"], fixed, space, trials=3)
    run_sweep(SweepStore(models), submission.sweep.sweep_id, workspace["data"], workers=1)
    return models, submission.sweep.sweep_id


def _new_sweep_tab(app, models_dir=None):
    at = app("sweep", models_dir=models_dir)
    at.session_state["sweep_tab"] = "New sweep"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_launch_form_checks_the_space_before_anything_starts(app, tmp_path):
    at = _new_sweep_tab(app, tmp_path / "models")
    assert "the test split is never used to choose" in texts(at)
    assert at.selectbox(key="sweep_dataset").value.endswith("colours")
    assert not at.button(key="sweep_launch").disabled  # the defaults make a sweep
    command = at.code[-1].value
    assert command.startswith("python -m core sweep ") and "--trials 20" in command and '"learning_rate"' in command

    at.multiselect(key="sweep_range_batch_size").set_value([]).run()
    assert md("batch_size: choices must be a non-empty list") in texts(at)
    assert at.button(key="sweep_launch").disabled
    for name in SEARCHABLE:
        box = at.checkbox(key=f"sweep_on_{name}")
        if box.value:
            box.uncheck()
    at.run()
    assert "the search space is empty" in texts(at) and at.button(key="sweep_launch").disabled
    at.checkbox(key="sweep_on_dropout").check().run()
    assert not at.button(key="sweep_launch").disabled
    assert not (tmp_path / "models").exists()  # nothing was launched


def test_a_finished_sweep_shows_its_trials_charts_and_best(app, finished_sweep):
    models, sweep_id = finished_sweep
    at = app("sweep", models_dir=models)
    assert at.session_state["sweep_tab"] == "Sweeps" and at.selectbox(key="sweep_pick").value == sweep_id
    table = table_with(at, "trial", "state", "val accuracy", "val loss", "learning_rate", "dropout")
    assert table["trial"].tolist() == [0, 1, 2]
    assert set(table["state"]) <= {"complete", "✂ pruned"}
    shown = texts(at)
    assert "Best trial's validation loss" in shown and "Trials finished: 3" in shown
    finished = next(m for m in at.metric if m.label == "Trials finished")
    assert finished.delta == "0 pruned"
    assert "Best so far: trial" in shown
    charts = [chart.proto.spec for chart in at.get("plotly_chart")]
    assert any("Highest validation accuracy so far" in spec for spec in charts)
    parallel = next(json.loads(spec) for spec in charts if "parcoords" in spec)
    assert parallel["layout"]["margin"]["l"] >= 60 and parallel["layout"]["margin"]["r"] >= 60  # labels not cut
    assert "title" not in parallel["layout"] or not parallel["layout"]["title"].get("text")  # it sat on the axes
    for dimension in parallel["data"][0]["dimensions"]:  # few distinct values: ticks at exactly those
        values = dimension["values"]
        numeric_axis = dimension["label"] not in ("val accuracy", "learning rate") and "range" in dimension
        if len(set(values)) <= 8 and numeric_axis and all(isinstance(v, int | float) for v in values):
            assert len(dimension["tickvals"]) == len(set(values))
    assert any("Which settings mattered most" in spec for spec in charts)
    assert not at.button(key=f"sweep_promote_{sweep_id}").disabled
    assert "python -m core sweep" in "\n".join(code.value for code in at.code)


def test_the_headline_says_what_best_means_when_a_more_accurate_trial_lost_on_loss(app, finished_sweep, tmp_path):
    """The best trial (lowest loss) and the most accurate one differ: both figures, and what 'best' means."""
    import json
    import shutil

    models, sweep_id = finished_sweep
    copy = tmp_path / "models"
    shutil.copytree(models, copy)
    trials = copy / ".sweeps" / sweep_id / "trials.json"
    snapshot = json.loads(trials.read_text())
    best = snapshot["best"]["number"]
    other = next(r for r in snapshot["trials"] if r["number"] != best and r["state"] == "complete")
    snapshot["best"]["val_accuracy"], other["val_accuracy"] = 0.563, 0.620
    for row in snapshot["trials"]:
        row["val_accuracy"] = {best: 0.563, other["number"]: 0.620}.get(row["number"], 0.5)
    trials.write_text(json.dumps(snapshot))
    at = app("sweep", models_dir=copy)
    metrics = {m.label: (m.value, m.delta) for m in at.metric}
    assert metrics["Its validation accuracy"][0] == "0.563"
    assert metrics["Highest validation accuracy"] == ("0.620", f"trial {other['number']}")
    assert metrics["Best trial's validation loss"][1] == f"trial {best}"
    assert f"'Best' means the lowest validation loss: trial {best} (0.563 accuracy)" in texts(at)


@pytest.mark.slow
def test_train_the_best_as_a_run_makes_an_ordinary_run(app, finished_sweep):
    from core.runs.store import RunStore

    models, sweep_id = finished_sweep
    at = app("sweep", models_dir=models)
    at.button(key=f"sweep_promote_{sweep_id}").click().run()
    assert not at.exception
    store = RunStore(models)
    (run,) = store.list()
    assert run.name.startswith(f"best of sweep {sweep_id[:6]}")
    deadline = time.time() + 240
    while store.get(run.run_id).state not in ("done", "failed") and time.time() < deadline:
        time.sleep(1)
    assert store.get(run.run_id).state == "done", store.log_tail(run.run_id)
    again = app("sweep", models_dir=models)
    assert f"Trained as run `{run.run_id}`: done, test accuracy" in texts(again)
    evaluate = app("evaluate", models_dir=models)
    assert evaluate.selectbox(key="evaluate_run").value == run.run_id


def test_the_form_says_which_corrections_the_sweep_applies(app, kept_corrections, tmp_path):
    at = _new_sweep_tab(app, tmp_path / "models")
    toggle = at.toggle(key="sweep_apply_corrections")
    assert toggle.value is True and toggle.label == "Apply 2 label correction(s)"
    assert "Kept for this dataset: 1 relabelled, 1 excluded. This sweep will apply them" in texts(at)
    assert "--corrections kept" in at.code[-1].value
    toggle.set_value(False).run()
    assert "--corrections none" in at.code[-1].value


def test_with_a_ray_cluster_configured_the_form_offers_to_run_the_trials_there(app, monkeypatch, tmp_path):
    """Issue 20: the Sweep page launches a sweep on Ray workers (the command it shows is the same sweep)."""
    monkeypatch.setenv("FLORA_RAY_ADDRESS", "10.0.0.7:6379")
    at = _new_sweep_tab(app, tmp_path / "models")
    assert at.toggle(key="sweep_on_ray").value and at.number_input(key="sweep_ray_workers").value == 2
    assert "which worker ran each" in texts(at)
    at.number_input(key="sweep_ray_workers").set_value(3).run()
    assert at.code[-1].value.endswith("--ray 10.0.0.7:6379 --ray-workers 3")
    at.toggle(key="sweep_on_ray").set_value(False).run()
    assert "--ray" not in at.code[-1].value and at.number_input(key="sweep_ray_workers").disabled
    monkeypatch.delenv("FLORA_RAY_ADDRESS")
    plain = _new_sweep_tab(app, tmp_path / "models")
    assert not [t for t in plain.toggle if t.key == "sweep_on_ray"]


def test_a_classmates_sweep_is_read_only(workspace, finished_sweep, monkeypatch):
    """Before (probe): any signed-in student stopped or deleted a sweep someone else started."""
    from streamlit.testing.v1 import AppTest

    from core.sharing import User, sessions
    from pages.ui.navigation import page_file
    from tests.pages.conftest import APP

    models, sweep_id = finished_sweep
    monkeypatch.setenv("FLORA_SHARED", "1")
    monkeypatch.setenv("FLORA_ACCESS_TOKEN", "class-token-12345")
    monkeypatch.setenv("FLORA_DATA_DIR", str(workspace["data"]))
    monkeypatch.setenv("FLORA_MODELS_DIR", str(models))
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["flora_user"] = User("Gary", "Gary", admin=False, how="token")
    at.session_state["flora_session"] = sessions.open_session(workspace["data"], "Gary", admin=False)
    at.run()
    at.switch_page(page_file("sweep")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "local's sweep: you can look at it, not change it" in texts(at)
    labels = [b.label for b in at.button]
    assert not [label for label in labels if label.startswith(("Run ", "Continue", "Stop", "Delete"))]
    promote = next(b for b in at.button if b.key == f"sweep_promote_{sweep_id}")
    assert promote.disabled and promote.label == "Only local can train its best"
    # walk of issue 38, item 1: the commands named the dataset by its server path (Train's said `colours`)
    server = str(workspace["data"].parent)
    commands = [c.value for c in at.code if "-m core sweep" in c.value]
    assert commands and all(c.startswith("python -m core sweep colours ") and server not in c for c in commands)
    at.session_state["sweep_tab"] = "New sweep"
    at.run()
    [form] = [c.value for c in at.code if "-m core sweep" in c.value]
    assert form.startswith("python -m core sweep colours ") and server not in form
