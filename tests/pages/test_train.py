"""Train page: the run list and monitor, Launch in the background, cached and failed runs."""

from __future__ import annotations

import time

import pytest

from pages.ui.navigation import page_file
from pages.ui.plain import md
from tests.conftest import copy_run
from tests.pages.conftest import table_with, texts


def test_runs_tab_shows_the_finished_run_with_its_curves(app, workspace):
    at = app("train")
    table = table_with(at, "run", "state", "progress", "id")
    assert table["id"].tolist() == [workspace["run_id"]] and table["state"].tolist() == ["done"]
    assert table["run"].tolist() == ["32 px · random start · batch 16 · 4 epochs · patience 0 · head 32 · seed 2"]
    assert at.selectbox(key="train_run").value == workspace["run_id"]
    shown = texts(at)
    assert "Test accuracy" in shown and "Best epoch" in shown
    charts = [el for el in at.get("plotly_chart")]
    assert len(charts) == 2  # loss and accuracy
    assert "epoch" in charts[0].proto.spec


def test_a_run_logged_to_mlflow_shows_its_mlflow_run_with_a_link(app, workspace):
    store, run_id = workspace["store"], workspace["run_id"]
    before = store.get(run_id).status.mlflow
    uri = "http://127.0.0.1:5999"
    store.set_status(run_id, mlflow={uri: {"run_id": "abc123", "experiment_id": "7"}})
    try:
        at = app("train")
        shown = [c.value for c in at.caption]
        assert f"Logged to MLflow at `{uri}`: [MLflow run abc123](<{uri}/#/experiments/7/runs/abc123>)" in shown
    finally:
        store.set_status(run_id, mlflow=before)


def _new_run_tab(app, models_dir=None):
    at = app("train", models_dir=models_dir)
    at.session_state["train_tab"] = "New run"
    at.run()
    assert not at.exception
    return at


def test_new_run_form_explains_the_plan_and_validates(app):
    at = _new_run_tab(app)
    assert at.selectbox(key="train_dataset").value.endswith("colours")
    shown = texts(at)
    assert "Phase 1" in shown and "cached backbone features" in shown
    at.number_input(key="train_fine_tune_epochs").set_value(2).run()
    assert "Phase 2" in texts(at) and "top 1 ResNet stage" in texts(at)
    at.text_input(key="train_head").set_value("256,abc").run()
    assert at.button(key="train_launch").disabled


def _fill_tiny(at, epochs: int):
    at.radio(key="train_weights_kind").set_value("none")
    assert "48" in at.select_slider(key="train_image_size").options  # the CLI takes 48 px: so does the form
    at.select_slider(key="train_image_size").set_value(32)
    at.select_slider(key="train_batch_size").set_value(16)
    at.number_input(key="train_epochs").set_value(epochs)
    at.text_input(key="train_head").set_value("8")
    return at.run()


@pytest.mark.slow
def test_launch_trains_in_the_background_then_the_same_settings_are_cached(app, workspace, tmp_path):
    from core.runs.store import RunStore

    store = RunStore(tmp_path / "models")
    at = _fill_tiny(_new_run_tab(app, store.root), epochs=2)
    shown = texts(at)
    assert "**Random start**" in shown and "Phase 1**: 2 epochs" in shown
    command = at.code[-1].value  # the same run from a terminal
    assert command.startswith("python -m core train ") and "--weights none" in command and "--epochs 2" in command
    at.button(key="train_launch").click().run()
    assert "Launched run" in texts(at)
    run_id = at.session_state["train_run"]
    assert at.session_state["train_tab"] == "Runs" and run_id != workspace["run_id"]
    deadline = time.time() + 240
    while store.get(run_id).state not in ("done", "failed") and time.time() < deadline:
        time.sleep(1)
    run = store.get(run_id)
    assert run.state == "done", store.log_tail(run_id)
    watched = app("train", models_dir=store.root)
    assert "Test accuracy" in texts(watched) and watched.selectbox(key="train_run").value == run_id

    again = _fill_tiny(_new_run_tab(app, store.root), epochs=2)
    again.button(key="train_launch").click().run()
    assert f"Cached: run **{run_id}** already finished" in texts(again)
    assert again.session_state["train_run"] == run_id


