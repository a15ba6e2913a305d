"""The runtimes a frozen forward pass can run in: Keras itself, ONNX Runtime and OpenVINO, each set up for a CPU.

Each engine takes (N, S, S, 3) float32 raw pixels and returns the model's outputs as float32 numpy arrays, in the
Keras model's output order. The settings are the ones measured best on a shared 2-core CPU (docs/PERFORMANCE.md,
issue 44): ONNX Runtime with every graph optimisation (its NCHWc layout for AVX2/AVX-512 included), one intra-op
thread per physical core and no spin-waiting between operators (spinning burns the CPU a neighbour needs and
gained nothing in throughput here); OpenVINO with its throughput hint (one stream per core: a batch is split
across them) and float32 inference precision, so a CPU with bfloat16 units (AMX) does not round the answers.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.errors import Unavailable
from core.runtimes.names import KERAS, ONNXRUNTIME, OPENVINO, TITLES

_MODULES = {ONNXRUNTIME: "onnxruntime", OPENVINO: "openvino"}


class EngineError(Unavailable):
    """A runtime could not load or run the graph; the message says which and why."""


def installed(runtime: str) -> bool:
    """Whether `runtime`'s Python package is importable here (Keras always is)."""
    if runtime == KERAS:
        return True
    try:
        return importlib.util.find_spec(_MODULES[runtime]) is not None
    except (ImportError, ValueError):
        return False


def version(runtime: str) -> str | None:
    """The installed version of `runtime`'s package (or of any package by name), None when it is not installed."""
    from importlib import metadata

    package = _MODULES.get(runtime, runtime)
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def physical_cores() -> int:
    """Physical cores this process may run on: (physical id, core id) pairs of /proc/cpuinfo within its affinity;
    SMT siblings share one core's vector units, so a second thread on them adds little to a convolution."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores: set[tuple[str, str]] = set()
    try:
        processor = package = None
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = (part.strip() for part in line.partition(":"))
                if key == "processor":
                    processor, package = int(value), "0"
                elif key == "physical id":
                    package = value
                elif key == "core id" and processor in allowed:
                    cores.add((package or "0", value))
    except (OSError, ValueError):
        cores = set()
    return max(1, min(len(cores) or len(allowed), len(allowed)))


class KerasEngine:
    """The Keras model's own compiled predict step (TensorFlow's or JAX's kernels); `eager`: op by op, for a check
    on a few images, where tracing the graph would cost more than the pass itself. On TensorFlow only: JAX compiles
    each op on its first call, so op by op costs more than compiling the whole pass (the tiny test backbone's first
    4 images: 2.2 CPU-s op by op, 0.4 compiled; TensorFlow 0.14 and 0.15)."""

    name = KERAS
    batches_at_once = 1  # one batch at a time: the framework spreads it over the cores itself

    def __init__(self, model, eager: bool = False):
        import keras

        self.model = model
        self.eager = eager and keras.backend.backend() == "tensorflow"

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        import keras

        out = self.model(x, training=False) if self.eager else self.model.predict_on_batch(x)
        out = out if isinstance(out, list | tuple) else [out]
        return [np.asarray(keras.ops.convert_to_numpy(o), dtype=np.float32) for o in out]

    def close(self) -> None:
        pass


class OnnxRuntimeEngine:
    """An ONNX graph in ONNX Runtime's CPU execution provider."""

    name = ONNXRUNTIME
    batches_at_once = 1  # one batch at a time, over its intra-op threads

    def __init__(self, graph: Path, outputs: Sequence[str], threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or physical_cores()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own C++ exception types
            raise EngineError(f"ONNX Runtime could not load {graph.name}: {e}") from e
        self.input = self.session.get_inputs()[0].name
        self.outputs = list(outputs)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(o, dtype=np.float32) for o in self.session.run(self.outputs, {self.input: x})]

    def close(self) -> None:
        self.session = None


REQUESTS_A_STREAM = 2  # OpenVINO: one batch running on a stream and the next waiting on it


class OpenVinoEngine:
    """An ONNX graph compiled by OpenVINO for this CPU, with its throughput hint (one stream a core). A caller alone
    splits its batch across every stream and they run at once (a batch smaller than two rows a stream runs on one);
    callers at once (the server's batch workers) each run a whole batch on a stream of their own, so no stream waits
    for another's half of a batch while work is queued. Two infer requests a stream: while one runs, the next batch
    waits on it inside OpenVINO and starts the moment the stream is free, instead of the stream idling while Python
    hands the last batch's answers out and gathers the next (under 32 clients on 2 cores the cores idled about 7% of
    the time with one request a stream, under 2% with two)."""

    name = OPENVINO

    def __init__(self, graph: Path, outputs: Sequence[str], hint: str = "THROUGHPUT"):
        import openvino as ov

        try:
            core = ov.Core()
            model = core.read_model(str(graph))
            self.compiled = core.compile_model(
                model,
                "CPU",
                {
                    "PERFORMANCE_HINT": hint,
                    "INFERENCE_PRECISION_HINT": "f32",
                    "INFERENCE_NUM_THREADS": physical_cores(),
                },
            )
        except Exception as e:  # OpenVINO raises RuntimeError and its own types
            raise EngineError(f"OpenVINO could not compile {graph.name}: {e}") from e
        self.stream_count = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") or 1))
        self.requests = [self.compiled.create_infer_request() for _ in range(REQUESTS_A_STREAM * self.stream_count)]
        self.ports = [self.compiled.output(name) for name in outputs]
        self._free = list(self.requests)  # an infer request serves one caller at a time
        self._changed = threading.Condition()

    @property
    def batches_at_once(self) -> int:
        """How many callers can have a batch in OpenVINO at once: a running one and a waiting one a stream."""
        return len(self.requests)

    def _take(self, rows: int) -> list:
        """A request a stream when all are free and the batch fills two rows a stream, else one (waiting for one)."""
        with self._changed:
            self._changed.wait_for(lambda: self._free)
            every = len(self._free) == len(self.requests) and rows >= 2 * self.stream_count
            count = self.stream_count if every else 1
            taken, self._free = self._free[:count], self._free[count:]
            return taken

    def _give_back(self, requests: list) -> None:
        with self._changed:
            self._free.extend(requests)
            self._changed.notify_all()

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        requests = self._take(len(x))
        try:
            if len(requests) == 1:
                result = requests[0].infer({0: x})
                return [np.array(result[port], dtype=np.float32) for port in self.ports]
            chunks = np.array_split(x, len(requests))
            for request, chunk in zip(requests, chunks, strict=True):
                request.start_async({0: np.ascontiguousarray(chunk)})
            for request in requests:
                request.wait()
            return [
                np.concatenate([np.array(r.get_tensor(port).data, dtype=np.float32) for r in requests])
                for port in self.ports
            ]
        finally:
            self._give_back(requests)

    def close(self) -> None:
        self.requests, self.compiled = [], None


def engine(runtime: str, graph: Path | None, outputs: Sequence[str], model=None):
    """An engine of `runtime` for the ONNX `graph` (or, for Keras, `model`). Raises EngineError."""
    if runtime == KERAS:
        return KerasEngine(model)
    if not installed(runtime):
        raise EngineError(f"{TITLES[runtime]} is not installed (pip package {_MODULES[runtime]})")
    if runtime == ONNXRUNTIME:
        return OnnxRuntimeEngine(graph, outputs)
    return OpenVinoEngine(graph, outputs)
