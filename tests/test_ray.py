"""Issue 20.2: Flora on a real local Ray cluster (a head and a second node on this machine, 1 CPU each)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from core.bench.ray_local import LocalRayCluster
from tests.conftest import PROJECT_ROOT
from tests.core_process import run_core

pytest.importorskip("ray")
pytestmark = pytest.mark.xdist_group("ray")  # one cluster at a time on 2 cores: these tests share a worker


@pytest.fixture(scope="module")
def ray_cluster():
    cluster = LocalRayCluster().start(nodes=2)
    try:
        yield cluster
    finally:
        cluster.stop()  # every node by its process group


def _predict(trained_run, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLORA_DATA_DIR": str(trained_run["data_root"])}
    env.pop("FLORA_RAY_ADDRESS", None)
    command = ["predict", trained_run["run_id"], str(trained_run["dataset"]), *extra]
    return run_core(*command, "--models-dir", str(trained_run["models_root"]), env=env, timeout=600)


@pytest.mark.slow
def test_batch_prediction_on_the_cluster_gives_the_local_table_in_path_order(ray_cluster, trained_run, tmp_path):
    import pandas as pd

    (trained_run["dataset"] / "red" / "notes.png").write_bytes(b"not a photo")  # a bad file: a row with its reason
    try:
        local = _predict(trained_run, "--csv", str(tmp_path / "local.csv"), "--top-k", "2")
        on_ray = _predict(
            trained_run, "--ray", ray_cluster.address, "--csv", str(tmp_path / "ray.csv"), "--top-k", "2",
            "--parquet", str(tmp_path / "ray.parquet"),
        )  # fmt: skip
    finally:
        (trained_run["dataset"] / "red" / "notes.png").unlink()
    assert local.returncode == 1 == on_ray.returncode, on_ray.stderr[-3000:]  # 1: one file was not a photo
    assert "Traceback" not in local.stderr + on_ray.stderr, on_ray.stderr[-3000:]
    assert f"Ray at {ray_cluster.address}:" in on_ray.stderr and "model actor(s) (1 CPU each) on 2 node(s)" in (
        on_ray.stderr
    )
    a, b = pd.read_csv(tmp_path / "local.csv"), pd.read_csv(tmp_path / "ray.csv")
    assert len(a) == 57 and list(b["path"]) == list(a["path"])  # every file, in the local path's order
    assert list(b.columns) == list(a.columns)
    for column in ("label_1", "probability_1", "label_2", "probability_2", "error"):
        assert b[column].fillna("").tolist() == a[column].fillna("").tolist(), column
    np.testing.assert_allclose(b["ood_score"].fillna(0), a["ood_score"].fillna(0), rtol=1e-5)
    # The flag is the score against a threshold: a photo whose score sits at the threshold (to its 6th digit)
    # may land on either side; any other photo is flagged alike.
    flipped = a[a["out_of_distribution"].fillna("") != b["out_of_distribution"].fillna("")].index
    assert len(flipped) <= 1, a.loc[flipped]
    assert "not an image" in b.set_index("path").loc[str(trained_run["dataset"] / "red" / "notes.png"), "error"]
    parquet = pd.read_parquet(tmp_path / "ray.parquet")
    assert parquet["path"].tolist() == list(a["path"]) and parquet["probability_1"].dtype == "float64"


@pytest.mark.slow
def test_batch_prediction_without_a_cluster_address_says_how_to_give_one(trained_run):
    env_free = _predict(trained_run, "--ray")
    assert env_free.returncode != 0 and "pass --ray ADDRESS or set FLORA_RAY_ADDRESS" in env_free.stderr


def _train(tmp_path, dataset, address: str, *extra: str, env_extra: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, **(env_extra or {})}
    env.pop("FLORA_RAY_ADDRESS", None)
    command = [sys.executable, "-m", "core", "train", str(dataset), "--weights", "none", "--image-size", "32"]
    command += ["--batch-size", "8", "--head", "8", "--ray", address, "--models-dir", str(tmp_path / "models")]
    command += ["--data-dir", str(tmp_path / "data"), *extra]
    return subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
def test_a_run_trains_as_a_ray_task_on_a_node_and_shows_like_any_run(ray_cluster, tmp_path):
    from core.runs.store import RunStore
    from tests.conftest import make_image_dataset

    dataset = make_image_dataset(tmp_path / "photos", {"red": 8, "green": 8, "blue": 8}, size=(24, 24))
    process = _train(tmp_path, dataset, ray_cluster.address, "--epochs", "2")
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    run_id = out.strip().splitlines()[-1]
    run = RunStore(tmp_path / "models").get(run_id)
    assert run.state == "done" and re.fullmatch(r"Ray node [\d.]+ \([0-9a-f]{8}\)", run.status.node)
    assert run.status.pid == process.pid  # the submitting process owns it while Ray trains it
    log = (run.directory / "train.log").read_text()
    assert f"training on {run.status.node}" in log and "test accuracy" in log  # the node's own log lines
    assert "submitted to Ray at" in err and "asking for 1 CPU(s)" in err


@pytest.mark.slow
def test_a_node_that_dies_during_a_run_marks_it_failed_with_the_reason(ray_cluster, tmp_path):
    import time

    from core.runs.store import RunStore
    from tests.conftest import make_image_dataset

    big = ray_cluster.add_node(cpus=2)  # the only node with 2 CPUs: the run's task must land there
    dataset = make_image_dataset(tmp_path / "photos", {"red": 8, "green": 8, "blue": 8}, size=(24, 24))
    slow = ["--epochs", "1", "--fine-tune-epochs", "500", "--patience", "0", "--no-feature-cache"]  # minutes
    process = _train(tmp_path, dataset, ray_cluster.address, *slow, env_extra={"FLORA_RAY_CPUS": "2"})
    store = RunStore(tmp_path / "models")
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            runs = store.list()
            if runs and runs[0].status.node and runs[0].status.epoch:
                break  # training on the node, an epoch under way
            assert process.poll() is None, process.communicate()[1][-3000:]
            time.sleep(1)
        ray_cluster.kill_node(big)
        _out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    run = store.list()[0]
    assert process.returncode != 0 and run.state == "failed"
    assert "died while training it" in run.status.error and run.status.node in run.status.error
    assert "train it again" in err


@pytest.mark.slow
def test_a_sweep_launched_as_the_sweep_page_does_runs_its_trials_on_two_ray_workers(ray_cluster, tmp_path):
    """The Sweep page's launch (its background process, `--ray ADDRESS --ray-workers 2`), the study shared."""
    import time

    from core.settings.config import TrainConfig
    from core.sweeps import SweepStore, default_space, launch, submit
    from tests.conftest import make_image_dataset

    dataset = make_image_dataset(tmp_path / "photos", {"red": 8, "green": 8, "blue": 8}, size=(24, 24))
    fixed = TrainConfig(weights="none", image_size=32, epochs=2, batch_size=8)
    models, data = tmp_path / "models", tmp_path / "data"
    submission = submit(models, dataset, fixed, default_space(fixed), trials=4, timeout=600)
    launch(submission, models, data, ray=(ray_cluster.address, 2))
    store = SweepStore(models)
    deadline = time.time() + 900
    while store.refresh(store.get(submission.sweep.sweep_id)).status.active and time.time() < deadline:
        time.sleep(2)
    sweep = store.get(submission.sweep.sweep_id)
    if sweep.status.active and sweep.status.pid:
        os.kill(sweep.status.pid, 9)  # stop what the test started
    log = store.folder(sweep.sweep_id).log_tail(60)
    assert sweep.status.state == "done" and "on 2 Ray worker(s)" in sweep.status.note, log
    assert "4 trials on 2 Ray workers" in log
    from core.sweeps.trials import open_study

    trials = open_study(sweep)[0].get_trials(deepcopy=False)
    assert len([t for t in trials if t.state.name == "COMPLETE"]) == 4
    workers = {t.user_attrs.get("worker", "").split(" on ")[0] for t in trials}
    assert workers == {"worker 1", "worker 2"}  # both ran trials, each named
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4  # no two workers drew the same settings
    assert not (sweep.directory / "features.npz").exists()  # the shared features are removed after


