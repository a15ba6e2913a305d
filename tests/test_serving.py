"""The model server: one real uvicorn server on 127.0.0.1 for real clients (the three protocols, batching, the log
under load, an alias moved under load, disconnects), and its error paths (bad inputs, the size limit, the API key,
a full queue) in-process through an ASGI transport, on the same models."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import io
import json
import struct
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from core.data.imaging import load_for_model
from core.results.probabilities import conformal
from core.runs.files import run_files
from core.runs.store import RunStore
from core.serving.aliases import AliasStore
from core.serving.app import create_app
from core.serving.log import PredictionLog
from core.serving.registry import BatchOptions, ModelRegistry
from core.serving.server import BackgroundServer
from tests.conftest import copy_run


@pytest.fixture(scope="module")
def served(trained_run, tmp_path_factory):
    """A store of its own holding a copy of the trained run, aliased 'production', and a running server."""
    root = tmp_path_factory.mktemp("serving") / "models"
    source = trained_run["store"].run_dir(trained_run["run_id"])
    copy_run(source, root / trained_run["run_id"])
    # prediction sets at 80%: the tiny run's 9 test photos leave 4 to calibrate on, enough for 80% (not 90%)
    conformal.fit_run(root / trained_run["run_id"], level=0.8, method="aps")
    store = RunStore(root)
    AliasStore(root).set("production", trained_run["run_id"])
    data_root = tmp_path_factory.mktemp("serving-data")
    with BackgroundServer(store, ["production"], BatchOptions(max_batch=16, max_wait_ms=5), data_root) as server:
        yield {"server": server, "store": store, "run_id": trained_run["run_id"], "dataset": trained_run["dataset"]}


class InProcess:
    """A client of the server's ASGI app in this process (httpx's ASGI transport, no socket)."""

    def __init__(self, app):
        self.app = app

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://flora.test", timeout=60) as http:
                return await http.request(method, path, **kwargs)

        return asyncio.run(send())

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self.request("POST", path, **kwargs)


def in_process(served, **app_options) -> InProcess:
    """The server's app with other options, in this process: the same service and loaded models."""
    return InProcess(create_app(served["server"].service, **app_options))


def photos(dataset, n=4):
    files = sorted(p for p in dataset.rglob("*.png"))
    return files[:: max(1, len(files) // n)][:n]


def test_health_and_metadata(served):
    url = served["server"].url
    assert httpx.get(f"{url}/v2/health/live").status_code == 200
    assert httpx.get(f"{url}/v2/health/ready").json() == {"ready": True}
    meta = httpx.get(f"{url}/v2/models/production").json()
    assert meta["name"] == "production"
    assert {i["name"] for i in meta["inputs"]} == {"image", "pixels"}
    assert {"probabilities", "label"} <= {o["name"] for o in meta["outputs"]}
    assert meta["parameters"]["classes"] == ["blue", "crimson", "green", "red"]
    assert httpx.get(f"{url}/v2/models/{served['run_id'][:6]}/ready").json()["ready"]
    assert httpx.get(f"{url}/v1/models/production").json()["model_version_status"][0]["state"] == "AVAILABLE"
    assert httpx.get(f"{url}/openapi.json").status_code == 200


def test_tritonclient_with_default_settings(served):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(served["server"].url.removeprefix("http://"))
    assert client.is_server_live() and client.is_model_ready("production")
    assert client.get_model_metadata("production")["parameters"]["classes"]
    files = photos(served["dataset"], 3)
    data = np.array([f.read_bytes() for f in files], dtype=np.object_)
    tensor = triton.InferInput("image", [len(files)], "BYTES")
    tensor.set_data_from_numpy(data)  # binary_data=True: the binary tensor extension
    result = client.infer("production", [tensor])
    probabilities = result.as_numpy("probabilities")
    labels = result.as_numpy("label")
    assert probabilities.shape == (3, 4) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert [label.decode() for label in labels] == [
        ["blue", "crimson", "green", "red"][i] for i in probabilities.argmax(axis=1)
    ]
    # pixels input, any size: resized as a decoded photo is, so the answer is the same
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    tensor = triton.InferInput("pixels", list(pixels.shape), "UINT8")
    tensor.set_data_from_numpy(pixels)
    by_pixels = client.infer("production", [tensor]).as_numpy("probabilities")
    np.testing.assert_allclose(by_pixels, probabilities, atol=1e-5)
    client.close()


def test_v2_json_tensors_and_tfserving_agree(served):
    url = served["server"].url
    data = photos(served["dataset"], 2)[0].read_bytes()
    b64 = base64.b64encode(data).decode()
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [b64]}]}
    v2 = httpx.post(f"{url}/v2/models/production/infer", json=body).json()
    by_name = {o["name"]: o for o in v2["outputs"]}
    assert by_name["probabilities"]["shape"] == [1, 4]
    tf = httpx.post(f"{url}/v1/models/production:predict", json={"instances": [{"b64": b64}]}).json()
    np.testing.assert_allclose(tf["predictions"][0], by_name["probabilities"]["data"], atol=1e-6)
    rest = httpx.post(f"{url}/predict?top_k=2", files={"file": ("x.png", data, "image/png")}).json()
    result = rest["results"][0]
    assert result["label"] == by_name["label"]["data"][0]
    assert len(result["top"]) == 2 and "out_of_distribution" in result


