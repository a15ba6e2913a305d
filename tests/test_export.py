"""Exports: each loaded back in its own runtime agrees with the Keras model; layouts and bad requests."""

from __future__ import annotations

import json

import pytest

from core import cli
from core.export import ExportError, check_request
from core.export.run import export_run
from core.runs.store import RunStore
from tests.conftest import copy_run

pytestmark = pytest.mark.slow
RESNET50_GROUP = pytest.mark.xdist_group("export-resnet50")


@pytest.fixture(scope="module")
def run(trained_run, tmp_path_factory):
    """The shared tiny-backbone run: for what every format shares (the CLI, the tolerance check)."""
    root = tmp_path_factory.mktemp("export") / "models"
    copy_run(trained_run["store"].run_dir(trained_run["run_id"]), root / trained_run["run_id"])
    return RunStore(root).get(trained_run["run_id"])


@pytest.fixture(scope="module")
def resnet_run(trained_run, tmp_path_factory):
    """A run of the real ResNet-50 (32 px, one epoch): each format's converter meets the network users export."""
    from core import run_job
    from core.settings.config import TrainConfig
    from core.train import jobs

    base = tmp_path_factory.mktemp("export-resnet")
    store = RunStore(base / "models")
    config = TrainConfig(
        image_size=32, weights="none", epochs=1, batch_size=16, head=(16,), seed=1, backbone="resnet50"
    )
    submission = jobs.submit(store, trained_run["dataset"], config)
    run_job.execute(store, submission, base / "data", console=False, ingest_workers=1)
    return store.get(submission.run_id)


@pytest.mark.parametrize(
    ("fmt", "quantize", "layout", "tolerance"),
    [
        ("keras", "", None, 1e-4),  # a save and load, no converter: the tiny backbone (60 s less on ResNet-50)
        # the three on ResNet-50 share one xdist worker (`make test`'s --dist loadgroup), so its run is trained once
        pytest.param("onnx", None, "triton", 1e-4, marks=RESNET50_GROUP),
        pytest.param("savedmodel", None, "tfserving", 1e-4, marks=RESNET50_GROUP),
        pytest.param("tflite", None, None, 1e-4, marks=RESNET50_GROUP),
        ("tflite", "float16", None, 1e-2),  # the same converter quantized: on the tiny backbone
    ],
)
def test_each_export_agrees_with_keras_in_its_own_runtime(request, tmp_path, fmt, quantize, layout, tolerance):
    # each converter's round trip on ResNet-50; the quantized one and Keras's own file on the tiny backbone
    run = request.getfixturevalue("resnet_run" if quantize is None else "run")
    record = export_run(run, fmt, tmp_path / "out", quantize or None, layout)
    figures = record["verification"]
    print(f"{fmt} {quantize or ''} {layout or ''}: {figures}")
    assert record["passed"] and figures["repeatable"]
    assert figures["max_abs_diff"] <= tolerance and figures["top1_agreement"] == 1.0
    assert (
        figures["graph_vs_saved_model_max_abs_diff"] < 1e-4
    )  # the export graph is the saved model without augmentation
    assert json.loads((tmp_path / "out" / "export.json").read_text())["format"] == fmt
    if fmt == "onnx":  # ResNet-50's every layer is one Flora's own converter writes (not tf2onnx's ~20 CPU-s)
        assert record["converter"] == "flora"
    if layout == "triton":
        folder = tmp_path / "out" / "model_repository" / record["name"]
        config = (folder / "config.pbtxt").read_text()
        assert (folder / "1" / "model.onnx").exists() and 'platform: "onnxruntime_onnx"' in config
        assert 'name: "image"' in config and 'name: "probabilities"' in config and "dims: [ 32, 32, 3 ]" in config
    if layout == "tfserving":
        assert (tmp_path / "out" / record["name"] / "1" / "saved_model.pb").exists()
        assert record["bytes_signature"]["labels_match_probabilities"]
        assert record["bytes_signature"]["top1_agreement"] >= 0.9


@pytest.mark.parametrize(
    ("fmt", "quantize", "layout", "words"),
    [
        ("pickle", None, None, "format must be one of"),
        ("onnx", "int8", None, "tflite exports only"),
        ("onnx", None, "tfserving", "needs --format savedmodel"),
        ("savedmodel", None, "triton", "needs --format onnx"),
    ],
)
def test_impossible_requests_are_refused_before_any_work(fmt, quantize, layout, words):
    with pytest.raises(ExportError, match=words):
        check_request(fmt, quantize, layout)