@pytest.mark.slow
def test_stop_reaches_a_run_training_on_a_ray_node_and_one_waiting_in_line_for_the_cluster(ray_cluster, tmp_path):
    """The Train page's Stop writes the run's stop flag in the shared folder; the task on the node reads it. A run
    the fair line holds back (the cluster is full) is withdrawn before Ray ever sees it."""
    import time

    from core.runs.store import RunStore
    from tests.conftest import make_image_dataset

    dataset = make_image_dataset(tmp_path / "photos", {"red": 8, "green": 8, "blue": 8}, size=(24, 24))
    slow = ["--epochs", "1", "--fine-tune-epochs", "500", "--patience", "0", "--no-feature-cache"]
    one_at_a_time = {"FLORA_RAY_MAX_RUNS": "1"}  # the cluster takes one run: a second waits in Flora's line
    process = _train(tmp_path, dataset, ray_cluster.address, *slow, env_extra=one_at_a_time)
    store = RunStore(tmp_path / "models")
    second = None
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            runs = store.list()
            if runs and runs[0].status.node and (runs[0].status.epochs_done or 0) >= 1:
                break
            assert process.poll() is None, process.communicate()[1][-3000:]
            time.sleep(1)
        first = store.list()[0]
        assert first.status.line == "ray" and first.status.submitted_at
        second = _train(tmp_path, dataset, ray_cluster.address, *slow, "--seed", "7", env_extra=one_at_a_time)
        while time.time() < deadline:
            waiting = [run for run in store.list() if run.run_id != first.run_id]
            if waiting and "waiting for the Ray cluster: 1st in line" in (waiting[0].status.stage or ""):
                break
            assert second.poll() is None, second.communicate()[1][-3000:]
            time.sleep(0.5)
        store.request_stop(waiting[0].run_id)  # Stop in Flora's line: withdrawn, never handed to Ray
        _, second_err = second.communicate(timeout=120)
        assert second.returncode == 0, second_err[-3000:]
        store.request_stop(first.run_id)
        _, err = process.communicate(timeout=300)
    finally:
        for started in (process, second):
            if started is not None and started.poll() is None:
                started.kill()
    run = store.get(first.run_id)
    assert process.returncode == 0, err[-3000:]
    assert run.state == "stopped" and run.status.node and (run.directory / "model.keras").exists()
    withdrawn = store.get(waiting[0].run_id)
    assert withdrawn.state == "stopped" and withdrawn.status.submitted_at is None and withdrawn.status.node is None
    assert "stopped while waiting in line for the Ray cluster" in withdrawn.status.note
