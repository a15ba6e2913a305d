"""The server as a background job: started as the app starts it, found again by its status, stopped."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from core.processes import JobState
from core.runs.store import RunStore
from core.serving.aliases import AliasStore
from core.serving.job import launch_server, server_status, stop_server
from tests.conftest import copy_run

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, seconds: float):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError("timed out")


def test_start_use_and_stop_the_background_server(trained_run, tmp_path):
    store = RunStore(tmp_path / "models")
    copy_run(trained_run["store"].run_dir(trained_run["run_id"]), store.run_dir(trained_run["run_id"]))
    AliasStore(store.root).set("production", trained_run["run_id"])
    port, grpc_port = free_port(), free_port()
    status = launch_server(
        store.root, trained_run["data_root"], ["production"], port=port, max_batch=8, grpc_port=grpc_port
    )
    assert status.active and status.url == f"http://127.0.0.1:{port}"
    with pytest.raises(RuntimeError, match="already"):
        launch_server(store.root, trained_run["data_root"], ["production"], port=free_port())
    ready = wait_for(lambda: (s := server_status(store.root)).ready and s, 240)
    assert ready.state is JobState.RUNNING and ready.models[0]["run_id"] == trained_run["run_id"]
    summary = ready.models[0]["ood_summary"]  # the Serve page shows it
    assert "of the run's test photos (its false alarms). How: " in summary
    photo = next((trained_run["dataset"] / "green").iterdir()).read_bytes()
    answer = httpx.post(f"{ready.url}/predict", files={"file": ("g.png", photo)}, timeout=60)
    assert answer.status_code == 200 and answer.json()["results"][0]["label"]
    text = httpx.post(f"{ready.url}/predict", files={"file": ("notes.txt", b"shopping list")}, timeout=60)
    assert text.status_code == 400 and "not an image" in text.json()["error"]
    assert ready.grpc == f"127.0.0.1:{grpc_port}"  # the Serve page shows it beside the URL
    import numpy as np
    import tritonclient.grpc as grpcclient

    rpc = grpcclient.InferenceServerClient(ready.grpc)
    image = grpcclient.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([photo], dtype=np.object_))
    assert rpc.infer("production", [image]).as_numpy("label")[0].decode() == answer.json()["results"][0]["label"]
    rpc.close()
    counted = wait_for(lambda: (s := server_status(store.root)).counters.get("requests", 0) >= 3 and s, 30)
    assert counted.counters["client_errors"] >= 1 and counted.counters["by_protocol"].get("grpc") == 1
    stop_server(store.root)
    stopped = wait_for(lambda: (s := server_status(store.root)).state is JobState.STOPPED and s, 60)
    assert not stopped.active and stopped.finished_at


def test_a_taken_port_is_refused_with_a_clear_reason(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ValueError, match="in use"):
            launch_server(tmp_path / "models", tmp_path / "data", ["production"], port=taken.getsockname()[1])