def test_prediction_sets_on_every_route_when_asked(served):
    url = served["server"].url
    data = photos(served["dataset"], 2)[1].read_bytes()
    b64 = base64.b64encode(data).decode()
    rest = httpx.post(f"{url}/predict?prediction_set=0.8", files={"file": ("x.png", data, "image/png")}).json()
    chosen = rest["results"][0]["prediction_set"]
    assert chosen["level"] == 0.8 and chosen["classes"]
    assert set(chosen["classes"]) <= {"blue", "crimson", "green", "red"}
    detector = served["server"].registry.get("production").loaded.model.reference.detector
    if chosen["trusted"] and detector.let_through_words():  # "trusted" says what it rests on, with its figure
        assert chosen["note"].endswith(detector.let_through_words())
    body = {
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [b64]}],
        "parameters": {"prediction_set": 0.8},
    }
    v2 = {o["name"]: o for o in httpx.post(f"{url}/v2/models/production/infer", json=body).json()["outputs"]}
    assert json.loads(v2["prediction_set"]["data"][0]) == chosen["classes"]
    tf = httpx.post(f"{url}/v1/models/production:predict", json={"instances": [{"b64": b64}], "prediction_set": 0.8})
    assert tf.json()["prediction_sets"] == [chosen["classes"]]
    # a higher level never gives a smaller set; without the parameter no set is computed
    wide = httpx.post(f"{url}/predict?prediction_set=0.95", files={"file": ("x.png", data, "image/png")}).json()
    assert set(chosen["classes"]) <= set(wide["results"][0]["prediction_set"]["classes"])
    plain = httpx.post(f"{url}/predict", files={"file": ("x.png", data, "image/png")}).json()
    assert "prediction_set" not in plain["results"][0]
    for bad, words in (("1.5", "between 0 and 1"), ("0.6", "0.80-0.99"), ("many", "could not convert")):
        refused = httpx.post(f"{url}/predict?prediction_set={bad}", files={"file": ("x.png", data, "image/png")})
        assert refused.status_code == 400 and words in refused.text


def test_batch_prediction_writes_each_photo_s_set_to_the_table(served):
    from core.serving.batch_predict import csv_text, predict_many, table_rows

    model = served["server"].registry.get("production").loaded.model
    files = [(p.name, p) for p in photos(served["dataset"], 3)] + [("broken.png", b"not an image")]
    items = predict_many(model, files, top_k=2, set_level=0.9)
    rows = table_rows(items, 2)
    assert [row["prediction_set"] != "" for row in rows] == [True, True, True, False]
    assert rows[0]["set_level"] == 0.9 and rows[0]["set_size"] == len(rows[0]["prediction_set"].split(" | "))
    assert "prediction_set,set_size,set_level" in csv_text(rows).splitlines()[0]


