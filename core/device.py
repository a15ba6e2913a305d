"""Which device trains: the Keras backend, CPU or which GPU(s), and what that implies.

`describe()` asks the backend's framework; `quick_describe()` only reads the environment and
`nvidia-smi`, so the app's sidebar can show it without importing TensorFlow or JAX.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.abc
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, MutableMapping
from dataclasses import asdict, dataclass

from core import WrappedLoader, find_spec_elsewhere
from core.paths import machine_cache_dir


@dataclass(frozen=True)
class DeviceInfo:
    backend: str  # "tensorflow" | "jax" | "torch"
    kind: str  # "gpu" | "cpu"
    name: str  # "NVIDIA H200", or the CPU model
    count: int  # devices of that kind
    compute_capability: tuple[int, int] | None = None
    memory_gb: float | None = None  # of one GPU, when known

    @property
    def label(self) -> str:
        """One line for people: "GPU: NVIDIA H200 (jax)", "2 x GPU: ...", "CPU: ... (tensorflow)"."""
        count = f"{self.count} x " if self.count > 1 else ""  # 2 x CPU: virtual CPU devices (tests)
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


# JAX's persistent compilation cache (JAX's own variables; one already set wins): the programs a JAX process compiles
# (each training and evaluation step, every weight initialiser, each eager operation's shape) are kept on disk and the
# processes after it load them instead of compiling again. Every one is kept (JAX keeps only those over 1 s by
# default; on a CPU most compile in less, and a tiny JAX training process spent 35 of its 50 CPU-s compiling), up to
# JAX_CACHE_BYTES (JAX drops the least recently used, and locks the folder while it reads or writes an entry, with
# the `filelock` package: without it the cache stays off). JAX_COMPILATION_CACHE_MAX_SIZE=0 turns it off.
JAX_CACHE_BYTES = 2 * 1024**3
JAX_CACHE_DIRNAME = "jax-programs"


def keep_jax_programs(environ: MutableMapping[str, str]) -> None:
    """Turn JAX's persistent compilation cache on in `environ` (before JAX is imported: JAX reads it then), in the
    machine cache (core.paths.machine_cache_dir), one folder per CPU: the code compiled for a CPU's instruction set
    is only for it, JAX's key for a program does not hold the CPU's features, and a home folder can be shared by
    machines that differ."""
    if "JAX_COMPILATION_CACHE_DIR" in environ:
        return  # one's own cache, as one set it
    if importlib.util.find_spec("filelock") is None:
        return  # JAX's capped cache locks its folder with it (processes writing at once); uncapped, JAX writes unlocked
    environ["JAX_COMPILATION_CACHE_DIR"] = str(machine_cache_dir() / JAX_CACHE_DIRNAME / cpu_key())
    environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(JAX_CACHE_BYTES))


def cpu_key() -> str:
    """A short name for this CPU's model and instruction set: its name, then a hash of its model and flags."""
    features = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith(("flags", "Features", "model name", "cpu family", "model\t")):
                features += line
            elif not line.strip() and features:
                break  # the first processor's lines are enough
    features = features or f"{platform.machine()} {platform.processor()}"
    name = re.sub(r"[^A-Za-z0-9]+", "-", cpu_name()).strip("-")[:40] or "cpu"
    return f"{name}-{hashlib.blake2b(features.encode(), digest_size=6).hexdigest()}"


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


def nvidia_memory_gb() -> float | None:
    """Memory of the first NVIDIA GPU in GiB from `nvidia-smi`; None without one."""
    exe = shutil.which("nvidia-smi")
    if not exe or os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
        return round(float(out.split()[0]) / 1024, 1)  # MiB
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def quick_describe() -> DeviceInfo:
    """Best guess without importing a framework (for the UI's sidebar)."""
    gpus = nvidia_gpus()
    backend = keras_backend_name()
    if gpus:
        return DeviceInfo(backend, "gpu", gpus[0], len(gpus), memory_gb=nvidia_memory_gb())
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
        len(tf.config.list_logical_devices("GPU")) or len(gpus),
        details.get("compute_capability"),
        nvidia_memory_gb(),
    )


def _describe_jax() -> DeviceInfo:
    import jax

    devices = jax.local_devices()  # this process's: a multi-host run's others are not this process's to use alone
    gpus = [d for d in devices if d.platform == "gpu"]
    if not gpus:
        return DeviceInfo("jax", "cpu", cpu_name(), len(devices))
    capability = getattr(gpus[0], "compute_capability", None)
    if isinstance(capability, str) and "." in capability:
        capability = tuple(int(p) for p in capability.split(".")[:2])
    memory = None
    try:
        memory = round(gpus[0].memory_stats()["bytes_limit"] / 2**30, 1)  # what XLA may use
    except Exception:
        memory = nvidia_memory_gb()
    return DeviceInfo("jax", "gpu", gpus[0].device_kind, len(gpus), capability, memory)


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
        round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
    )


