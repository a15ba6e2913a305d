"""Issue 20.1: the GPU build chosen from the NVIDIA driver, and the check that the framework sees the GPU.

There is no GPU here: a fake `nvidia-smi` on PATH says what a machine with an H100 and a recent driver says,
and the Makefile's dry run and the device check are run against it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.gpu_build import CPU, JAX_GPU, TENSORFLOW_GPU, Driver, choose, read_driver
from tests.conftest import PROJECT_ROOT
from tests.core_process import run_core

H100 = Driver(["NVIDIA H100 80GB HBM3"], "580.95.05", (13, 0))
OLDER = Driver(["NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-40GB"], "550.54.15", (12, 4))

FAKE_SMI = """#!/bin/sh
# What nvidia-smi prints on a machine with one H100 and driver 580 (CUDA 13.0).
case "$1" in
  -L) echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-4d1f2c3b-0000-1111-2222-333344445555)";;
  --query-gpu=driver_version*) echo "580.95.05";;
  --query-gpu=memory.total*) echo "81559";;
  *) echo "| NVIDIA-SMI 580.95.05              Driver Version: 580.95.05      CUDA Version: 13.0     |";;
esac
"""


@pytest.fixture
def fake_smi(tmp_path, monkeypatch):
    """A directory holding the fake `nvidia-smi`, put first on PATH."""
    folder = tmp_path / "bin"
    folder.mkdir()
    smi = folder / "nvidia-smi"
    smi.write_text(FAKE_SMI)
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return folder


def test_a_machine_without_a_driver_gets_the_cpu_build():
    build = choose({}, driver=None)
    assert build.requirements == CPU and not build.gpu and "no NVIDIA driver" in build.reason
    assert choose({"FLORA_BACKEND": "jax"}, driver=None).requirements == CPU


def test_a_driver_picks_tensorflows_gpu_build_or_jaxs_by_the_drivers_cuda():
    assert choose({}, H100).requirements == TENSORFLOW_GPU
    assert "NVIDIA H100 80GB HBM3, driver 580.95.05, CUDA 13.0 found" in choose({}, H100).reason
    assert choose({"FLORA_BACKEND": "jax"}, H100).requirements == JAX_GPU[13]
    older = choose({"FLORA_BACKEND": "jax"}, OLDER)
    assert older.requirements == JAX_GPU[12] and "supports CUDA 12, not 13" in older.reason
    assert "2 x NVIDIA A100" in older.reason
    # no CUDA in the header: the driver's branch decides (580 is the first with CUDA 13)
    assert choose({"FLORA_BACKEND": "jax"}, Driver(["G"], "575.51.03", None)).requirements == JAX_GPU[12]
    assert choose({"FLORA_BACKEND": "jax"}, Driver(["G"], "580.65.06", None)).requirements == JAX_GPU[13]


def test_the_variables_override_the_driver():
    assert choose({"FLORA_GPU": "0"}, H100).requirements == CPU
    assert choose({"FLORA_GPU": "1"}, None).requirements == TENSORFLOW_GPU  # a container build with no driver
    assert choose({"FLORA_GPU": "1", "FLORA_BACKEND": "jax"}, None).requirements == JAX_GPU[13]
    assert choose({"FLORA_BACKEND": "jax", "FLORA_CUDA": "12"}, H100).requirements == JAX_GPU[12]
    for bad in ({"FLORA_GPU": "yes"}, {"FLORA_BACKEND": "torch"}, {"FLORA_BACKEND": "jax", "FLORA_CUDA": "11"}):
        with pytest.raises(SystemExit, match="must be"):
            choose(bad, H100)


def test_each_builds_requirements_file_is_there_pinned_and_holds_one_frameworks_cuda():
    for name in (TENSORFLOW_GPU, *JAX_GPU.values()):
        lines = [line.strip() for line in (PROJECT_ROOT / name).read_text().splitlines()]
        pins = [line for line in lines if line and not line.startswith(("#", "-r"))]
        assert "-r requirements.txt" in lines and pins
        assert all("==" in line for line in pins), name  # pinned: every machine resolves the same
        cuda = {line.split("==")[0] for line in pins if line.startswith("nvidia-")}
        assert cuda, name
    tensorflow = (PROJECT_ROOT / TENSORFLOW_GPU).read_text()
    assert "tensorflow[and-cuda]==" in tensorflow and "jax" not in tensorflow.replace("JAX", "")
    assert "jax[cuda13]==" in (PROJECT_ROOT / JAX_GPU[13]).read_text()
    assert "jax[cuda12]==" in (PROJECT_ROOT / JAX_GPU[12]).read_text()
    assert "and-cuda" not in (PROJECT_ROOT / JAX_GPU[13]).read_text()


def test_the_driver_is_read_from_nvidia_smi(fake_smi):
    driver = read_driver()
    assert driver == Driver(["NVIDIA H100 80GB HBM3"], "580.95.05", (13, 0))


def test_no_nvidia_smi_means_no_driver(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing here
    assert read_driver() is None


def _make(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        ["make", "--no-print-directory", *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_the_makefile_installs_the_gpu_build_where_nvidia_smi_lists_a_gpu(fake_smi, tmp_path):
    """A dry run of the install step (`make -n` on a venv not made yet): which requirements pip gets."""
    env = {**os.environ, "VENV": str(tmp_path / "venv"), "PYTHON": sys.executable}
    env.pop("FLORA_GPU", None), env.pop("FLORA_BACKEND", None), env.pop("KERAS_BACKEND", None)
    install = _make(["-n", "run"], env)
    assert f"uv pip install --python {tmp_path / 'venv'}/bin/python" in install  # the pinned installer, in the venv
    assert f"--quiet -r {TENSORFLOW_GPU} -r requirements-dev.txt" in install and "--compile-bytecode" not in install
    assert "PYTHONDONTWRITEBYTECODE= " in install and "'core.cli keras" in install  # then what Flora imports, compiled
    with_pip = _make(["-n", "run", "INSTALLER=pip"], env)
    assert f"pip install --quiet -r {TENSORFLOW_GPU} -r requirements-dev.txt" in with_pip and "uv pip" not in with_pip
    assert "core device" in install  # the check that TensorFlow sees the GPU, after the install
    assert f"{tmp_path / 'venv'}/.installed-gpu-tensorflow" in install
    jax = _make(["-n", "run"], {**env, "FLORA_BACKEND": "jax"})
    assert f"-r {JAX_GPU[13]} -r requirements-dev.txt" in jax and "KERAS_BACKEND=jax" in jax
    assert f"-r {CPU} -r requirements-dev.txt" in _make(["-n", "run"], {**env, "FLORA_GPU": "0"})
    said = _make(["build"], env)
    assert "NVIDIA H100 80GB HBM3, driver 580.95.05, CUDA 13.0 found" in said and TENSORFLOW_GPU in said
    without = {**env, "PATH": os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != str(fake_smi))}
    assert f"-r {CPU} -r requirements-dev.txt" in _make(["-n", "run"], without)


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend, framework, reason, fix",
    [
        ("tensorflow", "TensorFlow", "its CUDA libraries are not installed", TENSORFLOW_GPU),
        ("jax", "JAX", "JAX's CUDA plugin is not installed", JAX_GPU[13]),
    ],
)
def test_the_device_check_reports_the_driver_the_framework_does_not_see(fake_smi, backend, framework, reason, fix):
    """The CPU builds installed here, a driver reported by the fake nvidia-smi: the mismatch a user would have
    after installing plain `tensorflow` (or `jax`) on a GPU machine, said with its fix; exit status 1."""
    env = {**os.environ, "KERAS_BACKEND": backend}
    done = run_core("device", env=env, timeout=300)  # forked on TensorFlow (tests/core_process.py), new on JAX
    assert done.returncode == 1, done.stdout + done.stderr
    expected = f"driver found (NVIDIA H100 80GB HBM3, driver 580.95.05, CUDA 13.0), {framework} sees no GPU: {reason}"
    assert done.stdout.startswith(expected), done.stdout
    assert "fix: " in done.stderr and fix in done.stderr
    as_json = run_core("device", "--json", env=env, timeout=300)
    checked = json.loads(as_json.stdout.strip().splitlines()[-1])
    assert checked["ok"] is False and checked["kind"] == "cpu" and checked["backend"] == backend
    assert checked["driver"] == "NVIDIA H100 80GB HBM3, driver 580.95.05, CUDA 13.0"


@pytest.mark.slow
def test_the_device_check_without_a_driver_says_the_cpu_trains(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    done = run_core("device", env=env, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("no NVIDIA driver found: training runs on the CPU")


@pytest.mark.slow
def test_flora_backend_names_the_keras_backend_unless_keras_backend_is_set():
    def backend(**env) -> str:
        base = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "FLORA_BACKEND")}
        code = "import core, keras; print(keras.backend.backend())"
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=PROJECT_ROOT, env={**base, **env}, capture_output=True, text=True
        )
        return done.stdout.strip().splitlines()[-1]

    assert backend(FLORA_BACKEND="jax") == "jax"
    assert backend(FLORA_BACKEND="jax", KERAS_BACKEND="tensorflow") == "tensorflow"
