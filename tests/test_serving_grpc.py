"""The Open Inference Protocol over gRPC: tritonclient.grpc gets what tritonclient.http gets (probabilities,
labels, the prediction set, the out-of-distribution outputs), metadata and readiness, bad inputs as gRPC status
codes, the same limits; and `core serve --grpc-port` from the command line."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from core.results.probabilities import conformal
from core.runs.store import RunStore
from core.serving.aliases import AliasStore
from core.serving.registry import BatchOptions
from core.serving.server import BackgroundServer, ServerLimits
from tests.conftest import PROJECT_ROOT, copy_run
from tests.test_serving import photos

grpcclient = pytest.importorskip("tritonclient.grpc")
httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402  (after the importorskip)


@pytest.fixture(scope="module")
def both(trained_run, tmp_path_factory):
    """One server, HTTP and gRPC, on a copy of the trained run with prediction sets (80%), aliased production."""
    root = tmp_path_factory.mktemp("grpc") / "models"
    copy_run(trained_run["store"].run_dir(trained_run["run_id"]), root / trained_run["run_id"])
    conformal.fit_run(root / trained_run["run_id"], level=0.8, method="aps")
    AliasStore(root).set("production", trained_run["run_id"])
    data_root = tmp_path_factory.mktemp("grpc-data")
    limits = ServerLimits(max_request_pixels=3_000_000)
    options = BatchOptions(max_batch=16, max_wait_ms=5)
    server = BackgroundServer(
        RunStore(root), ["production"], options, data_root, max_bytes=2_000_000, limits=limits, grpc=True
    )
    with server:
        yield {"server": server, "dataset": trained_run["dataset"], "run_id": trained_run["run_id"]}


def _image_input(module, files):
    data = np.array([f.read_bytes() for f in files], dtype=np.object_)
    tensor = module.InferInput("image", [len(files)], "BYTES")
    tensor.set_data_from_numpy(data)
    return tensor


def test_grpc_answers_as_http_does(both):
    server = both["server"]
    files = photos(both["dataset"], 4)
    http = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    rpc = grpcclient.InferenceServerClient(server.grpc.address)
    try:
        by_http = http.infer("production", [_image_input(httpclient, files)], parameters={"prediction_set": 0.8})
        by_grpc = rpc.infer("production", [_image_input(grpcclient, files)], parameters={"prediction_set": 0.8})
        for name in ("probabilities", "ood_score"):
            np.testing.assert_allclose(by_grpc.as_numpy(name), by_http.as_numpy(name), rtol=1e-6, atol=1e-6)
        for name in ("label", "prediction_set", "out_of_distribution"):
            assert by_grpc.as_numpy(name).tolist() == by_http.as_numpy(name).tolist(), name
        assert by_grpc.as_numpy("probabilities").shape == (4, 4)
        assert all(b'"' in s for s in by_grpc.as_numpy("prediction_set"))  # JSON lists of class names
        # pixels, typed output selection and the request id
        pixels = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
        tensor = grpcclient.InferInput("pixels", list(pixels.shape), "UINT8")
        tensor.set_data_from_numpy(pixels)
        wanted = [grpcclient.InferRequestedOutput("probabilities")]
        answer = rpc.infer("production", [tensor], outputs=wanted, request_id="r-7")
        np.testing.assert_allclose(answer.as_numpy("probabilities"), by_http.as_numpy("probabilities"), atol=1e-5)
        assert answer.as_numpy("label") is None and answer.get_response().id == "r-7"
        # metadata and readiness, as over HTTP
        assert rpc.is_server_live() and rpc.is_server_ready() and rpc.is_model_ready("production")
        meta = rpc.get_model_metadata("production", as_json=True)
        http_meta = http.get_model_metadata("production")
        assert [o["name"] for o in meta["outputs"]] == [o["name"] for o in http_meta["outputs"]]
        assert [i["name"] for i in meta["inputs"]] == ["image", "pixels"]
        assert rpc.get_server_metadata().name == "flora"
    finally:
        rpc.close()
        http.close()
    counters = server.service.counters.to_dict()["by_protocol"]
    assert counters.get("grpc", 0) >= 2 and counters.get("v2", 0) >= 1


def _code(call) -> str:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value.status()


def test_bad_inputs_and_limits_are_grpc_status_codes(both):
    rpc = grpcclient.InferenceServerClient(both["server"].grpc.address)
    files = photos(both["dataset"], 1)
    try:
        assert _code(lambda: rpc.infer("nope", [_image_input(grpcclient, files)])) == "StatusCode.NOT_FOUND"
        assert _code(lambda: rpc.is_model_ready("nope")) == "StatusCode.NOT_FOUND"
        broken = grpcclient.InferInput("image", [1], "BYTES")
        broken.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_))
        assert _code(lambda: rpc.infer("production", [broken])) == "StatusCode.INVALID_ARGUMENT"
        floats = grpcclient.InferInput("pixels", [1, 4, 4, 3], "FP32")
        floats.set_data_from_numpy(np.zeros((1, 4, 4, 3), np.float32))
        assert _code(lambda: rpc.infer("production", [floats])) == "StatusCode.INVALID_ARGUMENT"
        too_many = _image_input(grpcclient, files * 257)
        assert _code(lambda: rpc.infer("production", [too_many])) == "StatusCode.INVALID_ARGUMENT"
        odd_level = {"prediction_set": 0.3}
        code = _code(lambda: rpc.infer("production", [_image_input(grpcclient, files)], parameters=odd_level))
        assert code == "StatusCode.INVALID_ARGUMENT"
        # the same limits as HTTP: the body size (--max-bytes) and the pixels of one request
        big = grpcclient.InferInput("image", [1], "BYTES")
        big.set_data_from_numpy(np.array([os.urandom(2_100_000)], dtype=np.object_))
        assert _code(lambda: rpc.infer("production", [big])) == "StatusCode.RESOURCE_EXHAUSTED"
        wide = grpcclient.InferInput("pixels", [1, 1000, 4000, 3], "UINT8")
        wide.set_data_from_numpy(np.zeros((1, 1000, 4000, 3), np.uint8))
        rpc_large = grpcclient.InferenceServerClient(both["server"].grpc.address)
        try:
            # 12 MB over the 2 MB body limit: refused by size before the pixel limit is reached
            assert _code(lambda: rpc_large.infer("production", [wide])) == "StatusCode.RESOURCE_EXHAUSTED"
        finally:
            rpc_large.close()
        # the decode budget: while other decodes hold it all, a request waits its turn, then UNAVAILABLE (HTTP 503)
        budget = both["server"].service.budget
        wait, budget.wait_seconds = budget.wait_seconds, 0.2
        try:
            with budget.hold(budget.limit):
                code = _code(lambda: rpc.infer("production", [_image_input(grpcclient, files)]))
        finally:
            budget.wait_seconds = wait
        assert code == "StatusCode.UNAVAILABLE"
        # and the server still answers
        assert rpc.infer("production", [_image_input(grpcclient, files)]).as_numpy("probabilities").shape == (1, 4)
    finally:
        rpc.close()


def test_pixels_over_the_request_limit_are_refused(both, tmp_path):
    """A small PNG that holds more pixels than the request limit: refused before decoding, as over HTTP (413)."""
    path = tmp_path / "big.png"
    Image.new("RGB", (2000, 2000), (200, 30, 30)).save(path)  # 4 MP, a few KB
    rpc = grpcclient.InferenceServerClient(both["server"].grpc.address)
    try:
        assert _code(lambda: rpc.infer("production", [_image_input(grpcclient, [path])])) == (
            "StatusCode.RESOURCE_EXHAUSTED"
        )
    finally:
        rpc.close()


def test_an_api_key_is_asked_of_grpc_calls_but_health(trained_run, tmp_path):
    root = tmp_path / "models"
    copy_run(trained_run["store"].run_dir(trained_run["run_id"]), root / trained_run["run_id"])
    with BackgroundServer(RunStore(root), [trained_run["run_id"]], api_key="s3cret", grpc=True) as server:
        rpc = grpcclient.InferenceServerClient(server.grpc.address)
        try:
            assert rpc.is_server_live()
            files = photos(trained_run["dataset"], 1)
            code = _code(lambda: rpc.infer(trained_run["run_id"], [_image_input(grpcclient, files)]))
            assert code == "StatusCode.UNAUTHENTICATED"
            keyed = rpc.infer(
                trained_run["run_id"], [_image_input(grpcclient, files)], headers={"authorization": "Bearer s3cret"}
            )
            assert keyed.as_numpy("probabilities").shape == (1, 4)
        finally:
            rpc.close()


@pytest.mark.slow
def test_core_serve_grpc_port_from_the_command_line(trained_run, tmp_path):
    from core.bench.server_cpu import free_port

    root = tmp_path / "models"
    copy_run(trained_run["store"].run_dir(trained_run["run_id"]), root / trained_run["run_id"])
    port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "core", "serve", trained_run["run_id"], "--port", str(port)]
    command += ["--grpc-port", str(grpc_port), "--models-dir", str(root), "--no-ood"]
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 (the server's lifetime)
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        rpc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        deadline = time.time() + 180
        while True:
            try:
                if rpc.is_server_ready():
                    break
            except InferenceServerException:
                pass
            assert process.poll() is None and time.time() < deadline, (tmp_path / "serve.log").read_text()[-2000:]
            time.sleep(0.5)
        files = photos(trained_run["dataset"], 2)
        answer = rpc.infer(trained_run["run_id"], [_image_input(grpcclient, files)])
        assert answer.as_numpy("probabilities").shape == (2, 4)
        rpc.close()
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()
    # uvicorn shuts down on SIGTERM, then re-raises the signal it caught
    assert process.returncode in (0, -15), (tmp_path / "serve.log").read_text()[-2000:]
    assert "Application shutdown complete" in (tmp_path / "serve.log").read_text()
