"""The model server on a multi-label run: REST, the Open Inference Protocol and TF Serving bodies answer each photo's
labels (at or above their thresholds, with probability and threshold; "none of these" as such) and every label's
score, the same answers as `core predict --json`; what the run cannot answer yet is refused in words."""

from __future__ import annotations

import base64
import contextlib
import io
import json

import numpy as np
import pytest

from core.cli import main as cli
from core.results.probabilities import label_thresholds
from core.runs.store import RunStore
from core.serving.app import create_app
from core.serving.log import LogWriter, PredictionLog
from core.serving.registry import BatchOptions, ModelRegistry
from core.serving.service import Service
from tests.conftest import copy_run
from tests.test_serving import InProcess


@pytest.fixture(scope="module")
def served(multilabel_run, tmp_path_factory):
    """A copy of the shared multi-label run served in this process (a registry, the service and its app)."""
    root = tmp_path_factory.mktemp("serving-multilabel") / "models"
    run_id = multilabel_run["run_id"]
    copy_run(multilabel_run["models_root"] / run_id, root / run_id)
    store = RunStore(root)
    registry = ModelRegistry(store, [multilabel_run["run_id"]], BatchOptions(max_batch=8, max_wait_ms=5))
    registry.start()
    writer = LogWriter(PredictionLog.of_store(store.root))
    service = Service(registry, writer, multilabel_run["data_root"])
    yield {
        **multilabel_run,
        "store": store,
        "models_root": root,
        "client": InProcess(create_app(service)),
        "service": service,
    }
    writer.close()
    registry.close()


def photos(dataset, n=6) -> list:
    return sorted((dataset / "images").iterdir())[:n]


def cli_answers(run: dict, files: list) -> dict:
    where = ["--models-dir", str(run["models_root"]), "--data-dir", str(run["data_root"])]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = cli(["predict", run["run_id"], *map(str, files), "--json", *where])
    assert code == 0
    return json.loads(out.getvalue())


def test_every_protocol_answers_the_labels_core_predict_gives(served):
    files = photos(served["dataset"])
    expected = cli_answers(served, files)
    thresholds = label_thresholds.load(served["store"].run_dir(served["run_id"]))
    assert expected["thresholds"] == thresholds and len(expected["results"]) == len(files)
    assert any(item["labels"] for item in expected["results"])  # not every photo "none of these"
    for item in expected["results"]:  # the labels are those at or above their thresholds, in the run's order
        assert item["labels"] == [name for name, p in item["scores"].items() if p >= thresholds[name]]
        assert item["none_of_these"] == (not item["labels"])
        assert [f["label"] for f in item["found"]] == sorted(item["labels"], key=lambda n: -item["scores"][n])
        assert all(f["threshold"] == float(f"{thresholds[f['label']]:.6g}") for f in item["found"])  # never 0.0
    client, run_id = served["client"], served["run_id"]
    names = served["store"].get(run_id).classes  # the outputs' order

    rest = client.post("/predict", files=[("file", (f.name, f.read_bytes())) for f in files])
    assert rest.status_code == 200, rest.text
    for got, want in zip(rest.json()["results"], expected["results"], strict=True):
        assert got["labels"] == want["labels"] and got["none_of_these"] == want["none_of_these"]
        assert [f["label"] for f in got["found"]] == [f["label"] for f in want["found"]]
        assert got["scores"] == pytest.approx(want["scores"], abs=1e-4)
        assert "label" not in got and "prediction_set" not in got  # no single answer to misread

    body = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [len(files)],
                "data": [base64.b64encode(f.read_bytes()).decode() for f in files],
            }
        ]
    }
    v2 = client.post(f"/v2/models/{run_id}/infer", json=body)
    assert v2.status_code == 200, v2.text
    outputs = {o["name"]: o for o in v2.json()["outputs"]}
    assert {"probabilities", "labels", "none_of_these", "found"} <= set(outputs) and "label" not in outputs
    scores = np.array(outputs["probabilities"]["data"]).reshape(len(files), len(names))
    for i, want in enumerate(expected["results"]):
        assert json.loads(outputs["labels"]["data"][i]) == want["labels"]
        assert outputs["none_of_these"]["data"][i] == want["none_of_these"]
        assert [f["label"] for f in json.loads(outputs["found"]["data"][i])] == [f["label"] for f in want["found"]]
        np.testing.assert_allclose(scores[i], [want["scores"][n] for n in names], atol=1e-4)
    meta = client.get(f"/v2/models/{run_id}").json()
    assert meta["parameters"]["label_thresholds"] == thresholds and meta["parameters"]["task"] == "multilabel"
    assert {o["name"] for o in meta["outputs"]} == {"probabilities", "labels", "none_of_these", "found"}

    instances = [{"b64": base64.b64encode(f.read_bytes()).decode()} for f in files]
    tf = client.post(f"/v1/models/{run_id}:predict", json={"instances": instances})
    assert tf.status_code == 200, tf.text
    tf = tf.json()
    assert tf["labels"] == [want["labels"] for want in expected["results"]]
    assert tf["none_of_these"] == [want["none_of_these"] for want in expected["results"]]
    np.testing.assert_allclose(
        tf["predictions"], [[w["scores"][n] for n in names] for w in expected["results"]], atol=1e-4
    )
    assert client.get(f"/v1/models/{run_id}/metadata").json()["label_thresholds"] == thresholds