def test_answer_only_when_sure_on_every_route_when_asked(served):
    from core.results.probabilities import selective
    from core.serving.holding_back import FOREIGN_REASON

    url = served["server"].url
    data = photos(served["dataset"], 2)[1].read_bytes()
    b64 = base64.b64encode(data).decode()
    rest = httpx.post(f"{url}/predict?max_error=0.3", files={"file": ("x.png", data, "image/png")}).json()
    result = rest["results"][0]
    model = served["server"].registry.get("production").loaded.model
    given, why = selective.decision(model.selective, result["probability"], 0.3)
    reasons = [FOREIGN_REASON] if result["out_of_distribution"]["flag"] else []  # that reason first
    reasons += [] if given else [why]
    given, why = not reasons, "; ".join(reasons) or None
    assert result["max_error"] == 0.3 and result["abstained"] is (not given) and result.get("reason") == why
    body = {
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [b64]}],
        "parameters": {"max_error": 0.3},
    }
    v2 = {o["name"]: o for o in httpx.post(f"{url}/v2/models/production/infer", json=body).json()["outputs"]}
    assert v2["abstained"]["data"] == [result["abstained"]] and v2["abstain_reason"]["data"] == [why or ""]
    tf = httpx.post(f"{url}/v1/models/production:predict?max_error=0.3", json={"instances": [{"b64": b64}]}).json()
    assert tf["abstained"] == [result["abstained"]] and tf["abstain_reasons"] == [why]
    plain = httpx.post(f"{url}/predict", files={"file": ("x.png", data, "image/png")}).json()
    assert "abstained" not in plain["results"][0]
    for bad, words in (("0.001", "0.01-0.50"), ("many", "could not convert")):
        refused = httpx.post(f"{url}/predict?max_error={bad}", files={"file": ("x.png", data, "image/png")})
        assert refused.status_code == 400 and "max_error" in refused.text and words in refused.text


def test_saved_class_thresholds_hold_back_answers_everywhere(served):
    from core.results.probabilities import class_thresholds
    from core.serving.batch_predict import predict_many, table_rows

    url = served["server"].url
    run_dir = served["store"].run_dir(served["run_id"])
    data = photos(served["dataset"], 2)[0].read_bytes()
    first = httpx.post(f"{url}/predict", files={"file": ("x.png", data, "image/png")}).json()["results"][0]
    assert "abstained" not in first
    classes = served["store"].get(served["run_id"]).classes
    class_thresholds.save(run_dir, {first["label"]: min(0.9999, (first["probability"] + 1) / 2)}, classes)
    try:
        time.sleep(1.2)  # a served model looks for changed run files at most every second
        again = httpx.post(f"{url}/predict", files={"file": ("x.png", data, "image/png")}).json()["results"][0]
        assert again["abstained"] is True and f"for {first['label']} is under its saved threshold" in again["reason"]
        model = served["server"].registry.get("production").loaded.model
        rows = table_rows(predict_many(model, [("x.png", data)], top_k=2), 2)
        assert rows[0]["answered"] is False and "saved threshold" in rows[0]["held_back_because"]
    finally:
        run_files(run_dir).class_thresholds.unlink()
        time.sleep(1.2)


def test_the_server_sees_the_same_pixels_as_training(served):
    from core.inference import Predictor

    run = served["store"].get(served["run_id"])
    route = served["server"].registry.get("production")
    predictor = Predictor(run)
    for path in photos(served["dataset"], 3):
        decoded = route.loaded.model.decode(path.read_bytes())
        np.testing.assert_array_equal(decoded.pixels, predictor.preprocess(str(path)))
        np.testing.assert_array_equal(
            decoded.pixels, load_for_model(path, run.train_config.image_size, run.train_config.cache_size)
        )
        served_p = route.loaded.model.predict_pixels(decoded.pixels[None], top_k=4)[0]
        keras_p = predictor.predict([path], top_k=4)[0]
        assert served_p.label == keras_p.label
        np.testing.assert_allclose(served_p.max_probability, keras_p.top[0][1], atol=1e-5)