@pytest.mark.slow
def test_stop_a_running_run_from_the_page(app, workspace, tmp_path):
    from core.runs.store import RunStore

    store = RunStore(tmp_path / "models")
    at = _new_run_tab(app, store.root)
    at.toggle(key="train_feature_cache").set_value(False)  # epochs on images: slow enough to stop midway
    at = _fill_tiny(at, epochs=60)
    at.button(key="train_launch").click().run()
    run_id = at.session_state["train_run"]
    deadline = time.time() + 180
    while not any(m.get("epoch") for m in store.read_metrics(run_id)) and time.time() < deadline:
        time.sleep(0.5)
    assert store.get(run_id).state == "running", store.log_tail(run_id)

    watching = app("train", models_dir=store.root)
    assert watching.selectbox(key="train_run").value == run_id
    watching.button(key=f"train_stop_{run_id}").click().run()
    assert "Stopping (asked" in texts(watching)
    assert table_with(watching, "run", "state")["state"].tolist()[0] == "stopping"  # at once, before it ends
    while store.get(run_id).state == "running" and time.time() < deadline:
        time.sleep(0.5)
    assert store.get(run_id).state == "stopped", store.log_tail(run_id)
    after = app("train", models_dir=store.root)
    assert "Stopped on request: it kept its best weights so far, and they were evaluated." in texts(after)


def test_a_failed_run_shows_its_error_and_log(app, workspace):
    store = workspace["store"]
    record = {**store.get(workspace["run_id"]).config}
    store.create("failedrun001", record)
    (store.run_dir("failedrun001") / "train.log").write_text("decoding images\nValueError: out of cheese\n")
    store.set_status("failedrun001", state="failed", error="ValueError: out of cheese")
    try:
        at = app("train")
        at.selectbox(key="train_run").set_value("failedrun001").run()
        shown = texts(at)
        assert f"This run failed: {md('ValueError: out of cheese')}" in shown
        assert any("out of cheese" in code.value for code in at.code)
    finally:
        store.delete("failedrun001")


def test_new_run_from_a_runs_settings_prefills_the_form(app, workspace):
    at = app("train")
    at.button(key=f"train_prefill_{workspace['run_id']}").click().run()
    assert at.session_state["train_tab"] == "New run"
    config = workspace["config"]
    assert at.radio(key="train_weights_kind").value == "none"
    assert at.select_slider(key="train_image_size").value == config.image_size
    assert at.number_input(key="train_epochs").value == config.epochs
    assert at.text_input(key="train_head").value == "32"
    assert "Phase 1**: 4 epochs" in "\n".join(m.value for m in at.markdown)


def test_delete_a_finished_run(app, workspace, tmp_path):

    from core.runs.store import RunStore

    copy = tmp_path / "models"
    copy_run(workspace["models"], copy)
    at = app("train", models_dir=copy)
    at.button(key=f"train_delete_{workspace['run_id']}").click().run()
    assert not RunStore(copy).exists(workspace["run_id"])
    assert "No runs yet" in texts(at)


def test_a_stop_that_came_too_late_is_said_on_the_finished_run(app, workspace, tmp_path):
    from core.runs.store import RunStore

    copy = tmp_path / "models"
    copy_run(workspace["models"], copy)
    note = "a stop was asked for at 12:00:00, as training was ending on its own: it finished as planned"
    RunStore(copy).set_status(workspace["run_id"], note=note)
    at = app("train", models_dir=copy)
    assert md("A stop was asked for at 12:00:00, as training was ending on its own") in texts(at)


def test_a_run_extracting_features_shows_its_stage_eta_and_why(app, workspace, tmp_path):
    import os

    from core.processes import process_start_time
    from core.runs.store import RunStore

    copy = tmp_path / "models"
    copy_run(workspace["models"], copy)
    store = RunStore(copy)
    store.create("preparing001", store.get(workspace["run_id"]).config)
    store.set_status(
        "preparing001",
        state="running",
        pid=os.getpid(),
        pid_start=process_start_time(os.getpid()),
        epochs_total=10,
        stage="extracting features: train",
        stage_progress=[300, 1200],
        stage_started_at=time.time() - 60,
        device="CPU: AMD EPYC (tensorflow)",
        runtime="forward pass: OpenVINO 2026.4.1 (1.41x Keras's images per CPU-second at 32 px, measured here)",
    )
    at = app("train", models_dir=copy)
    assert at.selectbox(key="train_run").value == "preparing001"  # the active run is picked first
    bars = [bar.text for bar in at.get("progress")]
    assert any(text.startswith("extracting features: train · 300 / 1200 · about") for text in bars), bars
    assert not any("0/10 epochs" in text for text in bars), bars
    assert "ResNet-50 runs over each image once" in texts(at)
    caption = next(c.value for c in at.caption if c.value.startswith("CPU: AMD EPYC (tensorflow)"))
    assert "· forward pass: OpenVINO 2026.4.1 (1.41x Keras's images per CPU-second at 32 px" in caption  # which, why
    sidebar = [bar.text for bar in at.sidebar.get("progress")]
    assert any("300 / 1200" in text for text in sidebar), sidebar


