"""Multi-host data-parallel fine-tuning on JAX: one process per host, phase 2 over every host's devices.

    python -m core train DATA ... --distributed HOST:PORT --num-processes N --process-id I
    python -m core train DATA ... --distributed auto     (under SLURM, Open MPI or a Kubernetes JobSet)

Keras's distribution API does the work (`keras.distribution.initialize` starts JAX's distributed runtime
with the coordinator's address; `DataParallel` over all processes' devices replicates the weights and
splits each global batch across them). Phase 1 (the head on cached features, or on images) runs in every
process alike, from the same seed; phase 2, the fine-tuning that is the costly part on images, runs
across the processes: each reads only its own rows of every global batch (`ProcessShard`; process i the
i-th slice), JAX assembles the global batch and averages the gradients, so every process takes the same
step as one process fed the whole batch would. After it the weights are copied back to each process's
own device and the run is evaluated there. Process 0 writes the run folder; the others train in a
scratch store they remove (`--process-id` decides, as the coordinator is process 0).

Not Ray Train's TensorFlow trainer (broken with Keras 3) nor TF's MultiWorkerMirroredStrategy: JAX only.
On CPUs the processes talk over Gloo (tests run 2 on localhost); on GPU hosts over NCCL (README, "More than
one machine": what a cluster needs, and SLURM's variables for the three flags).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from core.settings.config import ConfigError

log = logging.getLogger("flora")
STRATEGY = "keras.distribution.DataParallel across processes"
AUTO = "auto"  # --distributed auto: the cluster's scheduler says (JAX's own detection)


@dataclass(frozen=True)
class MultiHost:
    coordinator: str  # "host:port" of process 0's coordination service
    num_processes: int
    process_id: int
    scheduler: str | None = None  # where `--distributed auto` found them: "slurm", "ompi", ...; None: given

    @property
    def writer(self) -> bool:
        """Process 0 writes the run folder; the others only lend their devices to phase 2."""
        return self.process_id == 0

    @property
    def label(self) -> str:
        found = f", from {self.scheduler}" if self.scheduler else ""
        return f"process {self.process_id} of {self.num_processes} (coordinator {self.coordinator}{found})"


def parse(coordinator: str, num_processes: int | None, process_id: int | None) -> MultiHost:
    """The `--distributed` flags, checked. `auto`: the coordinator, count and id the cluster's scheduler set for
    this process (given numbers win).

    Raises:
        ConfigError: a malformed address, fewer than 2 processes, an id out of range, or `auto` outside a cluster.
    """
    scheduler = None
    if coordinator == AUTO:
        coordinator, found_count, found_id, scheduler = detect()
        num_processes = found_count if num_processes is None else num_processes
        process_id = found_id if process_id is None else process_id
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--distributed must be HOST:PORT (the coordinator, process 0). Received: {coordinator!r}")
    if num_processes is None or process_id is None:
        raise ConfigError("--distributed needs --num-processes N and --process-id I (0 for the coordinator)")
    if num_processes < 2:
        raise ConfigError(f"--num-processes must be at least 2. Received: {num_processes}")
    if not 0 <= process_id < num_processes:
        raise ConfigError(f"--process-id must be in [0, {num_processes}). Received: {process_id}")
    return MultiHost(coordinator, num_processes, process_id, scheduler)


def detect() -> tuple[str, int, int, str]:
    """What a cluster's scheduler set for this process, read by JAX's own detection (the one
    `jax.distributed.initialize()` uses): SLURM (`srun`: SLURM_PROCID, SLURM_NTASKS, the first node of
    SLURM_STEP_NODELIST, a port from SLURM_JOB_ID or $JAX_COORDINATOR_PORT), Open MPI's `mpirun`, a Kubernetes
    JobSet. Returns (coordinator, process count, this process's id, the scheduler's name).

    Raises:
        ConfigError: JAX is not installed, or no cluster environment it knows is present.
    """
    try:
        from jax._src.clusters import ClusterEnv  # JAX's cluster detection (no public handle on it)
    except ImportError:
        raise ConfigError("--distributed auto reads the cluster through JAX: install the JAX build") from None
    found = [env for env in ClusterEnv._cluster_types if not env.opt_in_only_method and env.is_env_present()]
    if not found:
        raise ConfigError(
            "--distributed auto found no cluster environment JAX detects (SLURM's srun, Open MPI's mpirun, a "
            "Kubernetes JobSet): start the processes there, or give --distributed HOST:PORT --num-processes N "
            "--process-id I"
        )
    env = found[0]
    port = os.environ.get("JAX_COORDINATOR_PORT")
    coordinator = env.get_coordinator_address(timeout_secs=None, override_coordinator_port=port)
    return coordinator, int(env.get_process_count()), int(env.get_process_id()), env.name


def check_config(config, hosts: MultiHost) -> None:
    """What a multi-host run needs of its settings.

    Raises:
        ConfigError: the global batch does not split evenly, or there is no phase 2 to spread.
    """
    if config.batch_size % hosts.num_processes:
        raise ConfigError(
            f"the batch ({config.batch_size}, global) must split evenly over {hosts.num_processes} processes"
        )
    if config.fine_tune_epochs <= 0:
        raise ConfigError(
            "multi-host training spreads phase 2 (fine-tuning) across the processes: set --fine-tune-epochs "
            "(phase 1 alone runs on one machine)"
        )


def initialize(hosts: MultiHost) -> None:
    """Join the JAX distributed runtime (before JAX computes anything in this process).

    Raises:
        ConfigError: the Keras backend is not JAX.
    """
    import keras

    if keras.backend.backend() != "jax":
        raise ConfigError(
            "multi-host training runs on JAX: set FLORA_BACKEND=jax (or KERAS_BACKEND=jax). "
            f"Received: {keras.backend.backend()}"
        )
    import jax

    with contextlib.suppress(AttributeError, ValueError):  # CPU processes talk over Gloo (GPUs: NCCL)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    log.info("joining %s", hosts.label)
    keras.distribution.initialize(hosts.coordinator, hosts.num_processes, hosts.process_id)
    log.info("%d processes, %d devices in all: %s", jax.process_count(), jax.device_count(), jax.devices())


@contextlib.contextmanager
def across_processes(model, hosts: MultiHost) -> Iterator[int]:
    """Inside the block, `model` trains data parallel over every process's devices (yields their count); after
    it, its weights are each process's own again (the run is evaluated and saved locally)."""
    import keras

    devices = keras.distribution.list_devices()
    previous = keras.distribution.distribution()
    plan = keras.distribution.DataParallel(devices=devices)
    plan.auto_shard_dataset = False  # each process reads its own rows already (ProcessShard)
    keras.distribution.set_distribution(plan)
    try:
        for variable in model.variables:  # replicated on every device of every process
            value = variable.numpy()
            variable._layout = plan.get_variable_layout(variable)
            variable._direct_assign(value)
        yield len(devices)
    finally:
        keras.distribution.set_distribution(previous)
        for variable in _all_variables(model):
            value = variable.numpy()  # the replicated value (Keras reads it from this process's copy)
            variable._layout = None
            variable._direct_assign(keras.ops.convert_to_tensor(value))


