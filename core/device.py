"""Which device trains: the Keras backend, CPU or which GPU(s), and what that implies.

`describe()` asks the backend's framework; `quick_describe()` only reads the environment and
`nvidia-smi`, so the app's sidebar can show it without importing TensorFlow or JAX.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class DeviceInfo:
    backend: str  # "tensorflow" | "jax" | "torch"
    kind: str  # "gpu" | "cpu"
    name: str  # "NVIDIA H200", or the CPU model
    count: int  # devices of that kind
    compute_capability: tuple[int, int] | None = None

    @property
    def label(self) -> str:
        """One line for people: "GPU: NVIDIA H200 (jax)", "2 x GPU: ...", "CPU: ... (tensorflow)"."""
        count = f"{self.count} x " if self.count > 1 and self.kind == "gpu" else ""
        return f"{count}{self.kind.upper()}: {self.name} ({self.backend})"

    @property
    def lock_name(self) -> str:
        """One training at a time per accelerator: the name of its lock."""
        return "gpu" if self.kind == "gpu" else "cpu"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["label"] = self.label
        return data


def keras_backend_name() -> str:
    """The backend Keras will use, read the way Keras reads it, without importing Keras."""
    backend = os.environ.get("KERAS_BACKEND")
    if backend:
        return backend
    config = os.path.join(os.environ.get("KERAS_HOME") or os.path.expanduser("~/.keras"), "keras.json")
    try:
        import json

        with open(config) as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def nvidia_gpus() -> list[str]:
    """GPU names from `nvidia-smi -L`; empty when there is no NVIDIA driver."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return []
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    names = []
    for line in out.splitlines():
        if line.startswith("GPU "):
            names.append(line.split(":", 1)[1].split("(UUID")[0].strip())
    return names


def quick_describe() -> DeviceInfo:
    """Best guess without importing a framework (for the UI's sidebar)."""
    gpus = nvidia_gpus()
    backend = keras_backend_name()
    if gpus:
        return DeviceInfo(backend, "gpu", gpus[0], len(gpus))
    return DeviceInfo(backend, "cpu", cpu_name(), 1)


def describe() -> DeviceInfo:
    """What the Keras backend actually sees (imports the framework)."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            return _describe_tensorflow()
        if backend == "jax":
            return _describe_jax()
        if backend == "torch":
            return _describe_torch()
    except Exception:
        pass
    return DeviceInfo(backend, "cpu", cpu_name(), 1)


def _describe_tensorflow() -> DeviceInfo:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return DeviceInfo("tensorflow", "cpu", cpu_name(), len(tf.config.list_logical_devices("CPU")) or 1)
    details = tf.config.experimental.get_device_details(gpus[0])
    return DeviceInfo(
        "tensorflow",
        "gpu",
        details.get("device_name", "GPU"),
        len(gpus),
        details.get("compute_capability"),
    )


def _describe_jax() -> DeviceInfo:
    import jax

    devices = jax.devices()
    gpus = [d for d in devices if d.platform == "gpu"]
    if not gpus:
        return DeviceInfo("jax", "cpu", cpu_name(), len(devices))
    capability = getattr(gpus[0], "compute_capability", None)
    if isinstance(capability, str) and "." in capability:
        capability = tuple(int(p) for p in capability.split(".")[:2])
    return DeviceInfo("jax", "gpu", gpus[0].device_kind, len(gpus), capability)


def _describe_torch() -> DeviceInfo:
    import torch

    if not torch.cuda.is_available():
        return DeviceInfo("torch", "cpu", cpu_name(), 1)
    return DeviceInfo(
        "torch",
        "gpu",
        torch.cuda.get_device_name(0),
        torch.cuda.device_count(),
        torch.cuda.get_device_capability(0),
    )


def mixed_precision_policy(info: DeviceInfo) -> str | None:
    """The mixed-precision policy for this device, or None on CPU (where it only slows things)."""
    if info.kind != "gpu":
        return None
    capability = info.compute_capability
    if capability is None or tuple(capability) >= (8, 0):
        return "mixed_bfloat16"  # Ampere and later: bf16 tensor cores, no loss scaling needed
    return "mixed_float16"


@contextlib.contextmanager
def dtype_policy(policy: str | None) -> Iterator[None]:
    """Use a Keras dtype policy inside the block and restore the previous one after."""
    import keras

    if policy is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