def test_the_form_remembers_the_settings_last_launched_on_a_dataset(app, workspace, tmp_path):
    from core import workspace as remembered
    from core.settings.config import TrainConfig

    dataset = str(workspace["dataset"].resolve())
    remembered.remember_train_settings(
        workspace["data"], dataset, TrainConfig(weights="none", image_size=64, learning_rate=5e-4).to_dict()
    )
    try:
        at = _new_run_tab(app)
        assert at.radio(key="train_weights_kind").value == "none"
        assert at.select_slider(key="train_image_size").value == 64
        assert at.select_slider(key="train_learning_rate").value == 5e-4  # not a slider stop: added for it
        assert "--lr 0.0005" in at.code[-1].value
    finally:
        remembered.forget_person(workspace["data"])


def test_a_run_can_be_named_and_its_command_copied(app, workspace, tmp_path):

    from core.runs.store import RunStore

    copy = tmp_path / "models"
    copy_run(workspace["models"], copy)
    at = app("train", models_dir=copy)
    run_id = workspace["run_id"]
    command = next(code.value for code in at.code if code.value.startswith("python -m core train"))
    assert str(workspace["dataset"]) in command and "--head 32" in command and "--seed 2" in command
    at.text_input(key=f"train_name_{run_id}").set_value("colours baseline")
    at.text_input(key=f"train_note_{run_id}").set_value("first try, tiny")
    at.button(key=f"train_label_{run_id}").click().run()
    assert RunStore(copy).get(run_id).name == "colours baseline"
    assert table_with(at, "run", "id")["run"].tolist() == ["colours baseline"]
    assert "colours baseline" in at.selectbox(key="train_run").format_func(run_id)


def test_teaching_notes_are_off_by_default_and_remembered(app, workspace):
    at = app("train")
    assert "What freezing does" not in texts(at)
    at.toggle(key="flora_explain").set_value(True).run()
    at.session_state["train_tab"] = "New run"
    at.run()
    assert "What freezing does" in texts(at) and "BatchNorm stays frozen" in texts(at)
    assert "cannot damage what ResNet-50 learnt on ImageNet" in texts(at)  # the form starts from ImageNet weights
    at.radio(key="train_weights_kind").set_value("none").run()
    shown = texts(at)  # a random start: the ImageNet claims would be wrong, the note says what freezing does then
    assert "What freezing does, on a random start" in shown and "learnt on ImageNet" not in shown
    assert "'caffe' preprocessing, on a random start" in shown and "Its ImageNet weights also expect" not in shown
    again = app("train")  # a new session: the choice was kept
    assert again.toggle(key="flora_explain").value is True
    again.toggle(key="flora_explain").set_value(False).run()


def test_the_form_says_which_corrections_apply_and_can_leave_them_out(app, kept_corrections, monkeypatch, tmp_path):
    from core.train import jobs

    launched = []

    def fake_launch(dataset, config, models, data, force=False, corrections=None, **ownership):
        launched.append(corrections)
        raise OSError("not launched in this test")

    monkeypatch.setattr(jobs, "launch", fake_launch)
    at = app("train", models_dir=tmp_path / "models")
    at.session_state["train_tab"] = "New run"
    at.run()
    toggle = at.toggle(key="train_apply_corrections")
    assert toggle.value is True and toggle.label == "Apply 2 label correction(s)"
    assert "Kept for this dataset: 1 relabelled, 1 excluded. This run will apply them" in texts(at)
    assert "--corrections kept" in at.code[-1].value  # said, and pinned by the run's own command once launched
    at.button(key="train_launch").click().run()
    assert launched[-1] == kept_corrections
    at.toggle(key="train_apply_corrections").set_value(False).run()
    assert "--corrections none" in at.code[-1].value
    at.button(key="train_launch").click().run()
    assert launched[-1] == {}  # none


