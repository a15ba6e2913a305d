"""Device description, mixed-precision choice, and the backend-agnostic import rule."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time

import pytest

from core import device
from core.device import DeviceInfo, keras_backend_name, mixed_precision_policy
from tests.conftest import JAX_TEST_CACHE, PROJECT_ROOT


def test_backend_name_follows_the_environment(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert keras_backend_name() == "jax"


def test_quick_describe_without_a_gpu(monkeypatch):
    monkeypatch.setattr(device, "nvidia_gpus", lambda: [])
    info = device.quick_describe()
    assert info.kind == "cpu" and info.lock_name == "cpu" and info.label.startswith("CPU: ")


def test_quick_describe_with_gpus(monkeypatch):
    monkeypatch.setattr(device, "nvidia_gpus", lambda: ["NVIDIA H200", "NVIDIA H200"])
    info = device.quick_describe()
    assert info.label.startswith("2 x GPU: NVIDIA H200") and info.lock_name == "gpu"


@pytest.mark.parametrize(
    "info, policy",
    [
        (DeviceInfo("jax", "cpu", "x", 1), None),
        (DeviceInfo("jax", "gpu", "NVIDIA H200", 1, (9, 0)), "mixed_bfloat16"),
        (DeviceInfo("tensorflow", "gpu", "Tesla V100", 1, (7, 0)), "mixed_float16"),
    ],
)
def test_mixed_precision_only_on_gpus(info, policy):
    assert mixed_precision_policy(info) == policy


def test_describe_matches_the_backend():
    import keras

    info = device.describe()
    assert info.backend == keras.backend.backend() and info.count >= 1


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_core_runs_on_jax_without_tensorflow_installed(tmp_path):
    """Train and predict on JAX in a fresh process where importing TensorFlow fails, as on a JAX-only GPU box."""
    script = f"""
import sys
class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError("No module named 'tensorflow' (blocked by the test)", name=name)
        return None
sys.meta_path.insert(0, NoTensorFlow())
from pathlib import Path
from tests.conftest import make_image_dataset
from core.train import jobs
from core import run_job
from core.settings.config import AUGMENT_PRESETS, TrainConfig
from core.runs.store import RunStore
from core.inference import Predictor
data = make_image_dataset(Path({str(tmp_path)!r}) / "d", {{"a": 6, "b": 6}})
store = RunStore({str(tmp_path / "models")!r})
config = TrainConfig(image_size=32, weights="none", epochs=1, fine_tune_epochs=1, head=(4,),
                     augment=AUGMENT_PRESETS["light"], augmented_views=1)
