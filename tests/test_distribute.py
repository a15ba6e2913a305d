"""Data-parallel training over several devices: padding helpers, and real runs on 2 virtual CPUs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from core.train.batches import labelled_batch
from core.train.distribute import SINGLE, data_parallel, pad_rows, padded_length
from core.train.features import even_batch_size
from tests.conftest import JAX_TEST_CACHE, PROJECT_ROOT, xla_test_flags


@pytest.mark.parametrize("n, multiple, expected", [(0, 2, 0), (5, 1, 5), (5, 2, 6), (8, 4, 8), (9, 4, 12)])
def test_padded_length(n, multiple, expected):
    assert padded_length(n, multiple) == expected


def test_pad_rows_repeats_the_last_row():
    out = pad_rows(np.arange(6).reshape(3, 2), 5)
    np.testing.assert_array_equal(out, [[0, 1], [2, 3], [4, 5], [4, 5], [4, 5]])
    same = np.zeros((4, 2))
    assert pad_rows(same, 4) is same


@pytest.mark.parametrize(
    "n, largest, multiple, expected",
    [(350, 64, 1, 59), (3022, 64, 1, 63), (64, 64, 1, 64), (10, 64, 1, 10), (10, 64, 4, 12), (1, 64, 2, 2)],
)
def test_even_batch_size_pads_less_than_a_row_perlabelled_batch(n, largest, multiple, expected):
    size = even_batch_size(n, largest, multiple)
    assert size == expected and size % multiple == 0
    batches = -(-n // size)
    assert batches == -(-n // largest)  # no more steps than the largest batch would take


@pytest.mark.parametrize("class_weights", [None, np.array([1.0, 3.0], dtype=np.float32)])
def test_batches_are_padded_to_the_replicas_with_zero_weight(class_weights):
    source = SimpleNamespace(replicas=4, num_classes=2, class_weights=class_weights)
    x, y, w = labelled_batch(np.arange(5, dtype=np.float32)[:, None], np.array([0, 1, 1, 0, 1]), source)
    assert len(x) == len(y) == len(w) == 8
    np.testing.assert_array_equal(x[5:, 0], [4, 4, 4])
    expected = [1, 1, 1, 1, 1] if class_weights is None else [1, 3, 3, 1, 3]
    np.testing.assert_array_equal(w, [*expected, 0, 0, 0])
    # one replica: the batch is left alone, and weights appear only with class weights
    single = SimpleNamespace(replicas=1, num_classes=2, class_weights=class_weights)
    out = labelled_batch(np.zeros((5, 1)), np.array([0, 1, 1, 0, 1]), single)
    assert len(out) == (2 if class_weights is None else 3) and len(out[0]) == 5
    assert labelled_batch(np.zeros((5, 1)), np.zeros(5, int), source, with_labels=False)[0].shape == (8, 1)


def test_one_device_changes_nothing():
    from core.device import DeviceInfo

    with data_parallel(DeviceInfo("tensorflow", "cpu", "x", 1)) as plan:
        assert plan.replicas == 1 and plan.label == SINGLE


# A tiny run on 2 virtual CPU devices in a fresh process (devices must be set before the framework
# starts); then its saved model is loaded and predicts on one device, as the app would load it.
_TRAIN = """
import json, os, sys
backend, tmp = sys.argv[1], sys.argv[2]
if backend == "tensorflow":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from pathlib import Path
from tests.conftest import make_image_dataset
from core.train import jobs
from core import run_job
from core.settings.config import AUGMENT_PRESETS, TrainConfig
from core.runs.store import RunStore
data = make_image_dataset(Path(tmp) / "d", {"a": 9, "b": 8, "c": 7})
store = RunStore(Path(tmp) / "models")
config = TrainConfig(image_size=32, weights="none", epochs=1, fine_tune_epochs=1, batch_size=5, head=(8,),
                     augment=AUGMENT_PRESETS["light"], augmented_views=0, class_weighting="balanced")
# the tiny test backbone (conftest's): BatchNorm in every stage and ResNet-50's stage names, so both phases and the
# frozen BatchNorm of phase 2 run data parallel as they would on ResNet-50, without compiling ResNet-50's training
# graph on 2 devices (the subject is the distribution, not the network)
sub = jobs.submit(store, data, config)
status = run_job.execute(store, sub, Path(tmp) / "data", console=False, ingest_workers=1)
print(json.dumps({"run_id": sub.run_id, **{k: status.get(k) for k in ("state", "device", "parallel", "epochs_done")}}))
"""


def _predict_here(tmp, run_id: str) -> dict:
    """The saved run's predictions on its own test photos, in this process: one row each, rows that sum to 1."""
    from pathlib import Path

    from core.inference import Predictor
    from core.results.evaluation.metrics import Evaluation
    from core.runs.store import RunStore

    run = RunStore(Path(tmp) / "models").get(run_id)
    evaluation = Evaluation.load(run.directory)
    results = Predictor(run).predict([Path(tmp) / "d" / p for p in evaluation.paths])
    sums = evaluation.probabilities.sum(axis=1)
    return {
        "ok": all(r.ok for r in results),
        "rows": len(evaluation.probabilities),
        "test": len(evaluation.labels),
        "sums_to_one": bool(abs(sums - 1).max() < 1e-3),
    }


def _python(code: str, args: list[str], env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=PROJECT_ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "FLORA_TEST_BACKBONE": "tiny",
            **JAX_TEST_CACHE,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


BACKENDS = [
    pytest.param("tensorflow", {"KERAS_BACKEND": "tensorflow"}, "tf.distribute.MirroredStrategy", id="tensorflow"),
    pytest.param(
        "jax",
        {"KERAS_BACKEND": "jax", "XLA_FLAGS": xla_test_flags("--xla_force_host_platform_device_count=2")},
        "keras.distribution.DataParallel",
        id="jax",
        marks=pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed"),
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("backend, env, strategy", BACKENDS)
def test_two_devices_train_data_parallel_and_save_a_normal_model(tmp_path, backend, env, strategy):
    """Phase 1 on cached features (extraction, head fit), phase 2 and evaluation on images, all on 2 devices."""
    env = {**env, "HOME": str(tmp_path)}
    status = _python(_TRAIN, [backend, str(tmp_path)], env)
    assert status["state"] == "done" and status["epochs_done"] == 2
    assert status["device"].startswith("2 x CPU: ")
    assert status["parallel"] == f"data parallel over 2 devices ({strategy})"
    # The saved model is a plain Keras model: a one-device process loads it and predicts, this one, whichever
    # backend it runs (a run trained on JAX predicts under the suite's TensorFlow: the file holds no backend)
    predicted = _predict_here(tmp_path, status["run_id"])
    # padded rows were dropped: one probability row per test image
    assert predicted == {"ok": True, "rows": predicted["test"], "test": predicted["test"], "sums_to_one": True}
    assert predicted["test"] > 0
