"""Serve page: the start form, aliases moved from the UI, the export section, a dead server shown failed,
a running one with its models and how far their out-of-distribution flag holds."""

from __future__ import annotations

import shutil
import time

from core.processes import RunState
from core.serving.aliases import AliasStore
from core.serving.job import ServerStatus, server_folder
from tests.pages.conftest import texts


def copy_store(workspace, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(workspace["store"].run_dir(workspace["run_id"]), models / workspace["run_id"])
    return models


def test_start_form_aliases_and_exports(app, workspace, tmp_path):
    models = copy_store(workspace, tmp_path)
    at = app("serve", models_dir=models)
    shown = texts(at)
    assert "Open Inference Protocol" in shown
    assert any(b.label == "Start server" for b in at.button)
    at.text_input(key="serve_alias_name").set_value("production")
    next(b for b in at.button if b.label == "Point alias").click().run()
    assert not at.exception
    assert AliasStore(models).get("production") == workspace["run_id"]
    assert "**production** now points at run" in texts(at)
    assert at.selectbox(key="serve_export_format").value == "onnx"
    assert "No export of this run yet." in texts(at)
    assert "corrected photo(s) kept" in texts(at)


def test_a_server_whose_process_died_is_shown_failed(app, workspace, tmp_path):
    models = copy_store(workspace, tmp_path)
    folder = server_folder(models)
    folder.directory.mkdir(parents=True)
    folder.log_path.write_text("Traceback: boom\n")
    folder.write(
        ServerStatus(state=RunState.RUNNING, pid=999_999, queued_at=time.time() - 100, url="http://127.0.0.1:8599")
    )
    at = app("serve", models_dir=models)
    assert "The last server failed" in texts(at)
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
            state=RunState.RUNNING,
            pid=os.getpid(),  # alive: this test's own process stands in for the server's
            pid_start=process_start_time(os.getpid()),
            url="http://127.0.0.1:8599",
            ready=True,
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
