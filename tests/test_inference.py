"""Prediction: the same preprocessing as evaluation, and bad files that cost only themselves."""

from __future__ import annotations

import numpy as np
import pytest

from core.calibration import rescale, stored_temperature
from core.evaluation import Evaluation
from core.inference import ModelMissing, Predictor

pytestmark = pytest.mark.backend_agnostic


@pytest.fixture(scope="module")
def predictor(trained_run):
    run = trained_run["store"].get(trained_run["run_id"])
    return Predictor(run)


def test_predictions_match_the_stored_evaluation(trained_run, predictor):
    run = trained_run["store"].get(trained_run["run_id"])
    evaluation = Evaluation.load(run.directory)
    paths = [trained_run["dataset"] / p for p in evaluation.paths]
    results = predictor.predict(paths, top_k=len(evaluation.classes))
    for result, probabilities in zip(results, evaluation.probabilities, strict=True):
        assert result.ok
        by_label = dict(result.top)
        predicted = np.array([by_label[c] for c in evaluation.classes])
        # features are cached in float16, so allow a little slack; the decision must agree
        np.testing.assert_allclose(predicted, rescale(probabilities, predictor.temperature), atol=0.02)
        assert result.label == evaluation.classes[int(np.argmax(probabilities))]


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
    from core.runs import RunStore

    store = RunStore(tmp_path)
    run = store.create("r", {"config": {}, "classes": ["a", "b"]})
    with pytest.raises(ModelMissing, match="no saved model"):
        Predictor(run)
