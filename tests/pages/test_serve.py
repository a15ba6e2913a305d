"""Serve page: the start form, aliases moved from the UI, the export section, a dead server shown failed,
a running one with its models and how far their out-of-distribution flag holds."""

from __future__ import annotations

import time

import pytest

from core.processes import JobState
from core.runs.store import RunStore
from core.serving.aliases import AliasStore
from core.serving.job import ServerStatus, server_folder
from pages.ui.navigation import page_file
from pages.ui.plain import md
from tests.conftest import copy_run
from tests.pages.conftest import table_with, texts


def copy_store(workspace, tmp_path):
    models = tmp_path / "models"
    copy_run(workspace["store"].run_dir(workspace["run_id"]), models / workspace["run_id"])
    return models


def test_start_form_aliases_and_exports(app, workspace, tmp_path):
    models = copy_store(workspace, tmp_path)
    at = app("serve", models_dir=models)
    assert any(b.label == "Start server" for b in at.button)
    assert at.multiselect(key="serve_models").value == [workspace["run_id"]]  # no alias yet: the run itself
    assert "No alias yet." in texts(at)
    # As after a server ran: the picker was not drawn meanwhile, so Streamlit dropped its value; it came back empty
    after = app(None, models_dir=models)
    after.session_state["serve_models_default"] = [workspace["run_id"]]
    after.switch_page(page_file("serve"))
    after.run()
    assert after.multiselect(key="serve_models").value == [workspace["run_id"]]  # walk 55
    at.multiselect(key="serve_models").set_value([])
    next(b for b in at.button if b.label == "Start server").click().run()
    assert "Pick at least one model to serve above." in [e.value for e in at.error]  # not a silent click
    at.text_input(key="serve_alias_name").set_value("staging")
    next(b for b in at.button if b.label == "Point alias").click().run()
    assert not at.exception
    assert AliasStore(models).get("staging") == workspace["run_id"]
    assert f"**staging** points at run {workspace['run_id']}" in texts(at)
    at.run()
    aliases = table_with(at, "alias", "run", "previous")
    assert aliases["alias"].tolist() == ["staging"] and workspace["run_id"][:6] in aliases["run"].iloc[0]
    assert at.multiselect(key="serve_models").options[0] == f"staging → run {workspace['run_id']} (alias)"  # first
    assert at.multiselect(key="serve_models").value == ["staging"]  # the picker follows the new alias (the walk)
    # no server: the alias's line says so (no "now serves" before anything serves it)
    assert f"**staging** points at run {workspace['run_id']}. No server is running" in texts(at)
    assert at.selectbox(key="serve_export_format").value == "onnx"
    assert "No export of this run yet." in texts(at)
    # the feedback section counts this run's dataset's corrected photos (none) and offers no retrain without them
    assert "0 feedback photo(s) (predictions corrected on Predict or through the server" in texts(at)
    assert "kept for **colours** (0 train, 0 val; never test)." in texts(at)
    assert next(b for b in at.button if b.label == "Retrain with feedback").disabled


def test_a_server_whose_process_died_is_shown_failed(app, workspace, tmp_path):
    models = copy_store(workspace, tmp_path)
    folder = server_folder(models)
    folder.directory.mkdir(parents=True)
    folder.log_path.write_text("Traceback: boom\n")
    folder.write(
        ServerStatus(state=JobState.RUNNING, pid=999_999, queued_at=time.time() - 100, url="http://127.0.0.1:8599")
    )
    at = app("serve", models_dir=models)
    failed = [e.value for e in at.error if e.value.startswith("The last server failed")]
    assert failed and md("(pid 999999) ended without finishing") in failed[0] and md("Traceback: boom") in failed[0]
    assert any(b.label == "Start server" for b in at.button)