sub = jobs.submit(store, data, config)
status = run_job.execute(store, sub, {str(tmp_path / "data")!r}, console=False, ingest_workers=1)
assert status.state == "done", status
result = Predictor(store.get(sub.run_id)).predict([next((data / "a").iterdir())])[0]
assert result.ok, result
print("ok", "tensorflow" in sys.modules)
"""
    env = {"KERAS_BACKEND": "jax", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **JAX_TEST_CACHE}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "ok False"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_a_jax_process_keeps_what_it_compiled_for_the_next_in_a_folder_for_this_cpu(tmp_path):
    """On JAX, Flora turns JAX's persistent compilation cache on in the machine cache, one folder per CPU: the second
    process loads the program the first compiled (JAX counts a cache hit). A setting of one's own wins; the
    TensorFlow backend gets none."""
    script = (
        "import os, core, jax, jax.numpy as jnp\n"
        "hits = []\n"
        "jax.monitoring.register_event_listener(lambda event, **_: hits.append(event.endswith('/cache_hits')))\n"
        "jax.jit(lambda x: x * 2 + 1)(jnp.arange(3.0)).block_until_ready()\n"
        "print(os.environ.get('JAX_COMPILATION_CACHE_DIR'), os.environ.get('JAX_COMPILATION_CACHE_MAX_SIZE'),"
        " any(hits))\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "KERAS_BACKEND", "FLORA_BACKEND"))}
    base["FLORA_MACHINE_CACHE"] = str(tmp_path / "machine")

    def run(**env) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=PROJECT_ROOT, env={**base, **env}, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.split()

    folder = tmp_path / "machine" / device.JAX_CACHE_DIRNAME / device.cpu_key()
    assert run(KERAS_BACKEND="jax") == [str(folder), str(device.JAX_CACHE_BYTES), "False"]  # compiled, and kept
    assert any(folder.iterdir())
    assert run(FLORA_BACKEND="jax") == [str(folder), str(device.JAX_CACHE_BYTES), "True"]  # loaded, not compiled
    own = tmp_path / "mine"
    assert run(KERAS_BACKEND="jax", JAX_COMPILATION_CACHE_DIR=str(own))[0] == str(own)
    assert run(KERAS_BACKEND="tensorflow")[:2] == ["None", "None"]
    assert device.cpu_key() == device.cpu_key() and device.cpu_key().rsplit("-", 1)[1].isalnum()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_jax_processes_writing_the_cache_at_once_lose_nothing_and_the_next_reads_every_program(tmp_path):
    """Six JAX processes compile the same eight programs into one empty cache at the same moment (JAX locks the folder
    for each entry): each answers right, every program is kept once, whole, and a seventh process compiles none."""
    script = (
        "import sys, time, core, jax, jax.numpy as jnp\n"
        "hits = []\n"
        "jax.monitoring.register_event_listener(lambda event, **_: hits.append(event.endswith('/cache_hits')))\n"
        "start = float(sys.argv[1])\n"
        "time.sleep(max(0.0, start - time.time()))\n"
        "total = sum(float(jax.jit(lambda x, k=k: (x * k + 1).sum())(jnp.arange(8.0 + k))) for k in range(8))\n"
        "print(total, sum(hits))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "KERAS_BACKEND", "FLORA_BACKEND"))}
    env |= {"KERAS_BACKEND": "jax", "FLORA_MACHINE_CACHE": str(tmp_path / "machine")}

    def start(when: float) -> subprocess.Popen:
        command = [sys.executable, "-c", script, str(when)]
        return subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    want = sum(float(((8.0 + k) * (7.0 + k) / 2) * k + 8.0 + k) for k in range(8))
    writers = [start(time.time() + 8) for _ in range(6)]  # each waits for the same moment after its imports
    for process in writers:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()[-2000:]
        assert float(out.split()[0]) == want
    folder = tmp_path / "machine" / device.JAX_CACHE_DIRNAME / device.cpu_key()
    entries = sorted(folder.glob("*-cache"))
    assert len(entries) >= 8 and all(entry.stat().st_size > 0 for entry in entries)
    reader = start(0)
    out, err = reader.communicate(timeout=300)
    assert reader.returncode == 0, err.decode()[-2000:]
    assert float(out.split()[0]) == want and int(out.split()[1]) >= 8  # every program loaded, none compiled
    assert sorted(folder.glob("*-cache")) == entries


@pytest.mark.parametrize(
    "info, size, training, expected",
    [
        (DeviceInfo("jax", "gpu", "NVIDIA H200", 1, (9, 0), 139.8), 224, True, 256),
        (DeviceInfo("jax", "gpu", "NVIDIA H200", 1, (9, 0), 139.8), 224, False, 512),
        (DeviceInfo("jax", "gpu", "NVIDIA H200", 8, (9, 0), 139.8), 224, True, 2048),  # global: per GPU x 8
        (DeviceInfo("tensorflow", "gpu", "Tesla T4", 1, (7, 5), 15.0), 224, True, 128),
        (DeviceInfo("tensorflow", "gpu", "small", 1, (8, 6), 6.0), 224, True, 32),
        (DeviceInfo("jax", "gpu", "NVIDIA H200", 1, (9, 0), 139.8), 128, True, 512),  # smaller images, more
        (DeviceInfo("jax", "gpu", "NVIDIA H200", 1, (9, 0), 139.8), 512, True, 32),
        (DeviceInfo("jax", "cpu", "x", 1), 224, True, 64),
        (DeviceInfo("jax", "cpu", "x", 2), 224, False, 128),
    ],
)
def test_recommended_batch_size_fills_the_device(info, size, training, expected):
    size_out = device.recommended_batch_size(info, size, training)
    assert size_out == expected
    assert size_out % info.count == 0


def test_labels_count_every_kind_of_device():
    assert DeviceInfo("jax", "cpu", "Xeon", 2).label == "2 x CPU: Xeon (jax)"
    assert DeviceInfo("jax", "gpu", "NVIDIA H200", 1).label == "GPU: NVIDIA H200 (jax)"


CUDA_NOISE = ("cuInit", "CUDA error", "cuda drivers", "cudart", "absl::InitializeLog")


@pytest.mark.slow
@pytest.mark.skipif(bool(device.nvidia_gpus()), reason="a GPU machine: its CUDA lines are never hidden")
def test_the_cli_on_a_machine_without_a_gpu_prints_no_cuda_lines(trained_run):
    """The walk: `core` commands printed TensorFlow's "failed call to cuInit: CUDA error" on a CPU machine."""
    import os

    photo = sorted((trained_run["dataset"] / "red").iterdir())[0]
    env = {
        **os.environ,
        "FLORA_MODELS_DIR": str(trained_run["models_root"]),
        "FLORA_DATA_DIR": str(trained_run["data_root"]),
        "KERAS_BACKEND": "tensorflow",
    }
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a person's shell has it
    for args in (["runs"], ["predict", trained_run["run_id"], str(photo)]):  # the second loads TensorFlow
        done = subprocess.run(
            [sys.executable, "-m", "core", *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        noisy = [line for line in done.stderr.splitlines() if any(n in line for n in CUDA_NOISE)]
        assert not noisy, noisy
    assert done.stdout.startswith(f"{photo}: ")  # the prediction itself came


def test_the_quiet_import_is_set_up_only_where_no_gpu_is_expected(monkeypatch):
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.setattr(device, "nvidia_gpus", lambda: ["NVIDIA H100"])
    assert device.quiet_tensorflow_where_no_gpu() is False  # a GPU: nothing hidden
    assert not any(type(f).__name__ == "_QuietTensorFlowImport" for f in sys.meta_path)
    monkeypatch.setattr(device, "nvidia_gpus", lambda: [])
    assert device.quiet_tensorflow_where_no_gpu() is True
    assert device.quiet_tensorflow_where_no_gpu() is True  # once only
    assert sum(type(f).__name__ == "_QuietTensorFlowImport" for f in sys.meta_path) == 1