def _all_variables(model) -> list:
    optimizer = getattr(model, "optimizer", None)
    extra = list(optimizer.variables) if optimizer is not None and getattr(optimizer, "built", False) else []
    return list(model.variables) + extra


class ProcessShard:
    """This process's rows of each global batch of a Keras PyDataset: process i of N gets the i-th of N equal
    slices (the global batch is padded to a multiple of the device count by the batches themselves)."""

    def __new__(cls, batches, hosts: MultiHost):
        import keras

        class _Shard(keras.utils.PyDataset):
            def __init__(self):
                super().__init__(workers=batches.workers, max_queue_size=batches.max_queue_size)
                self.batches = batches

            def __len__(self) -> int:
                return len(batches)

            def __getitem__(self, index: int):
                return tuple(_rows(part, hosts) for part in batches[index])

            def on_epoch_end(self) -> None:
                batches.on_epoch_end()

        return _Shard()


def _rows(part, hosts: MultiHost):
    if part is None:
        return None
    if isinstance(part, dict):
        return {k: _rows(v, hosts) for k, v in part.items()}
    n = len(part)
    if n % hosts.num_processes:
        raise ValueError(f"a batch of {n} rows does not split over {hosts.num_processes} processes")
    share = n // hosts.num_processes
    return np.asarray(part)[hosts.process_id * share : (hosts.process_id + 1) * share]
