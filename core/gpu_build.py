"""Which build of Flora's requirements this machine gets: CPU, or the GPU build its NVIDIA driver supports.

On a Linux box with an NVIDIA driver and no system CUDA toolkit (the usual case) plain `tensorflow` finds
no CUDA libraries and trains on the CPU without a word. The GPU builds bring their own CUDA libraries from
pip, pinned in one requirements file each (never both frameworks' CUDA pins in one environment: they
conflict on NCCL):

- `requirements-gpu-tensorflow.txt`: `tensorflow[and-cuda]` (CUDA 12 libraries; drivers from 525 on).
- `requirements-gpu-jax-cuda13.txt`: `jax[cuda13]`, for drivers that support CUDA 13 (580 and later).
- `requirements-gpu-jax-cuda12.txt`: `jax[cuda12]`, below that.

The choice: `FLORA_GPU=0` (CPU), `1` (the GPU build even where `nvidia-smi` is missing, e.g. in a
container build), unset or `auto` (the GPU build when `nvidia-smi -L` lists a GPU); `FLORA_BACKEND`
(`tensorflow`, the default, or `jax`) picks the framework; `FLORA_CUDA=12|13` overrides the CUDA major
read from the driver. The Makefile runs this file with the system Python before any virtualenv exists,
so it uses the standard library only:

    python3 core/gpu_build.py            # the requirements file, one line (what `make` installs)
    python3 core/gpu_build.py --explain  # why, in a sentence
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

CPU = "requirements.txt"
TENSORFLOW_GPU = "requirements-gpu-tensorflow.txt"
JAX_GPU = {12: "requirements-gpu-jax-cuda12.txt", 13: "requirements-gpu-jax-cuda13.txt"}
CUDA13_DRIVER = 580  # the first driver branch whose CUDA is 13.0
CUDA12_DRIVER = 525  # CUDA 12.x libraries run from this driver on (minor-version compatibility)
BACKENDS = ("tensorflow", "jax")


@dataclass(frozen=True)
class Driver:
    gpus: list[str]  # names from `nvidia-smi -L`
    version: str | None  # "580.95.05"
    cuda: tuple[int, int] | None  # the newest CUDA the driver supports, from nvidia-smi's header

    @property
    def cuda_major(self) -> int | None:
        if self.cuda:
            return self.cuda[0]
        if self.version:
            return 13 if int(self.version.split(".")[0]) >= CUDA13_DRIVER else 12
        return None

    def describe(self) -> str:
        parts = [self.gpus[0] if self.gpus else "an NVIDIA GPU"]
        if len(self.gpus) > 1:
            parts[0] = f"{len(self.gpus)} x {parts[0]}"
        if self.version:
            parts.append(f"driver {self.version}")
        if self.cuda:
            parts.append(f"CUDA {self.cuda[0]}.{self.cuda[1]}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Build:
    requirements: str
    reason: str

    @property
    def gpu(self) -> bool:
        return self.requirements != CPU


def _smi(*args: str) -> str | None:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def read_driver() -> Driver | None:
    """The NVIDIA driver as `nvidia-smi` reports it; None where there is none (or it lists no GPU)."""
    listing = _smi("-L")
    if not listing:
        return None
    gpus = [line.split(":", 1)[1].split("(UUID")[0].strip() for line in listing.splitlines() if line.startswith("GPU ")]
    if not gpus:
        return None
    header = _smi() or ""
    version = re.search(r"Driver Version:\s*([\d.]+)", header)
    cuda = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", header)
    if not version:
        queried = (_smi("--query-gpu=driver_version", "--format=csv,noheader") or "").split()
        version = queried[0] if queried else None
    else:
        version = version.group(1)
    return Driver(gpus, version, (int(cuda.group(1)), int(cuda.group(2))) if cuda else None)


def choose(env: dict[str, str] | None = None, driver: Driver | bool | None = True) -> Build:
    """The build for this machine. `driver`: True reads it from `nvidia-smi`; tests pass one (or None)."""
    env = dict(os.environ if env is None else env)
    if driver is True:
        driver = read_driver()
    wanted = env.get("FLORA_GPU", "auto").strip().lower() or "auto"
    backend = env.get("FLORA_BACKEND", "tensorflow").strip().lower() or "tensorflow"
    if backend not in BACKENDS:
        raise SystemExit(f"FLORA_BACKEND must be one of {', '.join(BACKENDS)}. Received: FLORA_BACKEND={backend!r}")
    if wanted not in ("0", "1", "auto"):
        raise SystemExit(f"FLORA_GPU must be 0, 1 or auto. Received: FLORA_GPU={wanted!r}")
    if wanted == "0":
        return Build(CPU, "FLORA_GPU=0: the CPU build")
    if wanted == "auto" and driver is None:
        return Build(CPU, "no NVIDIA driver found (`nvidia-smi` lists no GPU): the CPU build")
    found = f"{driver.describe()} found" if driver else "FLORA_GPU=1 (no `nvidia-smi` here to read the driver)"
    if backend == "tensorflow":
        reason = f"{found}: the GPU build, TensorFlow with its own CUDA 12 libraries (tensorflow[and-cuda])"
        if driver and driver.cuda_major is not None and driver.cuda_major < 12:
            reason += f"; this driver is too old for them: update it to {CUDA12_DRIVER} or later"
        return Build(TENSORFLOW_GPU, reason)
    forced = env.get("FLORA_CUDA", "").strip()
    if forced:
        if forced not in ("12", "13"):
            raise SystemExit(f"FLORA_CUDA must be 12 or 13. Received: FLORA_CUDA={forced!r}")
        major, why = int(forced), f"FLORA_CUDA={forced}"
    elif driver and driver.cuda_major is not None:
        major = 13 if driver.cuda_major >= 13 else 12
        why = f"the driver supports CUDA {driver.cuda_major}" + ("" if major == 13 else ", not 13")
    else:
        major, why = 13, "no driver version to read: the newest"
    return Build(JAX_GPU[major], f"{found}: the GPU build, JAX with CUDA {major} (jax[cuda{major}]; {why})")


def main(argv: list[str]) -> int:
    build = choose()
    print(build.reason if "--explain" in argv else build.requirements)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
