"""`core train --track` and `core sweep --track` against a real `mlflow server` on loopback, started by the test
(its own port, stopped by its pid). The server runs from its own environment (.venv-mlflow, made by
`make mlflow-server`; .ci/run makes it): the full mlflow package would move pyarrow in Flora's."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from core.bench.common import free_port, wait_answering
from core.processes import JobState
from core.runs.store import RunStore
from core.tracking import background
from core.tracking.background import track_later
from core.train import jobs
from tests.conftest import PROJECT_ROOT, copy_run, make_image_dataset
from tests.core_process import run_core

pytestmark = pytest.mark.slow
mlflow = pytest.importorskip("mlflow")


def mlflow_executable() -> str:
    for candidate in (os.environ.get("FLORA_MLFLOW_SERVER"), PROJECT_ROOT / ".venv-mlflow" / "bin" / "mlflow"):
        if candidate and Path(candidate).exists():
            return str(candidate)
    message = "no MLflow server environment: make mlflow-server (builds .venv-mlflow)"
    if os.environ.get("FLORA_REQUIRE_MLFLOW"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on 127.0.0.1 (SQLite store, artifacts served by it), its process group stopped by pid."""

    base = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    command = [mlflow_executable(), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{base / 'mlflow.db'}", "--artifacts-destination", str(base / "art")]
    log = open(base / "server.log", "wb")  # noqa: SIM115 (the server's lifetime)
    # MLflow 3 also starts a Huey job queue (two consumer processes and their workers) for its own server-side
    # jobs; Flora logs runs and models only, so the test's server runs without it (about 50 CPU-s of the suite).
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = subprocess.Popen(command, cwd=base, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_answering(f"{uri}/health", process, 240, base / "server.log", "the mlflow server")
        yield uri
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the server and its workers: the group of the pid we started
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        log.close()


def _flora(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_core(*args, env={**os.environ, **(env or {})})  # forked from the worker's warm launcher


def test_a_tracked_run_shows_in_mlflow_and_its_model_predicts_like_core_predict(mlflow_server, tmp_path, capsys):
    dataset = make_image_dataset(tmp_path / "data" / "petals", {"blue": 12, "red": 12, "green": 12}, seed=3)
    models = tmp_path / "models"
    common = ["--models-dir", str(models), "--data-dir", str(tmp_path / "data")]
    train = ["train", str(dataset), "--image-size", "32", "--weights", "none", "--epochs", "3", "--batch-size", "8"]
    done = _flora(*train, "--track", mlflow_server, "--json", *common)
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = json.loads(done.stdout)["run_id"]

    client = mlflow.MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("flora-petals")
    (found,) = client.search_runs([experiment.experiment_id], f"tags.`flora.run_id` = '{run_id}'")
    assert found.info.status == "FINISHED"
    said = json.loads(done.stdout)["mlflow"]
    assert said["run_id"] == found.info.run_id and said["tracking_uri"] == mlflow_server
    assert not said["already_logged"] and said["url"].endswith(f"/runs/{found.info.run_id}")
    assert found.data.params["image_size"] == "32" and found.data.params["weights"] == "none"
    assert 0.0 <= found.data.metrics["test_accuracy"] <= 1.0 and "test_macro_f1" in found.data.metrics
    assert found.data.metrics["temperature"] > 0
    history = client.get_metric_history(found.info.run_id, "val_loss")
    assert [m.step for m in history] == [1, 2, 3]
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"confusion_matrix.png", "curves.png", "evaluation.json", "metrics.jsonl"} <= artifacts

    photos = sorted((dataset / "red").iterdir())[:3] + sorted((dataset / "blue").iterdir())[:2]
    from core.cli import main  # core predict's answers, through its main in this process (a Keras import less)

    assert main(["predict", run_id, *map(str, photos), "--json", "--top-k", "3", *common]) == 0
    want = [{t["label"]: t["probability"] for t in r["top"]} for r in json.loads(capsys.readouterr().out)["results"]]
    import pandas as pd

    from core.tracking.mlflow_log import tracking_at

    with tracking_at(mlflow_server):  # not the whole worker's: the tests after this one in it track nothing
        model = mlflow.pyfunc.load_model(f"runs:/{found.info.run_id}/model")
    answers = model.predict(pd.DataFrame({"image": [p.read_bytes() for p in photos]}))
    for (_, row), probabilities in zip(answers.iterrows(), want, strict=True):
        assert row["label"] == max(probabilities, key=probabilities.get)
        for name, p in probabilities.items():
            assert row[name] == pytest.approx(p, abs=1e-5)
    assert np.allclose(answers[["blue", "green", "red"]].sum(axis=1), 1.0, atol=1e-5)


def test_a_cached_run_is_logged_once_when_tracked_later(mlflow_server, tmp_path, monkeypatch, capsys):
    dataset = make_image_dataset(tmp_path / "data" / "stems", {"blue": 8, "red": 8}, seed=4)
    common = ["--models-dir", str(tmp_path / "models"), "--data-dir", str(tmp_path / "data")]
    train = ["train", str(dataset), "--image-size", "32", "--weights", "none", "--epochs", "1", "--json", *common]
    from core.cli import main  # the untracked first run trains in this process: the tracked one below is the subject

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    assert main(list(train)) == 0
    assert "mlflow" not in json.loads(capsys.readouterr().out)

    tracked = _flora(*train, "--track", mlflow_server)  # the same settings: cached, and logged now
    assert tracked.returncode == 0, tracked.stderr[-3000:]
    result = json.loads(tracked.stdout)
    assert result["cached"] and result["mlflow"]["tracking_uri"] == mlflow_server
    assert result["mlflow"]["already_logged"] is False
    client = mlflow.MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("flora-stems")
    (found,) = client.search_runs([experiment.experiment_id], f"tags.`flora.run_id` = '{result['run_id']}'")
    assert found.info.run_id == result["mlflow"]["run_id"] and found.info.status == "FINISHED"
    assert "test_accuracy" in found.data.metrics

    again = _flora(*train[:-5], "--track", mlflow_server, *common)  # text output: the MLflow run on stderr
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.strip() == result["run_id"]
    assert f"already logged to {mlflow_server} as MLflow run {found.info.run_id}" in again.stderr
    assert len(client.search_runs([experiment.experiment_id], f"tags.`flora.run_id` = '{result['run_id']}'")) == 1
    status = json.loads((tmp_path / "models" / result["run_id"] / "status.json").read_text())
    assert status["mlflow"][mlflow_server]["run_id"] == found.info.run_id

    # The Train page's launch of these settings with its MLflow field filled: cached, so logged in the background
    # (the same server under another name is another tracking URI; an unreachable one fails with its reason).
    store = RunStore(tmp_path / "models")
    config = store.get(result["run_id"]).train_config
    other_name = mlflow_server.replace("127.0.0.1", "localhost")
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"  # the unreachable URI fails at once (the child inherits it)
    try:
        for uri in (other_name, "http://127.0.0.1:9"):
            submission = jobs.launch(dataset, config, tmp_path / "models", tmp_path / "data", track=uri)
            assert submission.outcome == jobs.CACHED
            logging = _logging_ended(store, result["run_id"])
            assert logging.note == uri
            if uri == other_name:
                assert logging.state is JobState.DONE, logging.error
                assert store.get(result["run_id"]).status.mlflow[other_name]["run_id"]
                assert (
                    len(client.search_runs([experiment.experiment_id], f"tags.`flora.run_id` = '{result['run_id']}'"))
                    == 2
                )
                assert not track_later(store, result["run_id"], other_name)  # logged there: not again
            else:
                assert logging.state is JobState.FAILED and "127.0.0.1" in logging.error
                assert uri not in store.get(result["run_id"]).status.mlflow
    finally:
        del os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]


def _logging_ended(store, run_id: str, timeout: float = 240):
    deadline = time.time() + timeout
    while True:
        logging = background.status(store.get(run_id))
        if logging is not None and not logging.active:
            return logging
        assert time.time() < deadline, f"the background logging did not end: {logging}"
        time.sleep(0.5)


def test_a_tracked_sweep_logs_its_trials_as_child_runs(mlflow_server, tmp_path):
    dataset = make_image_dataset(tmp_path / "data" / "sepals", {"blue": 10, "red": 10}, seed=5)
    common = ["--models-dir", str(tmp_path / "models"), "--data-dir", str(tmp_path / "data")]
    sweep = ["sweep", str(dataset), "--trials", "2", "--image-size", "32", "--weights", "none", "--epochs", "2"]
    done = _flora(*sweep, "--json", *common, env={"MLFLOW_TRACKING_URI": mlflow_server})
    assert done.returncode == 0, done.stderr[-3000:]
    sweep_id = json.loads(done.stdout)["sweep_id"]
    client = mlflow.MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("flora-sepals")
    (parent,) = client.search_runs(
        [experiment.experiment_id],
        f"tags.`flora.sweep_id` = '{sweep_id}' and tags.`mlflow.runName` = 'sweep " + sweep_id + "'",
    )
    children = client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(c.data.tags["mlflow.runName"] for c in children) == ["trial 0", "trial 1"]
    assert all("val_loss" in c.data.metrics and c.data.params for c in children)


@pytest.mark.parametrize("before", [None, "http://127.0.0.1:9/theirs"])
def test_logging_leaves_the_process_tracking_uri_as_it_found_it(monkeypatch, tmp_path, before):
    """A worker that had logged once went on logging every later `core train` in it to a server long stopped."""
    from mlflow.tracking._tracking_service import utils

    from core.tracking.mlflow_log import tracking_at

    if before is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", before)
    monkeypatch.setattr(utils, "_tracking_uri", None)
    ours = (tmp_path / "mlruns").as_uri()  # a local store: nothing to reach
    with tracking_at(ours):
        assert mlflow.get_tracking_uri() == ours
        assert os.environ["MLFLOW_TRACKING_URI"] == ours  # what a child process inherits
    assert os.environ.get("MLFLOW_TRACKING_URI") == before and utils._tracking_uri is None


def test_a_server_that_is_down_is_said_at_once_not_after_mlflows_retries(trained_run, tmp_path):
    """`core train --track` on a stopped server waited out MLflow's retries (minutes a request) after its run."""
    from core.tracking.mlflow_log import track_run

    store = RunStore(tmp_path / "models")
    copy_run(trained_run["store"].run_dir(trained_run["run_id"]), tmp_path / "models" / trained_run["run_id"])
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{closed.getsockname()[1]}"
    said = track_run(store, trained_run["run_id"], uri)
    assert said["run_id"] is None and said["error"].startswith("TrackingServerDown: no MLflow tracking server answers")
    assert uri not in (store.get(trained_run["run_id"]).status.mlflow or {})
