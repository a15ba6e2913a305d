"""Data-parallel training over every device of a kind: one replica per GPU (or virtual CPU).

`data_parallel(info)` is a context manager around building, compiling, fitting and predicting:
  - JAX: Keras's distribution API (`keras.distribution.DataParallel`), restored afterwards;
  - TensorFlow: a `tf.distribute.MirroredStrategy` scope (TensorFlow is imported only here);
  - one device, or torch: nothing changes.
The batch size stays global (the config's batch is split across replicas). JAX shards each batch
evenly, so every batch fed under a distribution has a multiple of `replicas` rows: `pad_rows`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from core.device import DeviceInfo

log = logging.getLogger("flora")
SINGLE = "single device"
JAX_DATA_PARALLEL = "keras.distribution.DataParallel"
TF_MIRRORED = "tf.distribute.MirroredStrategy"


@dataclass(frozen=True)
class Parallelism:
    """How a run uses its devices."""

    strategy: str  # SINGLE | JAX_DATA_PARALLEL | TF_MIRRORED
    replicas: int
    devices: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        if self.replicas <= 1:
            return SINGLE
        return f"data parallel over {self.replicas} devices ({self.strategy})"

    def to_dict(self) -> dict:
        return {"strategy": self.strategy, "replicas": self.replicas, "devices": list(self.devices)}


@contextlib.contextmanager
def data_parallel(info: DeviceInfo) -> Iterator[Parallelism]:
    """Train data parallel over `info`'s devices inside the block when there are several.

    Everything that creates variables (model building, compile) must happen inside the block.
    """
    if info.count <= 1:
        yield Parallelism(SINGLE, 1)
        return
    if info.backend == "jax":
        with _jax_data_parallel(info) as plan:
            yield plan
        return
    if info.backend == "tensorflow":
        with _tf_mirrored(info) as plan:
            yield plan
        return
    log.warning("%d devices, but data-parallel training is not wired for %s: using one", info.count, info.backend)
    yield Parallelism(SINGLE, 1)


@contextlib.contextmanager
def _jax_data_parallel(info: DeviceInfo) -> Iterator[Parallelism]:
    import keras

    devices = keras.distribution.list_devices(info.kind)
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    try:
        yield Parallelism(JAX_DATA_PARALLEL, len(devices), tuple(devices))
    finally:
        keras.distribution.set_distribution(previous)


@contextlib.contextmanager
def _tf_mirrored(info: DeviceInfo) -> Iterator[Parallelism]:
    import tensorflow as tf

    devices = [d.name for d in tf.config.list_logical_devices(info.kind.upper())]
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        yield Parallelism(TF_MIRRORED, strategy.num_replicas_in_sync, tuple(devices))


def padded_length(n: int, multiple: int) -> int:
    """`n` rounded up to a multiple of `multiple`."""
    multiple = max(1, int(multiple))
    return -(-n // multiple) * multiple


def pad_rows(array: np.ndarray, length: int) -> np.ndarray:
    """`array` with its last row repeated up to `length` rows (unchanged when long enough)."""
    missing = length - len(array)
    if missing <= 0:
        return array
    return np.concatenate([array, np.repeat(array[-1:], missing, axis=0)])