# What TensorFlow's C++ side prints at import on a machine without an NVIDIA driver: alarming
# ("failed call to cuInit: CUDA error") and useless there. Flora says "no GPU found" once instead.
_NO_GPU_NOISE = (
    "cudart_stub.cc",
    "cuda_platform.cc",
    "cuInit",
    "All log messages before absl::InitializeLog",
    "Unable to register cu",
    "computation placer already registered",
    "cpu_feature_guard.cc",
    "oneDNN custom operations are on",
    "To enable the following instructions",
    "rebuild TensorFlow with the appropriate compiler flags",
)


@contextlib.contextmanager
def without_cuda_noise() -> Iterator[None]:
    """Around importing the framework and listing its devices: no CUDA noise where there is no GPU.

    On a machine with no NVIDIA driver, TensorFlow prints CUDA errors from C++ to file descriptor 2
    ("failed call to cuInit"), where Python cannot filter them: they are caught in a temporary file
    for the length of the block and everything else in it is passed on. With a GPU, nothing changes.
    """
    if nvidia_gpus():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode("utf-8", errors="replace").splitlines()
            kept = [line for line in lines if line.strip() and not any(n in line for n in _NO_GPU_NOISE)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


class _QuietLoader(WrappedLoader):
    """TensorFlow's own loader, run inside without_cuda_noise, with a first look at its devices (where cuInit
    fails on a machine without a driver) inside it too."""

    @contextlib.contextmanager
    def around(self, module):
        with without_cuda_noise():
            yield
            with contextlib.suppress(Exception):
                module.config.list_physical_devices()


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds nothing but TensorFlow, once: its first import, whoever makes it (Keras included), goes through
    _QuietLoader."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = find_spec_elsewhere(self, fullname, path, target)  # with core's own finder, in either order
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow_where_no_gpu() -> bool:
    """Where no GPU is expected (no NVIDIA driver, or CUDA_VISIBLE_DEVICES hides them), TensorFlow's first import
    and device probe, whenever a command makes them, pass through without_cuda_noise: no "failed call to cuInit:
    CUDA error" lines from a CPU machine. With a GPU nothing changes, so a real CUDA error is never hidden. Returns
    whether it was set up (False: a GPU, or TensorFlow already imported)."""
    if "tensorflow" in sys.modules or nvidia_gpus():
        return False
    if not any(isinstance(finder, _QuietTensorFlowImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
    return True


def mixed_precision_policy(info: DeviceInfo) -> str | None:
    """The mixed-precision policy for this device, or None on CPU (where it only slows things)."""
    if info.kind != "gpu":
        return None
    capability = info.compute_capability
    if capability is None or tuple(capability) >= (8, 0):
        return "mixed_bfloat16"  # Ampere and later: bf16 tensor cores, no loss scaling needed
    return "mixed_float16"


# Images per batch that a GPU of at least this many GiB holds for ResNet-50 at 224 px under
# mixed precision, with room to spare: (GiB, full fine-tune, frozen backbone / inference).
# Past ~256 a step is already compute-bound, so bigger batches buy memory pressure, not speed.
_GPU_BATCH_TABLE = ((30, 256, 512), (14, 128, 256), (7, 64, 128), (0, 32, 64))
CPU_BATCH = 64  # on a CPU throughput is flat past ~32-64 images; more only costs memory


def recommended_batch_size(info: DeviceInfo, image_size: int = 224, training: bool = True) -> int:
    """A per-step batch that fills `info`'s devices: per-GPU size by memory, times the GPU count.

    Args:
        info: the device, from `describe()` (or `quick_describe()`).
        image_size: the model input; memory per image grows with its square.
        training: True for a full fine-tune step (activations kept for the backward pass),
            False for a frozen backbone or inference (forward only, about half the memory).
    """
    if info.kind != "gpu":
        return CPU_BATCH * max(1, info.count)
    memory = info.memory_gb if info.memory_gb is not None else 16.0
    for floor, full, forward in _GPU_BATCH_TABLE:
        if memory >= floor:
            per_device = full if training else forward
            break
    scale = (224 / max(32, image_size)) ** 2  # smaller images: more of them fit
    per_device = int(min(4 * per_device, max(8, per_device * scale)))
    per_device = 1 << (per_device.bit_length() - 1)  # a power of two: friendly to XLA's tiling
    return per_device * max(1, info.count)


def input_workers(info: DeviceInfo) -> int:
    """Threads that read and crop cached batches: enough to keep a GPU fed, one per core on a CPU.

    Reads are positioned reads and numpy slicing, which release the GIL, so threads suffice.
    """
    cores = os.cpu_count() or 1
    if info.kind == "gpu":
        return max(1, min(8, cores))
    return max(1, min(2, cores))


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