def test_a_corrected_run_is_named_for_them_shows_them_and_its_command_finds_it(app, workspace, tmp_path):
    import json

    models = tmp_path / "models"
    copy_run(workspace["store"].run_dir(workspace["run_id"]), models / "c0rrected001")
    record = json.loads((models / "c0rrected001" / "config.json").read_text())
    record["dataset"]["corrections"] = {"red/img_000.png": {"action": "relabel", "to": "crimson"}}
    (models / "c0rrected001" / "config.json").write_text(json.dumps(record))
    at = app("train", models_dir=models)
    at.selectbox(key="train_run").set_value("c0rrected001").run()
    assert "+1 correction" in at.selectbox(key="train_run").format_func("c0rrected001")
    table = table_with(at, "photo", "correction", "to")
    assert table.to_dict("records") == [{"photo": "red/img_000.png", "correction": "relabel", "to": "crimson"}]
    assert any("--corrections run:c0rrected001" in code.value for code in at.code)


def test_train_again_with_the_corrections_opens_the_form_and_says_what_changes(app, workspace, kept_corrections):
    at = app("home")
    at.query_params["train_prefill"] = workspace["run_id"]
    at.switch_page(page_file("train"))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["train_tab"] == "New run"
    note = next(i.value for i in at.info if i.value.startswith("The form holds run"))
    assert "(1 relabelled, 1 excluded; the run had none)" in note
    assert at.select_slider(key="train_image_size").value == workspace["config"].image_size
    from core.results.evaluation.metrics import Evaluation

    on_test = len(set(kept_corrections) & set(Evaluation.load(workspace["store"].run_dir(workspace["run_id"])).paths))
    assert (f"{on_test} of them are test photos" in note) == bool(on_test)  # said when a test photo changes


def test_train_again_when_the_run_already_applied_the_kept_corrections_says_it_would_find_that_run(app, workspace):
    """The second walk: 'the new run differs from it only in those' of a run that had applied the very same ones."""
    at = app("home")
    at.query_params["train_prefill"] = workspace["run_id"]  # no marks kept, none applied: the same
    at.switch_page(page_file("train"))
    at.run()
    note = next(i.value for i in at.info if i.value.startswith("The form holds run"))
    assert "launched as it is, the form finds that run again" in note and "differs" not in note