def _png(width, height) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def _bomb(width=12000, height=12000) -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, "PNG")  # 144 MP by default, a few KB compressed
    return buffer.getvalue()


BAD_INPUTS = {
    "text file": ("rest", b"hello, I am not a photo", 400, "not an image"),
    "truncated": ("rest", _png(40, 40)[:60], 400, "truncated"),
    "image bomb": ("rest", _bomb(), 413, "too large"),
    "bombs over the request's pixels": ("rest-many", [_bomb(10000, 10000)] * 3, 413, "megapixels together"),
    "shape of booleans": (
        "v2json",
        {"inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [True, 2, 2, 3], "data": [0] * 12}]},
        400,
        "'shape' must be a list of non-negative integers",
    ),
    "output parameters not an object": (
        "v2json",
        {
            "inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [1, 2, 2, 3], "data": [0] * 12}],
            "outputs": [{"name": "label", "parameters": "x"}],
        },
        400,
        "'parameters' must be an object",
    ),
    "json nested 100k deep": ("v2", b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
    "tf json nested 100k deep": ("tf-raw", b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "nested"),
    "tf NaN pixels": ("tf-raw", b'{"instances": [[[[NaN, 0, 0]]]]}', 400, "finite"),
    "tf infinite pixels": ("tf-raw", b'{"instances": [[[[Infinity, 0, 0]]]]}', 400, "finite"),
    "GET on predict": ("get-predict", b"", 405, "use POST"),
    "malformed json": ("v2", b"{not json", 400, "malformed JSON"),
    "wrong datatype": (
        "v2json",
        {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1], "data": [1.0]}]},
        400,
        "must be BYTES",
    ),
    "wrong shape": (
        "v2json",
        {"inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [1, 2, 2], "data": [0, 0, 0, 0]}]},
        400,
        "[N, H, W, 3]",
    ),
    "shape vs data": (
        "v2json",
        {"inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [1, 2, 2, 3], "data": [0, 1]}]},
        400,
        "holds 12 elements",
    ),
    "unknown input": (
        "v2json",
        {"inputs": [{"name": "photo", "datatype": "BYTES", "shape": [1], "data": ["aGk="]}]},
        400,
        "unknown input",
    ),
    "not base64": (
        "v2json",
        {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["%%%"]}]},
        400,
        "base64",
    ),
    "unknown model": ("unknown", b"", 404, "unknown model"),
    "tf not an image": ("tf", {"instances": [{"b64": base64.b64encode(b"plain text").decode()}]}, 400, "not an image"),
    "tf bad pixels": ("tf", {"instances": [[[1, 2], [3, 4]]]}, 400, "H x W x 3"),
    "empty upload": ("rest-empty", b"", 400, "no file"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(served, case):
    kind, payload, status, words = BAD_INPUTS[case]
    http = in_process(served)
    if kind == "rest":
        response = http.post("/predict", files={"file": ("upload.jpg", payload)})
    elif kind == "rest-empty":
        response = http.post("/predict", data={"top_k": "2"})
    elif kind == "rest-many":
        response = http.post("/predict", files=[("file", (f"{i}.png", data)) for i, data in enumerate(payload)])
    elif kind == "tf-raw":
        response = http.post("/v1/models/production:predict", content=payload)
    elif kind == "get-predict":
        response = http.get("/v1/models/production:predict")
    elif kind == "v2":
        response = http.post("/v2/models/production/infer", content=payload)
    elif kind == "v2json":
        response = http.post("/v2/models/production/infer", json=payload)
    elif kind == "tf":
        response = http.post("/v1/models/production:predict", json=payload)
    else:
        response = http.post("/v2/models/nope/infer", json={"inputs": []})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert words in response.json()["error"]
    good = photos(served["dataset"], 1)[0].read_bytes()
    assert http.post("/predict", files={"file": ("ok.png", good)}).status_code == 200


def test_a_payload_over_the_limit_is_refused(served):
    small = in_process(served, max_bytes=10_000)
    response = small.post("/predict", files={"file": ("big.jpg", b"x" * 20_000)})
    assert response.status_code == 413 and "limit" in response.json()["error"]
    assert small.get("/v2/health/ready").status_code == 200
    good = photos(served["dataset"], 1)[0].read_bytes()
    assert small.post("/predict", files={"file": ("ok.png", good)}).status_code == 200


def _load(url: str, body: bytes, requests: int, clients: int, path: str = "/predict") -> list[dict]:
    """`requests` single-photo POSTs from `clients` concurrent clients; each result's status and run id."""

    def client(count: int) -> list[dict]:
        out = []
        with httpx.Client(timeout=60) as http:
            for _ in range(count):
                response = http.post(f"{url}{path}", files={"file": ("p.png", body, "image/png")})
                out.append({"status": response.status_code, "run_id": response.json().get("run_id")})
        return out

    shares = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        return [r for part in pool.map(client, shares) for r in part]


def test_load_32_clients_2000_requests_no_errors_no_lost_log_rows(served):
    server = served["server"]
    log = PredictionLog.of_store(served["store"].root)
    server.writer.flush()
    before = log.count()
    body = photos(served["dataset"], 1)[0].read_bytes()
    started = time.perf_counter()
    results = _load(server.url, body, requests=2000, clients=32)
    seconds = time.perf_counter() - started
    assert [r["status"] for r in results] == [200] * 2000
    server.writer.flush()
    assert log.count() - before == 2000
    stats = server.registry.get("production").loaded.batcher.stats.to_dict()
    print(f"2000 requests from 32 clients in {seconds:.1f}s ({2000 / seconds:.0f}/s); batching {stats}")
    assert stats["mean_batch"] > 1.5  # concurrent requests really shared forward passes


def test_moving_the_alias_under_load_drops_no_request(served):
    store, old = served["store"], served["run_id"]
    new = "feed0000beef"
    copy_run(store.run_dir(old), store.run_dir(new))
    server = served["server"]
    body = photos(served["dataset"], 1)[0].read_bytes()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(_load, server.url, body, 400, 16)
        time.sleep(1.0)
        AliasStore(store.root).set("production", new)
        results = running.result(timeout=300)
    assert [r["status"] for r in results] == [200] * 400
    deadline = time.time() + 60
    while server.registry.get("production").loaded.run_id != new and time.time() < deadline:
        time.sleep(0.2)
    answered = httpx.post(f"{server.url}/predict", files={"file": ("p.png", body)}).json()
    assert answered["run_id"] == new
    assert server.registry.swaps[-1]["load_seconds"] >= 0  # said on the Serve page
    # moving it back (a rollback): the old run was kept warm, so the switch takes no load (<= 2 s)
    moved = time.time()
    AliasStore(store.root).set("production", old)
    while server.registry.get("production").loaded.run_id != old and time.time() < moved + 10:
        time.sleep(0.05)
    assert server.registry.get("production").loaded.run_id == old and time.time() - moved <= 2.0
    assert server.registry.swaps[-1]["load_seconds"] < 0.5


def test_a_full_queue_answers_503_with_retry_after(served):
    """48 requests at once on models that take one at a time and queue one: the rest are told to come back."""
    from core.serving.service import Service

    registry = ModelRegistry(served["store"], [served["run_id"]], BatchOptions(max_batch=1, max_wait_ms=0, max_queue=1))
    registry.start()
    app = create_app(Service(registry, None))
    body = photos(served["dataset"], 1)[0].read_bytes()

    async def all_at_once() -> list[tuple[int, str | None]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://flora.test", timeout=60) as http:
            responses = await asyncio.gather(
                *(http.post("/predict", files={"file": ("p.png", body)}) for _ in range(48))
            )
        return [(r.status_code, r.headers.get("retry-after")) for r in responses]

    try:
        results = asyncio.run(all_at_once())
    finally:
        registry.close()
    statuses = [s for s, _ in results]
    assert 503 in statuses and 200 in statuses
    assert all(retry == "1" for s, retry in results if s == 503)


def test_api_key_guards_everything_but_health(served):
    guarded = in_process(served, api_key="s3cret")
    assert guarded.get("/v2/health/ready").status_code == 200
    assert guarded.get("/v2/models/production").status_code == 401
    ok = guarded.get("/v2/models/production", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    wrong = guarded.get("/v2/models/production", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "API key" in wrong.json()["error"]


def test_binary_tensor_extension_by_hand(served):
    """The wire format itself: JSON header, then a BYTES tensor as 4-byte lengths + bytes; binary outputs back."""
    data = photos(served["dataset"], 1)[0].read_bytes()
    blob = struct.pack("<I", len(data)) + data
    header = json.dumps(
        {
            "inputs": [
                {"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(blob)}}
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    ).encode()
    response = httpx.post(
        f"{served['server'].url}/v2/models/production/infer",
        content=header + blob,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200
    length = int(response.headers["inference-header-content-length"])
    head = json.loads(response.content[:length])
    assert [o["name"] for o in head["outputs"]] == ["probabilities"]
    values = np.frombuffer(response.content[length:], dtype="<f4")
    assert values.shape == (4,) and abs(values.sum() - 1) < 1e-5


def test_feedback_over_the_api_updates_the_log_and_keeps_the_photo(served, tmp_path):
    server = served["server"]
    photo = photos(served["dataset"], 1)[0].read_bytes()
    answer = httpx.post(f"{server.url}/predict", files={"file": ("p.png", photo)}).json()["results"][0]
    sha = answer["image_sha256"]
    kept = httpx.post(f"{server.url}/v1/feedback", files={"file": ("p.png", photo)}, data={"label": "crimson"}).json()
    assert kept["log_rows_updated"] >= 1 and kept["photo_kept"]["split"] in ("train", "val")
    where = kept["photo_kept"]["path"]  # from the data folder on: the server's own layout is not the client's
    assert not where.startswith("/") and "/.flora/feedback/" in where and where.endswith(".png")
    by_sha = httpx.post(f"{server.url}/v1/feedback", json={"image_sha256": sha, "label": "green"}).json()
    assert by_sha["log_rows_updated"] >= 1 and by_sha["photo_kept"] is None
    rows = [r for r in PredictionLog.of_store(served["store"].root).read() if r["image_sha256"] == sha]
    assert rows and all(r["feedback_label"] == "green" for r in rows)
    bad = httpx.post(f"{server.url}/v1/feedback", json={"image_sha256": sha, "label": "purple"})
    assert bad.status_code == 400 and "unknown label" in bad.json()["error"]


def test_clients_that_disconnect_mid_request_do_not_hurt_the_server(served):
    server = served["server"]
    body = photos(served["dataset"], 1)[0].read_bytes()
    for _ in range(8):
        with contextlib.suppress(httpx.TimeoutException):  # gone before the answer
            httpx.post(f"{server.url}/predict", files={"file": ("p.png", body)}, timeout=0.002)
    assert httpx.post(f"{server.url}/predict", files={"file": ("p.png", body)}, timeout=60).status_code == 200
    assert httpx.get(f"{server.url}/docs").status_code == 200


def test_a_switch_answers_op_by_op_until_the_compiled_graph_is_ready(trained_run):
    """Issue 32: a switching server loads the run, answers at once (the graph run op by op) and compiles in the
    background; both paths give the same numbers."""
    from core.serving.engine import ServedModel

    model = ServedModel(trained_run["store"].get(trained_run["run_id"]), trained_run["data_root"])
    assert model.reference is not None  # fitted when training ended: loading it is all a server does
    pixels = np.stack([load_for_model(p, 32, model.cache_size) for p in photos(trained_run["dataset"], 3)])
    model.runner.compiling.set()  # as while warm(background=True) compiles
    eager = model.forward(pixels)
    model.runner.compiling.clear()
    model.warm([1, 2, 4], background=True)
    deadline = time.time() + 120
    while model.runner.compiling.is_set() and time.time() < deadline:
        model.forward(pixels)  # answers throughout
        time.sleep(0.05)
    assert not model.runner.compiling.is_set() and model.runner.warm_seconds is not None
    compiled = model.forward(pixels)
    for name, values in compiled.items():
        np.testing.assert_allclose(eager[name], values, atol=1e-4, rtol=1e-4)