def test_none_of_these_is_said_as_such_when_no_label_reaches_its_threshold(served):
    model = served["service"].registry.get(served["run_id"]).loaded.model
    high = {name: 1.01 for name in model.classes}  # out of any sigmoid's reach
    model_thresholds, model.thresholds = model.thresholds, high
    try:
        files = photos(served["dataset"], 2)
        got = served["client"].post("/predict", files=[("file", (f.name, f.read_bytes())) for f in files]).json()
    finally:
        model.thresholds = model_thresholds
    for result in got["results"]:
        assert result["labels"] == [] and result["none_of_these"] is True and result["found"] == []
        assert set(result["scores"]) == set(model.classes)


def test_what_a_multilabel_run_cannot_answer_yet_is_refused_in_words(served):
    client = served["client"]
    image = photos(served["dataset"], 1)[0].read_bytes()
    for query in ("prediction_set=0.9", "max_error=0.05"):
        refused = client.post(f"/predict?{query}", files=[("file", ("a.png", image))])
        assert refused.status_code == 400 and "is multi-label" in refused.json()["error"], refused.text
    feedback = client.post("/v1/feedback", files=[("file", ("a.png", image))], data={"label": "red"})
    assert feedback.status_code == 400 and "multi-label" in feedback.json()["error"]
    models = client.get("/models").json()["models"]
    assert models[0]["task"] == "multilabel"
    served["service"].writer.flush()
    assert PredictionLog.of_store(served["store"].root).count() == 0  # the log keeps one class a photo: not these


def test_tritonclient_reads_the_label_lists_from_a_running_server(served):
    import tritonclient.http as triton

    from core.serving.server import BackgroundServer

    files = photos(served["dataset"], 3)
    expected = cli_answers(served, files)["results"]
    with BackgroundServer(served["store"], [served["run_id"]], BatchOptions(max_batch=4, max_wait_ms=5)) as server:
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        tensor = triton.InferInput("image", [len(files)], "BYTES")
        tensor.set_data_from_numpy(np.array([f.read_bytes() for f in files], dtype=np.object_))
        result = client.infer(served["run_id"], [tensor])  # the binary tensor extension, by default
        labels = [json.loads(item) for item in result.as_numpy("labels")]
        none = result.as_numpy("none_of_these").tolist()
        client.close()
    assert labels == [want["labels"] for want in expected]
    assert none == [want["none_of_these"] for want in expected]
