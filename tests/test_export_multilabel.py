"""Exports of a multi-label run: ONNX, TFLite and SavedModel carry its threshold per label and give the label lists
`core predict` gives (the ONNX/TFLite bundle's predict.py, the SavedModel's `labels` output), on its photos."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest

from core.cli import main as cli
from core.data.imaging import load_for_model
from core.export import ExportError
from core.export.run import export_run
from core.results.probabilities import label_thresholds
from core.runs.store import RunStore
from tests.conftest import copy_run

# predict.py runs as a process; the three share one xdist worker (`make test`'s --dist loadgroup): one copy of the run
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("export-multilabel")]


@pytest.fixture(scope="module")
def run(multilabel_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("export-multilabel") / "models"
    copy_run(multilabel_run["models_root"] / multilabel_run["run_id"], root / multilabel_run["run_id"])
    return RunStore(root).get(multilabel_run["run_id"])


@pytest.fixture(scope="module")
def answered(run, multilabel_run):
    """Eight of the run's photos and what `core predict --json` answers for them."""
    photos = sorted((multilabel_run["dataset"] / "images").iterdir())[:8]
    where = ["--models-dir", str(run.directory.parent), "--data-dir", str(multilabel_run["data_root"])]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert cli(["predict", run.run_id, *map(str, photos), "--json", *where]) == 0
    results = json.loads(out.getvalue())["results"]
    assert any(r["labels"] for r in results)  # something to agree on, not every photo "none of these"
    return photos, results


@pytest.mark.parametrize(("fmt", "model_file"), [("onnx", "model.onnx"), ("tflite", "model.tflite")])
def test_the_bundle_s_predict_py_gives_core_predict_s_labels(run, answered, tmp_path, fmt, model_file):
    photos, expected = answered
    record = export_run(run, fmt, tmp_path / "out")
    figures = record["verification"]
    assert record["passed"] and figures["label_list_agreement"] == 1.0, figures
    assert "test split" in figures["source"]  # checked on the run's test photos, not on noise
    thresholds = label_thresholds.load(run.directory)
    assert record["task"] == "multilabel" and record["label_thresholds"] == thresholds
    recipe = json.loads((tmp_path / "out" / "preprocessing.json").read_text())
    assert recipe["task"] == "multilabel" and recipe["model_file"] == model_file
    assert recipe["label_thresholds"] == thresholds and recipe["classes"] == run.classes
    done = subprocess.run(
        [sys.executable, str(tmp_path / "out" / "predict.py"), *map(str, photos), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    theirs = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(theirs) == len(photos)
    for got, want in zip(theirs, expected, strict=True):
        assert got["labels"] == want["labels"] and got["none_of_these"] == want["none_of_these"]
        assert [f["label"] for f in got["found"]] == [f["label"] for f in want["found"]]
        assert got["scores"] == pytest.approx(want["scores"], abs=1e-4)
    text = subprocess.run(
        [sys.executable, str(tmp_path / "out" / "predict.py"), str(photos[0])], capture_output=True, text=True
    ).stdout
    words = "none of these" if not expected[0]["labels"] else f"(threshold {thresholds[expected[0]['labels'][0]]:.3f})"
    assert words in text


def test_the_saved_model_answers_the_labels_with_its_thresholds_inside(run, answered, tmp_path):
    import tensorflow as tf

    photos, expected = answered
    record = export_run(run, "savedmodel", tmp_path / "out")
    assert record["passed"] and record["verification"]["label_list_agreement"] == 1.0
    assert record["bytes_signature"]["labels_match_probabilities"]
    loaded = tf.saved_model.load(str(tmp_path / "out" / "saved_model"))
    size, cache = run.train_config.image_size, run.train_config.cache_size
    pixels = np.stack([load_for_model(p.read_bytes(), size, cache) for p in photos]).astype(np.float32)
    out = loaded.signatures["predict_pixels"](image=tf.constant(pixels))
    present, cut = out["labels"].numpy(), out["thresholds"].numpy()
    thresholds = label_thresholds.load(run.directory)
    np.testing.assert_allclose(cut[0], [thresholds[n] for n in run.classes], rtol=1e-6)
    for row, want in zip(present, expected, strict=True):
        assert [name for name, yes in zip(run.classes, row, strict=True) if yes] == want["labels"]
    by_bytes = loaded.signatures["serving_default"](image_bytes=tf.constant([p.read_bytes() for p in photos]))
    assert "label" not in by_bytes and by_bytes["labels"].shape == (len(photos), len(run.classes))


def test_triton_s_repository_carries_the_thresholds_and_the_web_page_is_refused(run, answered, tmp_path):
    photos, expected = answered
    record = export_run(run, "onnx", tmp_path / "triton", layout="triton")
    assert record["passed"] and record["verification"]["label_list_agreement"] == 1.0
    recipe = json.loads((tmp_path / "triton" / "preprocessing.json").read_text())
    assert recipe["label_thresholds"] == label_thresholds.load(run.directory)
    assert (tmp_path / "triton" / recipe["model_file"]).exists()  # the repository's model, read by predict.py
    done = subprocess.run(
        [sys.executable, str(tmp_path / "triton" / "predict.py"), *map(str, photos), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert [json.loads(line)["labels"] for line in done.stdout.splitlines()] == [w["labels"] for w in expected]
    with pytest.raises(ExportError, match="is multi-label: the web page reads one class a photo"):
        export_run(run, "web", tmp_path / "web")
    assert not (tmp_path / "web").exists() or not any((tmp_path / "web").iterdir())


def test_the_python_predictor_answers_as_core_predict_does(run, answered, multilabel_run):
    """`core.inference.Predictor` (what MLflow's pyfunc and scripts load) gives the same multi-label JSON fields."""
    from core.inference import Predictor

    photos, expected = answered
    got = [p.to_dict() for p in Predictor(run).predict([str(p) for p in photos], top_k=2)]
    for mine, want in zip(got, expected, strict=True):
        assert mine["labels"] == want["labels"] and mine["none_of_these"] == want["none_of_these"]
        assert mine["found"] == want["found"]
        assert mine["scores"] == pytest.approx(want["scores"], abs=1e-5)