def test_a_running_server_shows_its_models_and_how_far_their_ood_flag_holds(app, workspace, tmp_path):
    import os

    from core.processes import process_start_time

    models = copy_store(workspace, tmp_path)
    folder = server_folder(models)
    folder.directory.mkdir(parents=True)
    summary = (
        "The check uses the energy of the logits. It flags 5% of the test photos and 80% of images from elsewhere."
    )
    batching = {"mean_batch": 3.5, "batches": 4}
    folder.write(
        ServerStatus(
            state=JobState.RUNNING,
            pid=os.getpid(),  # alive: this test's own process stands in for the server's
            pid_start=process_start_time(os.getpid()),
            url="http://127.0.0.1:8599",
            ready=True,
            names=["production"],
            models=[
                {
                    "name": "production",
                    "run_id": workspace["run_id"],
                    "alias": True,
                    "ood_method": "energy",
                    "ood_summary": summary,
                    "batching": batching,
                    "queued": 0,
                }
            ],
            counters={"requests": 14, "images": 14, "rate": 1.4},
        )
    )
    at = app("serve", models_dir=models)
    assert not at.exception, [e.value for e in at.exception]
    shown = texts(at)
    assert "Serving at **http://127.0.0.1:8599**" in shown
    assert f"**production**, 'looks like no class it knows': {summary}" in shown
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Requests"], metrics["Images"], metrics["Requests / s (10 s)"]) == ("14", "14", "1.4")
    served = table_with(at, "name", "run", "mean batch")
    row = served.to_dict("records")[0]
    assert (row["name"], row["run"], row["mean batch"], row["batches"]) == ("production", workspace["run_id"], 3.5, 4)
    # the TF Serving example sends the body from a file: a photo's base64 on the command line failed over ~96 KB
    tf_code = next(code.value for code in at.code if ":predict" in code.value)
    photo = sorted((workspace["dataset"] / "blue").iterdir())[0].resolve()  # one of the dataset's own photos
    assert "--data-binary @request.json" in tf_code and f"base64 -w0 {photo};" in tf_code
    snippets = [c.value for c in at.code]
    assert f'curl -F file=@{photo} "http://127.0.0.1:8599/predict?model=production&top_k=3"' in snippets
    assert any(f'open({str(photo)!r}, "rb")' in c for c in snippets)
    assert not any("rose" in c for c in snippets)
    said = next(c.value for c in at.caption if c.value.startswith("The examples send"))
    assert said.startswith("The examples send `img_000.png`, a photo of **blue** from the dataset colours")
    assert "any photo of its classes (blue, crimson, green, red)" in said
    assert any('client.infer("production", [photo])' in c for c in snippets)
    assert not any("Authorization" in c for c in snippets)  # the server runs without a key


def running_server(models, run_id, names, answering, grpc=None):
    """A status.json as a live server writes it: this test's process stands in for the server's."""
    import os

    from core.processes import process_start_time

    folder = server_folder(models)
    folder.directory.mkdir(parents=True, exist_ok=True)
    batching = {"mean_batch": 1.0, "batches": 1}
    folder.write(
        ServerStatus(
            state=JobState.RUNNING,
            pid=os.getpid(),
            pid_start=process_start_time(os.getpid()),
            url="http://127.0.0.1:8599",
            grpc=grpc,
            ready=True,
            names=names,
            models=[
                {"name": n, "run_id": answering[n], "alias": not n[0].isdigit(), "batching": batching, "queued": 0}
                for n in names
            ],
        )
    )


def test_snippets_and_promote_name_what_the_server_answers_with(app, workspace, tmp_path):
    """Issue 32: the snippets name production (not the newest run), and a moved alias says 'switching' until the
    server answers with the new run; an alias the server does not serve is said to be unserved."""
    models = copy_store(workspace, tmp_path)
    old, new = workspace["run_id"], "feed0000beef"
    copy_run(models / old, models / new)
    AliasStore(models).set("production", old)
    running_server(models, old, [new, "production"], {new: new, "production": old})
    at = app("serve", models_dir=models)
    assert not at.exception, [e.value for e in at.exception]
    snippets = [c.value for c in at.code]
    assert any("/predict?model=production&top_k=3" in c for c in snippets)  # production, not the newest run
    assert at.selectbox(key="serve_try_model").value == "production"
    assert f"The server answers **production** with run {old}." in texts(at)
    assert not any("grpcclient" in c for c in snippets)  # no gRPC port: no gRPC tab
    # the alias moves: until the server's status shows the new run answering, it is 'switching'
    AliasStore(models).set("production", new)
    at.run()
    assert any(f"Switching **production**: the server is loading run {new}" in i.value for i in at.info)
    running_server(models, new, [new, "production"], {new: new, "production": new}, grpc="127.0.0.1:8601")
    at.run()
    assert f"The server answers **production** with run {new}." in texts(at)
    grpc = next(c.value for c in at.code if "grpcclient" in c.value)  # served over gRPC too: its snippet
    assert 'InferenceServerClient("127.0.0.1:8601")' in grpc and 'client.infer("production", [photo])' in grpc
    # a server started with a run id does not follow production: said plainly
    running_server(models, old, [old], {old: old})
    at.run()
    warning = next(w.value for w in at.warning if "does not serve" in w.value)
    assert f"**production** points at run {new}, but the running server does not serve **production**" in warning
    assert any(f"/predict?model={old}&top_k=3" in c.value for c in at.code)


def test_the_alias_form_acts_on_its_button_only(app, workspace, tmp_path):
    models = copy_store(workspace, tmp_path)
    at = app("serve", models_dir=models)
    forms = {f.proto.form.form_id: f.proto.form for f in at.get("form")}
    assert forms["serve_alias_form"].enter_to_submit is False  # Enter in the name field points nothing
    assert forms["serve_start"].enter_to_submit is False


def test_the_start_form_takes_an_api_key_keeps_the_last_port_and_enter_does_not_start(
    app, workspace, tmp_path, monkeypatch
):
    from core import processes

    models = copy_store(workspace, tmp_path)
    folder = server_folder(models)
    folder.directory.mkdir(parents=True)
    folder.write(ServerStatus(state=JobState.STOPPED, port=8612, finished_at=time.time()))
    launched = {}
    monkeypatch.setattr(
        processes, "spawn_detached", lambda command, log, env=None: launched.update(env=env) or (0, None)
    )
    at = app("serve", models_dir=models)
    assert at.number_input(key="serve_port").value == 8612  # before: back to 8500 after a Stop
    at.text_input(key="serve_api_key").set_value("s3cret")
    next(b for b in at.button if b.label == "Start server").click().run()
    assert launched["env"] == {"FLORA_API_KEY": "s3cret"}
    assert "s3cret" not in (folder.status_path.read_text())


