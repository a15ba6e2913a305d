"""Prediction: the same preprocessing as evaluation, and bad files that cost only themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.inference import ModelMissing, Predictor
from core.results.evaluation.metrics import Evaluation
from core.results.probabilities.calibration import rescale, stored_temperature

pytestmark = pytest.mark.backend_agnostic


@pytest.fixture(scope="module")
def predictor(trained_run):
    run = trained_run["store"].get(trained_run["run_id"])
    return Predictor(run)


def test_predictions_match_the_model_on_the_cached_photos_and_the_stored_evaluation(trained_run, predictor):
    from core.data.datasets import scan_dataset
    from core.data.imaging import center_crop
    from core.data.ingest import ingest
    from core.network.graph import features_and_logits_model
    from core.network.model import load_classifier
    from core.runs.analysis import softmax

    run = trained_run["store"].get(trained_run["run_id"])
    config = run.train_config
    evaluation = Evaluation.load(run.directory)
    paths = [trained_run["dataset"] / p for p in evaluation.paths]
    results = predictor.predict(paths, top_k=len(evaluation.classes))
    assert all(result.ok for result in results)
    predicted = np.array([[dict(result.top)[c] for c in evaluation.classes] for result in results])

    # the very photos evaluation decoded, straight through the saved model: the same numbers, not nearly
    cache = ingest(scan_dataset(trained_run["dataset"]), config.cache_size, trained_run["data_root"] / ".cache")
    pixels = center_crop(cache.read(evaluation.cache_positions), config.image_size).astype("float32")
    _, logits = features_and_logits_model(load_classifier(run.path("model.keras"))).predict(pixels, verbose=0)
    np.testing.assert_allclose(predicted, softmax(np.asarray(logits), predictor.temperature), atol=1e-5)

    # the stored evaluation went through float16 cached features: the same decisions, probabilities within
    # that rounding, which is far smaller than the gaps between a photo's classes
    stored = rescale(evaluation.probabilities, predictor.temperature)
    assert (predicted.argmax(axis=1) == stored.argmax(axis=1)).all()
    slack = np.abs(predicted - stored).max()
    assert slack < 1e-3, slack
    top_two = np.sort(predicted, axis=1)[:, -2:]
    assert np.median(top_two[:, 1] - top_two[:, 0]) > 10 * slack


def test_probabilities_are_calibrated_with_the_runs_temperature_unless_raw_is_asked(trained_run, predictor):
    run = trained_run["store"].get(trained_run["run_id"])
    assert predictor.temperature == stored_temperature(run.directory) and predictor.temperature != 1.0
    photo = next(iter((trained_run["dataset"] / "red").iterdir()))
    calibrated = dict(predictor.predict([photo], top_k=4)[0].top)
    raw = dict(Predictor(run, calibrated=False).predict([photo], top_k=4)[0].top)
    assert max(raw, key=raw.get) == max(calibrated, key=calibrated.get)  # scaling never changes the answer
    classes = sorted(raw)
    expected = rescale(np.array([raw[c] for c in classes]), predictor.temperature)
    np.testing.assert_allclose([calibrated[c] for c in classes], expected, atol=1e-5)


def test_bad_files_get_an_error_entry_and_the_rest_still_run(trained_run, predictor, tmp_path):
    good = next(iter((trained_run["dataset"] / "red").iterdir()))
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    results = predictor.predict(
        [good, text, tmp_path / "gone.png", good.read_bytes()], top_k=2, names=["good", "text", "gone", "bytes"]
    )
    assert [r.ok for r in results] == [True, False, False, True]
    assert "not an image" in results[1].error and "not found" in results[2].error
    assert results[0].top == results[3].top and len(results[0].top) == 2
    assert results[0].to_dict()["top"][0]["label"] == results[0].label
    assert results[1].to_dict() == {"image": "text", "error": results[1].error}


def test_top_k_is_clamped(trained_run, predictor):
    good = next(iter((trained_run["dataset"] / "blue").iterdir()))
    assert len(predictor.predict([good], top_k=99)[0].top) == len(predictor.classes)
    assert len(predictor.predict([good], top_k=0)[0].top) == 1


def test_a_run_without_a_model_is_refused(tmp_path):
    from core.runs.store import RunStore

    store = RunStore(tmp_path)
    run = store.create("r", {"config": {}, "classes": ["a", "b"]})
    with pytest.raises(ModelMissing, match="no saved model"):
        Predictor(run)


def test_predict_and_the_server_answer_alike_whichever_runtime_runs(trained_run, tmp_path, monkeypatch, capsys):
    """Issue 44: `core predict` (--runtime) and the server's engine give the same top-1, and probabilities within
    1e-4, in Keras, ONNX Runtime and OpenVINO; each says which runtime answered."""
    import json

    from core import cli
    from core.serving.engine import ServedModel

    monkeypatch.setenv("FLORA_MACHINE_CACHE", str(tmp_path / "machine"))
    monkeypatch.setenv("FLORA_RUNTIME", "auto")  # restored afterwards: --runtime sets it for the process
    run = trained_run["store"].get(trained_run["run_id"])
    paths = sorted(str(p) for p in trained_run["dataset"].rglob("*.png"))[:12]
    answers = {}
    for runtime in ("keras", "onnxruntime", "openvino"):
        argv = ["predict", run.run_id, *paths, "--top-k", "4", "--json", "--runtime", runtime]
        argv += ["--models-dir", str(trained_run["models_root"]), "--data-dir", str(tmp_path / "data")]
        assert cli.main(argv) == 0
        results = json.loads(capsys.readouterr().out)["results"]
        answers[runtime] = np.array(
            [[t["probability"] for t in sorted(r["top"], key=lambda t: t["label"])] for r in results]
        )
        served = ServedModel(run, trained_run["data_root"], with_reference=False)
        served.warm([1, 4])
        assert served.runtime.startswith(
            f"forward pass: {dict(keras='Keras', onnxruntime='ONNX Runtime', openvino='OpenVINO')[runtime]}"
        )
        pixels = np.stack([served.decode(Path(p).read_bytes()).pixels for p in paths])
        answers[f"served {runtime}"] = served.forward(pixels)["probabilities"]
    for kind in ("", "served "):
        reference = answers[f"{kind}keras"]
        for runtime in ("onnxruntime", "openvino"):
            probabilities = answers[f"{kind}{runtime}"]
            assert (probabilities.argmax(1) == reference.argmax(1)).all(), kind + runtime
            np.testing.assert_allclose(probabilities, reference, atol=1e-4, err_msg=kind + runtime)