def test_the_cli_prints_the_agreement(run, tmp_path, capsys):
    code = cli.main(
        [
            "export",
            run.run_id[:6],
            "--format",
            "keras",  # the cheapest export: the CLI's part is the same for every format (each is tested above)
            "--out",
            str(tmp_path / "o"),
            "--models-dir",
            str(run.directory.parent),
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["format"] == "keras" and out["verification"]["runtime"].startswith("keras")
    assert out["passed"] and out["verification"]["top1_agreement"] == 1.0


def test_an_export_beyond_tolerance_fails_loudly_and_leaves_nothing(run, tmp_path, monkeypatch):
    """Before: a failed export (an int8 file that failed its own check) stayed on disk, 24 MB of it."""
    import core.export.run as export_module

    out = tmp_path / "strict"
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # what was in the folder before stays
    monkeypatch.setitem(export_module.TOLERANCE, "float32", -1.0)  # no output passes, not even a bit-identical one
    with pytest.raises(ExportError, match=r"disagrees with the Keras model: max \|diff\| .* Nothing was kept"):
        export_run(run, "keras", out)  # the cheapest export: the check is the same for every format
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left beside it


def test_an_optimizer_that_fails_without_tf2onnx_s_guard_is_converted_again_with_it(run, tmp_path, monkeypatch, caplog):
    """The ONNX conversion runs tf2onnx's optimizers without their guard (a deep copy of the graph, weights included,
    before each one); where one fails, the conversion runs again guarded and that optimizer is skipped."""
    import os

    import numpy as np
    import onnxruntime

    from core.export.convert import import_tf2onnx, write_onnx
    from core.network.graph import inference_model
    from core.network.model import load_classifier
    from core.runs.files import run_files

    attempts = []

    class FailsEveryTime:
        graph_been_opt = False

        def optimize(self, graph, iteration):
            attempts.append(os.environ.get("TF2ONNX_CATCH_ERRORS"))
            raise RuntimeError("this optimizer cannot handle the graph")

    monkeypatch.setitem(import_tf2onnx().optimizer._optimizers, "flora_test_fails", FailsEveryTime)
    model = inference_model(load_classifier(run_files(run).model))
    with caplog.at_level("WARNING", logger="flora"):
        (path,), converter = write_onnx(model, tmp_path, converter="tf2onnx")
    assert converter == "tf2onnx" and attempts[0] == "FALSE" and None in attempts[1:]  # unguarded, then guarded
    assert "converting again" in caplog.text and "TF2ONNX_CATCH_ERRORS" not in os.environ
    size = run.train_config.image_size
    pixels = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ours = session.run(["probabilities"], {"image": pixels})[0]
    np.testing.assert_allclose(ours, np.asarray(model.predict_on_batch(pixels)[0]), atol=1e-5)


def test_an_onnx_graph_onnx_runtime_cannot_run_is_converted_by_tf2onnx_and_the_export_passes(run, tmp_path, caplog):
    """Flora's own ONNX graph is checked in ONNX Runtime before it is kept: where the runtime fails on it, the export
    says so and converts with tf2onnx instead of failing."""
    from core.export import verify

    real = verify.onnx_runner
    calls = []

    def fails_first(path):
        calls.append(path)
        if len(calls) == 1:
            raise RuntimeError("this runtime cannot load the graph")
        return real(path)

    with pytest.MonkeyPatch.context() as patch, caplog.at_level("WARNING", logger="flora"):
        patch.setattr(verify, "onnx_runner", fails_first)
        record = export_run(run, "onnx", tmp_path / "out")
    assert record["passed"] and record["converter"] == "tf2onnx" and len(calls) == 2
    assert "could not run Flora's ONNX graph (this runtime cannot load the graph)" in caplog.text


def test_an_onnx_export_ships_its_recipe_and_a_predict_script_that_matches_flora(run, tmp_path):
    """Before: a user's own 64x64 resize disagreed with core predict by up to 0.27 (no recipe, no temperature)."""
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from core.inference import Predictor

    record = export_run(run, "onnx", tmp_path / "out")
    folder = tmp_path / "out"
    recipe = json.loads((folder / "preprocessing.json").read_text())
    assert recipe["model_file"] == "model.onnx" and recipe["classes"] == run.classes
    assert recipe["image_size"] == run.train_config.image_size and recipe["cache_size"] == run.train_config.cache_size
    assert recipe["temperature"] > 0 and str(folder / "predict.py") in record["files"]
    photos = sorted(Path(run.dataset_path).rglob("*.png"))[:4]
    big = tmp_path / "big.jpg"
    Image.new("RGB", (300, 200), (200, 30, 60)).save(big, quality=90)  # shrunk (and a JPEG)
    tiny = tmp_path / "tiny.png"
    Image.new("L", (12, 9), 90).save(tiny)  # enlarged, grayscale
    paths = [*map(str, photos), str(big), str(tiny)]
    result = subprocess.run(
        [sys.executable, str(folder / "predict.py"), *paths, "--json"], capture_output=True, text=True, check=True
    )
    theirs = [json.loads(line)["probabilities"] for line in result.stdout.splitlines()]
    predictor = Predictor(run)  # what `python -m core predict` computes: Flora's decoding, calibrated
    ours = predictor.predict_batch(np.stack([predictor.preprocess(path) for path in paths]))
    assert np.abs(np.asarray(theirs) - ours).max() < 1e-5


def test_an_export_carries_the_runs_card_and_holds_back_under_its_class_thresholds(run, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from core.results import model_card
    from core.results.evaluation.metrics import Evaluation
    from core.results.probabilities import class_thresholds

    copy = RunStore(copy_run(run.directory, tmp_path / "models" / run.run_id).parent).get(run.run_id)
    class_thresholds.save(copy.directory, {copy.classes[0]: 0.99}, copy.classes)
    folder = tmp_path / "out"
    record = export_run(copy, "onnx", folder)
    card = (folder / model_card.EXPORT_CARD).read_text()
    assert record["model_card"] == str(folder / model_card.EXPORT_CARD)
    metrics = model_card.read_metadata(card)["model-index"][0]["results"][0]["metrics"]
    assert metrics[0]["value"] == Evaluation.load(copy.directory).accuracy()
    recipe = json.loads((folder / "preprocessing.json").read_text())
    assert recipe["class_thresholds"] == {copy.classes[0]: 0.99}
    photos = sorted(Path(copy.dataset_path).rglob("*.png"))[:6]
    done = subprocess.run(
        [sys.executable, str(folder / "predict.py"), *map(str, photos), "--json"], capture_output=True, text=True
    )
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(answers) == len(photos)
    for answer in answers:
        top = max(answer["probabilities"])
        assert answer["abstained"] == (answer["label"] == copy.classes[0] and top < 0.99)
