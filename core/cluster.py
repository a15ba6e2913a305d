"""Joining a Ray cluster the way Flora's Ray paths need it (batch prediction, runs, sweeps): the address from
the caller or $FLORA_RAY_ADDRESS, Flora importable on every worker, Flora's environment passed on."""

from __future__ import annotations

import logging
import os

from core.errors import InvalidInput
from core.paths import PROJECT_ROOT

ADDRESS_ENV = "FLORA_RAY_ADDRESS"
# What decides what a task computes or where it reads, as the submitting process has it: the backend, the
# folders, the ImageNet weights' mirror, the cache format, the test backbone a run's config may name.
PASSED_ENV = (
    "KERAS_BACKEND",
    "FLORA_BACKEND",
    "FLORA_DATA_DIR",
    "FLORA_MODELS_DIR",
    "FLORA_IMAGENET_WEIGHTS_URL",
    "FLORA_CACHE_FORMAT",
    "FLORA_TEST_BACKBONE",
    "TF_CPP_MIN_LOG_LEVEL",
)


def connect(address: str | None) -> str:
    """Join the cluster at `address` (or $FLORA_RAY_ADDRESS) with Flora importable on its workers; returns it.

    Raises:
        InvalidInput: no address given anywhere.
    """
    import ray

    address = address or os.environ.get(ADDRESS_ENV)
    if not address:
        raise InvalidInput(f"no Ray cluster: pass --ray ADDRESS or set {ADDRESS_ENV}")
    if ray.is_initialized():
        return address
    env = {name: os.environ[name] for name in PASSED_ENV if os.environ.get(name)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False, logging_level=logging.WARNING)
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # Flora says what ran where in one line instead
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return address