def test_damaged_run_folders_never_break_a_page(app, workspace, tmp_path):
    """A status of [1,2,3], a config whose image_size is text, a config cut short: each page draws, and Train
    lists them as unreadable with why (before: a TypeError on every page, or a run vanishing silently)."""
    from pages.ui.navigation import pages_for

    models = copy_run(workspace["models"], tmp_path / "models")
    store = workspace["store"].__class__(models)
    source = store.run_dir(workspace["run_id"])
    for run_id in ("statuslist", "badtype", "cutconfig"):
        copy_run(source, models / run_id)
    (models / "statuslist" / "status.json").write_text("[1,2,3]")
    config = (models / "badtype" / "config.json").read_text()
    (models / "badtype" / "config.json").write_text(config.replace('"image_size": 32', '"image_size": "<str>"'))
    (models / "cutconfig" / "config.json").write_text(config[: len(config) // 2])
    at = app("train", models_dir=models)
    expander = next(e for e in at.expander if "3 run folder(s) cannot be read" in e.label)
    shown = [t.value for t in expander.text]
    assert any("badtype  unreadable: config.json: config: image_size is '<str>'" in line for line in shown)
    assert any("cutconfig  unreadable: config.json is cut short" in line for line in shown)
    assert table_with(at, "id")["id"].tolist() == [workspace["run_id"]]
    for page in pages_for(shared=False, admin=True):
        at.switch_page(page_file(page.name)).run()
        assert not at.exception, (page.name, [e.value for e in at.exception])
    at.switch_page(page_file("train")).run()
    next(b for b in at.button if b.key == "train_delete_unreadable_cutconfig").click().run()
    assert not (models / "cutconfig").exists()


def test_the_plan_says_the_disk_decoding_takes_or_that_it_is_done(app, workspace, monkeypatch):
    import collections
    import shutil

    at = _fill_tiny(_new_run_tab(app), 1)  # 32 px: the workspace's photos are decoded at that size already
    assert "already decoded at 37 px" in texts(at)
    at.select_slider(key="train_image_size").set_value(48).run()
    assert "Decoding 56 photos at 55 px takes 508.2 KB of disk in the cache" in texts(at)
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    at.run()
    assert any("That does not fit" in w.value for w in at.warning)


def test_the_plan_says_how_long_the_run_will_take_here(app, workspace):
    """Issue 32: the plan gives a duration, priced from the run that finished on this device (the workspace's)."""
    from core.runs.estimate import estimate
    from pages.ui.device_status import device_info

    run = workspace["store"].get(workspace["run_id"])
    assert run.status.device == device_info().label  # the page and the run name this machine's device alike
    at = _fill_tiny(_new_run_tab(app), 1)
    config = run.train_config.replace(epochs=1)
    shown = next(c for c in texts(at).split("\n") if "Training takes about" in c)
    assert "from the pace of the run that finished on this device" in shown
    assert estimate(config, 56, [run], run.status.device) is not None


def test_a_dataset_with_its_own_val_split_greys_out_the_val_share(app, tmp_path, monkeypatch):
    from tests.conftest import make_image_dataset

    data = tmp_path / "data"
    for split, count in (("train", 6), ("val", 2)):  # no test folder: the test share still carves one
        make_image_dataset(data / "given" / split, {"red": count, "blue": count}, size=(16, 16))
    monkeypatch.setenv("FLORA_DATA_DIR", str(data))
    at = _new_run_tab(app, tmp_path / "models")
    assert at.selectbox(key="train_dataset").value.endswith("given")
    assert at.slider(key="train_val_fraction").disabled and not at.slider(key="train_test_fraction").disabled
    assert "brings its own val photos, so the val share does not apply" in texts(at)


def test_a_dataset_without_a_split_offers_both_shares(app):
    at = _new_run_tab(app)
    assert not at.slider(key="train_val_fraction").disabled and not at.slider(key="train_test_fraction").disabled
    assert "share does not apply" not in texts(at)


def test_with_a_ray_cluster_configured_the_form_offers_to_train_there(app, monkeypatch):
    monkeypatch.setenv("FLORA_RAY_ADDRESS", "10.0.0.7:6379")
    at = _new_run_tab(app)
    assert at.toggle(key="train_on_ray").value and at.text_input(key="train_ray_address").value == "10.0.0.7:6379"
    assert "storage every node mounts" in texts(at)
    assert any(code.value.endswith(" --ray 10.0.0.7:6379") for code in at.code)  # the terminal's same run
    at.toggle(key="train_on_ray").set_value(False).run()
    assert at.text_input(key="train_ray_address").disabled
    assert not any("--ray" in code.value for code in at.code)


def test_without_a_ray_cluster_the_form_says_nothing_of_it(app, monkeypatch):
    monkeypatch.delenv("FLORA_RAY_ADDRESS", raising=False)
    at = _new_run_tab(app)
    assert not [t for t in at.toggle if t.key == "train_on_ray"]


def test_runs_from_the_command_line_and_the_app_show_one_owner(app, workspace, tmp_path):
    """The walk: CLI runs were "root"'s and app runs "local"'s in the same table; both are the person here."""
    import contextlib
    import io
    import json

    from core.cli import main as cli
    from core.runs.record import CONFIG_FILE

    models = tmp_path / "models"
    copy_run(workspace["store"].run_dir(workspace["run_id"]), models / workspace["run_id"])
    copy_run(workspace["store"].run_dir(workspace["run_id"]), models / "c11c11c11c11")
    config = json.loads((models / "c11c11c11c11" / CONFIG_FILE).read_text())
    config["owner"] = "root"  # as `python -m core train` records it, run as root
    (models / "c11c11c11c11" / CONFIG_FILE).write_text(json.dumps(config))
    at = app("train", models_dir=models)
    table = table_with(at, "run", "state", "id")
    assert len(table) == 2 and "owner" not in table.columns, "one person: no owner column to tell apart"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli(["runs", "--json", "--models-dir", str(models)]) == 0
    assert {row["owner"] for row in json.loads(out.getvalue())} == {"local"}
    others = tmp_path / "others"  # somebody else's run beside them: the column is back, each person named once
    copy_run(models, others)
    config["owner"] = "alice"
    (others / "c11c11c11c11" / CONFIG_FILE).write_text(json.dumps(config))
    at = app("train", models_dir=others)
    assert sorted(table_with(at, "run", "owner", "id")["owner"]) == ["alice", "local"]


def test_the_split_seed_is_empty_unless_set_and_then_keeps_the_split(app):
    at = _new_run_tab(app)
    field = at.number_input(key="train_split_seed")
    assert field.value is None and field.placeholder == "same as the seed"
    assert "--split-seed" not in at.code[-1].value
    field.set_value(7).run()
    assert "--split-seed 7" in at.code[-1].value
    assert at.session_state["train_form_values"]["split_seed"] == 7
    at.number_input(key="train_split_seed").set_value(None).run()
    assert "split_seed" not in at.session_state["train_form_values"]  # unset again: the run id it always had
    at.toggle(key="flora_explain").set_value(True).run()
    try:
        assert "Seed and split seed" in texts(at) and "what chance alone moves" in texts(at)
    finally:
        at.toggle(key="flora_explain").set_value(False).run()