def test_the_page_follows_an_alias_moved_from_the_command_line(app, workspace, tmp_path, rerun_timed_fragments):
    """Issue 39: after `core alias production B` the open page kept a green "answers production with run A" for
    over 100 s. The alias lines refresh on their own timer, so the open page shows the move and then the switch."""
    import contextlib
    import io

    from core.cli import main as cli

    models = copy_store(workspace, tmp_path)
    old, new = workspace["run_id"], "feed0000beef"
    copy_run(models / old, models / new)
    AliasStore(models).set("production", old)
    running_server(models, old, ["production"], {"production": old})
    at = app("serve", models_dir=models)
    assert f"The server answers **production** with run {old}." in texts(at)
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli(["alias", "production", new, "--models-dir", str(models)]) == 0  # from the command line
    rerun_timed_fragments(at)  # the open page, not reloaded: only what refreshes on its own
    assert not at.exception, [e.value for e in at.exception]
    assert f"answers **production** with run {old}" not in texts(at)
    assert any(f"Switching **production**: the server is loading run {new}" in i.value for i in at.info)
    assert table_with(at, "alias", "run", "previous")["previous"].tolist() == [old]
    running_server(models, new, ["production"], {"production": new})  # the server has switched
    rerun_timed_fragments(at)
    assert f"The server answers **production** with run {new}" in texts(at)
    assert any(f"it answers with run {new} now" in c.value for c in at.caption)  # the snippets' line too


@pytest.mark.slow
def test_the_web_export_is_made_and_offered_from_the_serve_page(app, workspace, tmp_path):
    """A newcomer's walk: pick web, export, read how to open it, download the zip."""
    from pages.ui.serving.sections import WEB_HOW_TO

    models = copy_store(workspace, tmp_path)
    at = app("serve", models_dir=models)
    at.selectbox(key="serve_export_format").set_value("web").run()
    next(b for b in at.button if b.label == "Export and verify").click().run(timeout=600)
    assert not at.exception, [e.value for e in at.exception]
    said = "web export (written by Flora's own ONNX converter) verified with onnxruntime"
    assert any(said in s.value for s in at.success), [e.value for e in at.error]
    assert WEB_HOW_TO in texts(at)
    folder = models / workspace["run_id"] / "exports" / "web"
    assert (folder / "index.html").is_file() and (folder / "vendor" / "ort.wasm.min.js").is_file()
    assert any(b.label == "Download web" for b in at.get("download_button"))


def test_the_snippets_state_the_set_promise_as_an_average_beside_the_held_out_count(app, workspace, tmp_path):
    """Before: 'hold the right one at least 9 times in 10' while the run's held-out sets held 16 of 18 (89%)."""
    import json

    from core.results.probabilities import conformal

    models = copy_store(workspace, tmp_path)
    run_id = workspace["run_id"]
    conformal.fit_run(models / run_id, level=0.8, method="aps")
    stored = models / run_id / "conformal.json"
    data = json.loads(stored.read_text())
    data["by_level"]["90"]["by_size"] = {"1": [5, 7], "4": [11, 11]}  # the walk's figures: 16 of 18 right
    stored.write_text(json.dumps(data))
    running_server(models, run_id, [run_id], {run_id: run_id})
    at = app("serve", models_dir=models)
    assert not at.exception, [e.value for e in at.exception]
    said = texts(at)
    assert "at least 9 times in 10" not in said
    assert "on average over many photos like the calibration ones (half of the run's test photos), sets at 90%" in said
    assert (
        "On this run's 18 held-out test photos, sets at 90% held the right class 16 of 18 (89%): below 90%, but "
        "within the sampling slack" in said
    )
    assert "on 61% of photos the set holds all 4 classes" in said


def test_the_snippets_say_how_to_answer_only_when_sure_and_what_a_saved_threshold_holds_back(app, workspace, tmp_path):
    """Walk 52: Serve had no word of `max_error`, and its own example came back held back by a saved threshold while
    its Python example read `label` alone."""
    from core.results.probabilities import class_thresholds

    models = copy_store(workspace, tmp_path)
    run_id = workspace["run_id"]
    run = RunStore(models).get(run_id)
    class_thresholds.save(run.directory, {run.classes[0]: 0.7}, run.classes, by="local")
    running_server(models, run_id, [run_id], {run_id: run_id})
    at = app("serve", models_dir=models)
    assert not at.exception, [e.value for e in at.exception]
    said = texts(at)
    assert "Add `&max_error=0.05` to answer only when sure" in said and "so read `abstained` first" in said
    assert f"saved class thresholds ({run.classes[0]} 0.70, set on Evaluate)" in said
    assert "A held-back answer still names its best guess in `label`" in said
