"""The device check: does the Keras backend's framework see the GPU the NVIDIA driver has, after Flora's imports?

`python -m core device` prints it; the app's sidebar runs it once in a process of its own (`CheckInBackground`)
and says the GPU is seen, or that training will run on the CPU, why, and the fix.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass

from core.device import (
    DeviceInfo,
    describe,
    keras_backend_name,
    without_cuda_noise,
)
from core.gpu_build import read_driver
from core.paths import PROJECT_ROOT

FRAMEWORK_NAMES = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}
# What a Flora process imports besides Keras: the training path, and TensorFlow where it is installed (the
# exports and TF-only extras import it in the same process). JAX falls back to the CPU silently when
# another framework loaded other CUDA libraries before it: the check imports them all, in Flora's order.
FLORA_IMPORTS = ("core.train.training", "core.inference", "core.results.evaluation.explain")


@dataclass(frozen=True)
class DeviceCheck:
    ok: bool  # False only where a driver is there and the framework does not see its GPU
    sentence: str  # "NVIDIA H100 80GB HBM3, TensorFlow sees it" or why not
    fix: str | None
    info: DeviceInfo
    driver: str | None  # "NVIDIA H100 80GB HBM3, driver 580.95.05, CUDA 13.0"

    def to_dict(self) -> dict:
        return {"ok": self.ok, "sentence": self.sentence, "fix": self.fix, "driver": self.driver, **self.info.to_dict()}


def check() -> DeviceCheck:
    """Does the Keras backend's framework see the GPU the NVIDIA driver has, after Flora's imports? If not, why
    and what fixes it. Imports the framework (seconds): the app runs it in a process of its own."""
    import importlib

    driver = read_driver() if os.environ.get("CUDA_VISIBLE_DEVICES", None) not in ("", "-1") else None
    backend = keras_backend_name()
    framework = FRAMEWORK_NAMES.get(backend, backend)
    import logging

    logging.getLogger("jax._src.xla_bridge").setLevel(logging.ERROR)  # "Unable to initialize backend 'tpu'"
    tensorflow_first = "tensorflow" in sys.modules  # in this process before JAX started: JAX may miss the GPU
    with without_cuda_noise():
        if backend == "jax":
            with contextlib.suppress(Exception):
                import jax

                jax.devices()  # JAX first: its CUDA libraries before anything else's (Flora's order too)
        for module in FLORA_IMPORTS:
            with contextlib.suppress(Exception):
                importlib.import_module(module)
        if backend != "tensorflow":
            with contextlib.suppress(Exception):
                import tensorflow  # noqa: F401  the exports' framework, in the same process
        info = describe()
    if info.kind == "gpu":
        count = f"{info.count} x " if info.count > 1 else ""
        return DeviceCheck(True, f"{count}{info.name}, {framework} sees it", None, info, driver and driver.describe())
    if driver is None:
        hidden = os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1")
        why = "CUDA_VISIBLE_DEVICES hides the GPUs" if hidden else "no NVIDIA driver found"
        return DeviceCheck(True, f"{why}: training runs on the CPU ({info.name}, {framework})", None, info, None)
    reason, fix = _why_not_seen(backend, driver, tensorflow_first)
    sentence = f"driver found ({driver.describe()}), {framework} sees no GPU: {reason}"
    return DeviceCheck(False, sentence, fix, info, driver.describe())


def _has_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _why_not_seen(backend: str, driver, tensorflow_first: bool = False) -> tuple[str, str]:
    """The likeliest reason a framework misses the driver's GPU, and the fix, from what is installed."""
    reinstall = "make run (where nvidia-smi lists a GPU it makes .venv afresh with the GPU build)"
    if backend == "tensorflow":
        if not _has_module("nvidia.cudnn") and not _has_module("nvidia.cuda_runtime"):
            return (
                "its CUDA libraries are not installed (this environment has the CPU build, plain tensorflow)",
                f"{reinstall}, or pip install -r requirements-gpu-tensorflow.txt",
            )
        built = _tensorflow_cuda()
        if built and driver.cuda and driver.cuda[0] < int(built.split(".")[0]):
            return (
                f"the driver supports CUDA {driver.cuda[0]}.{driver.cuda[1]}, TensorFlow's libraries are CUDA {built}",
                "update the NVIDIA driver (525 or later for CUDA 12)",
            )
        return (
            "TensorFlow found its CUDA libraries but could not start the GPU (its messages above say why)",
            "run `python -c \"import tensorflow as tf; print(tf.config.list_physical_devices('GPU'))\"` to see them",
        )
    if backend == "jax":
        plugins = [m for m in (12, 13) if _has_module(f"jax_plugins.xla_cuda{m}") or _has_module(f"jax_cuda{m}_plugin")]
        if not plugins:
            return (
                "JAX's CUDA plugin is not installed (this environment has the CPU build, plain jax)",
                f"FLORA_BACKEND=jax {reinstall}, or pip install -r requirements-gpu-jax-cuda"
                f"{13 if (driver.cuda_major or 13) >= 13 else 12}.txt",
            )
        if driver.cuda_major is not None and max(plugins) > driver.cuda_major:
            return (
                f"JAX's plugin is for CUDA {max(plugins)}, the driver supports CUDA {driver.cuda_major}",
                f"pip install -r requirements-gpu-jax-cuda{driver.cuda_major}.txt in a fresh environment, or update "
                "the driver (580 or later for CUDA 13)",
            )
        if tensorflow_first:
            return (
                "TensorFlow was imported before JAX started and may have loaded its own CUDA libraries, and JAX "
                "then falls back to the CPU",
                "start JAX first (Flora's processes do), and keep one framework's CUDA libraries in the environment "
                "(the Makefile's JAX GPU build does)",
            )
        return (
            "JAX's CUDA plugin is installed but did not start (JAX's warning above says why)",
            'run `python -c "import jax; print(jax.devices())"` to see it',
        )
    return ("the framework reports no GPU", "see the framework's own messages")


def _tensorflow_cuda() -> str | None:
    try:
        import tensorflow as tf

        return tf.sysconfig.get_build_info().get("cuda_version")
    except Exception:
        return None


class CheckInBackground:
    """`python -m core device --json` in a process of its own (the framework's import takes seconds): the app
    starts it once where a driver is found and shows its answer when it comes."""

    def __init__(self, python: str = sys.executable):

        self._process = subprocess.Popen(
            [python, "-m", "core", "device", "--json"],
            cwd=str(PROJECT_ROOT),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._result: dict | None = None

    @property
    def pid(self) -> int:
        return self._process.pid

    def result(self) -> dict | None:
        """The check's JSON once finished (None while it runs); a check that crashed says so as a failed check."""
        if self._result is None and self._process.poll() is not None:
            out, _ = self._process.communicate()
            try:
                self._result = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                self._result = {
                    "ok": False,
                    "sentence": f"the device check failed (exit status {self._process.returncode})",
                    "fix": "run `python -m core device` in a terminal to see why",
                }
        return self._result
