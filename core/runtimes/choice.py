"""Which runtime runs a frozen forward pass here: asked for, or the fastest one measured on this machine.

`accelerated(model, ...)` returns a `Forward`: the Keras model's `predict_on_batch` through the chosen runtime,
with a `Decision` that says which and why. The steps:

1. The runtime asked for: `--runtime` on the CLI (which sets FLORA_RUNTIME for the process and the jobs it
   starts), else FLORA_RUNTIME, else `auto`. `keras` is Keras; on a GPU `auto` is Keras too (these are CPU
   runtimes).
2. The model is written as ONNX (core.runtimes.onnx_graph, about a second; the file is cached by the graph's
   structure and weights in `<data>/.cache/runtimes/`, so a backbone or a run pays it once).
3. Each candidate runtime runs a sample of real pixels (or, without any, seeded noise) and must give Keras's
   answers: every output within 1e-4 of Keras relative to the output's largest magnitude, and the same top-1
   class for logits and probabilities. A runtime that is missing, fails to load or fails this check is left
   out, and said so; with none left Keras runs it.
4. `auto` picks the candidate (Keras included) with the most images per CPU-second, measured on the same batch
   on this machine, alternating, best of rounds: the first time a (device, backbone, image size) is seen. The
   figures are the machine's, not a dataset's: they are kept under the device's key (CPU model, cores, backend
   and every runtime's version) in `~/.cache/flora/runtimes/choice-<device>-<backbone>-<size>.json`
   (core.paths.machine_cache_dir), so every later run, server and data folder on this machine reads them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.device import cpu_name, describe, keras_backend_name
from core.errors import InvalidInput
from core.fileio import read_json, write_bytes_atomic, write_json_atomic
from core.network import backbones
from core.paths import RUNTIMES_DIRNAME, cache_dir, machine_cache_dir
from core.paths import runtimes_dir as _runtimes_dir
from core.runtimes import engines, onnx_graph
from core.runtimes.names import AUTO, CHOICES, KERAS, ONNXRUNTIME, OPENVINO, RUNTIME_ENV, RUNTIMES, TITLES

log = logging.getLogger("flora")
TOLERANCE = 1e-4  # largest difference from Keras, relative to the output's largest magnitude
CHOICE_VERSION = 1
MEASURE_ROWS = 16  # images per timed batch when choosing (at most the caller's batch)
MEASURE_ROUNDS = 2  # alternating timed rounds per runtime after a warm-up; the best counts
SAMPLE_ROWS = 4  # images checked against Keras


def requested(explicit: str | None = None) -> str:
    """The runtime asked for: `explicit`, else $FLORA_RUNTIME, else auto.

    Raises:
        InvalidInput: not one of CHOICES.
    """
    value = (explicit or os.environ.get(RUNTIME_ENV) or AUTO).strip().lower()
    if value not in CHOICES:
        raise InvalidInput(f"runtime must be one of {CHOICES}. Received: runtime={value!r}")
    return value


def runtimes_dir(cache_root: str | os.PathLike | None = None) -> Path:
    """`<data>/.cache/runtimes/`: the ONNX graphs written for the runtimes, and whether each gave Keras's answers."""
    return _runtimes_dir(cache_root if cache_root is not None else cache_dir())


@dataclass
class Decision:
    """Which runtime runs a forward pass, and why, with the figures it was chosen by."""

    runtime: str
    reason: str  # one sentence
    image_size: int
    backbone: str
    images_per_cpu_second: dict[str, float] = field(default_factory=dict)  # measured here, per runtime
    differences: dict[str, float] = field(default_factory=dict)  # largest relative difference from Keras
    left_out: dict[str, str] = field(default_factory=dict)  # runtime -> why it cannot run this graph
    measured_at: float | None = None
    batch: int | None = None

    @property
    def title(self) -> str:
        name = TITLES[self.runtime]
        installed = engines.version(self.runtime) if self.runtime != KERAS else None
        return f"{name} {installed}" if installed else name

    @property
    def text(self) -> str:
        """ "forward pass: OpenVINO 2026.4.1 (1.46x Keras's images per CPU-second at 128 px, measured here ...)"."""
        return f"forward pass: {self.title} ({self.reason})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Forward:
    """A frozen Keras model's forward pass through the chosen runtime, called like the model's `predict_on_batch`.

    A runtime that fails on a later batch (it passed on the sample) hands over to Keras for good, with a warning,
    so a batch is never lost.
    """

    def __init__(self, model, engine, decision: Decision):
        self.model = model
        self.engine = engine
        self.decision = decision
        self._lock = threading.Lock()
        self._serial = threading.Lock()  # an engine of one stream runs one caller's batch at a time

    @property
    def runtime(self) -> str:
        return self.engine.name

    @property
    def output_names(self) -> list[str]:
        return list(self.model.output_names)

    @property
    def input_shape(self):
        return self.model.input_shape

    @property
    def output_shape(self):
        return self.model.output_shape

    @property
    def batches_at_once(self) -> int:
        """How many callers can have a batch in the runtime at once (OpenVINO: two a stream, one running and one
        waiting on it); the others run one batch at a time."""
        return getattr(self.engine, "batches_at_once", 1)

    def run(self, x) -> list[np.ndarray]:
        """Every output for the (N, S, S, 3) raw pixels `x`, as float32 arrays in the model's output order. Callers
        at once share an engine of one stream in turn (Keras, ONNX Runtime) and OpenVINO's streams each."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        engine = self.engine
        try:
            if self.batches_at_once > 1:
                return engine.run(x)
            with self._serial:
                return engine.run(x)
        except Exception as e:
            if engine.name == KERAS:
                raise
            log.warning("%s failed on a batch (%s): Keras runs the rest", TITLES[engine.name], e)
            with self._lock:
                if self.engine is engine:
                    engine.close()
                    self.engine = engines.KerasEngine(self.model)
                    self.decision = Decision(
                        KERAS,
                        f"{TITLES[engine.name]} failed on a batch ({type(e).__name__}): Keras runs the rest",
                        self.decision.image_size,
                        self.decision.backbone,
                    )
            return self.engine.run(x)

    def predict(self, batches):
        """Every batch of a Keras `PyDataset` of (x,) tuples, outputs joined as Keras's `predict` joins them (Keras
        itself runs its own compiled predict loop, with the dataset's reader threads)."""
        if self.runtime == KERAS:
            return self.model.predict(batches, verbose=0)
        parts = [self.run(batches[i][0]) for i in range(len(batches))]
        joined = [np.concatenate([part[k] for part in parts]) for k in range(len(self.model.outputs))] if parts else []
        return joined[0] if len(joined) == 1 else joined

    def predict_on_batch(self, x):
        """What `keras.Model.predict_on_batch` returns: one array, or a list for several outputs."""
        out = self.run(x)
        return out[0] if len(out) == 1 else out


def keras_forward(model, reason: str = "asked for (--runtime keras)") -> Forward:
    """The model through Keras itself, said why."""
    size, backbone = _size_and_backbone(model)
    return Forward(model, engines.KerasEngine(model), Decision(KERAS, reason, size, backbone))


def accelerated(
    model,
    *,
    runtime: str | None = None,
    cache_root: str | os.PathLike | None = None,
    sample: np.ndarray | None = None,
    batch: int = MEASURE_ROWS,
) -> Forward:
    """`model` (frozen, raw pixels in) through the runtime asked for, or the fastest verified one here.

    Args:
        runtime: auto, keras, onnxruntime or openvino (default: $FLORA_RUNTIME, else auto).
        cache_root: the data folder's cache (default `<data>/.cache`), where converted graphs are kept.
        sample: real (N, S, S, 3) pixels to check the runtimes against Keras (default: seeded noise).
        batch: the caller's batch size; choosing times batches of min(batch, MEASURE_ROWS) images.
    """
    want = requested(runtime)
    if want == KERAS:
        return keras_forward(model)
    size, backbone = _size_and_backbone(model)
    if want == AUTO and _on_gpu():
        return keras_forward(model, "on a GPU Keras runs the forward pass: the other runtimes here are for CPUs")
    root = runtimes_dir(cache_root)
    stored = stored_choice(backbone, size) if want == AUTO else None
    if stored is not None and stored.runtime == KERAS:
        return Forward(model, engines.KerasEngine(model), stored)
    candidates = [stored.runtime] if stored is not None else [want] if want != AUTO else [ONNXRUNTIME, OPENVINO]
    left_out = {r: f"{TITLES[r]} is not installed" for r in candidates if not engines.installed(r)}
    candidates = [r for r in candidates if r not in left_out]
    if not candidates:
        return keras_forward(model, _fallback_words(want, left_out))
    try:
        graph = converted_graph(model, root)
    except Exception as e:  # Unsupported, or anything the writer meets: Keras is always there
        reason = f"the graph could not be written for the other runtimes ({e})"
        return keras_forward(model, _fallback_words(want, {r: reason for r in candidates}))
    pixels = _sample(model, sample, size)
    verified, differences = _verified(model, graph, candidates, pixels, left_out)
    if not verified:
        return keras_forward(model, _fallback_words(want, left_out))
    if want != AUTO:
        reason = f"asked for; within {differences[want]:.1e} of Keras"
        return Forward(model, verified[want], Decision(want, reason, size, backbone, differences=differences))
    if stored is not None:
        stored.differences, stored.left_out = differences, left_out
        return Forward(model, verified[stored.runtime], stored)
    decision = _choose(model, verified, pixels, batch, size, backbone, differences, left_out)
    for name, candidate in verified.items():
        if name != decision.runtime:
            candidate.close()
    engine = verified.get(decision.runtime) or engines.KerasEngine(model)
    return Forward(model, engine, decision)


def _verified(model, graph: Path, candidates: list[str], pixels: np.ndarray, left_out: dict[str, str]):
    """({runtime: engine} of the candidates that give Keras's answers, {runtime: largest difference}).

    A graph is checked once per runtime version: the result is kept beside it (`<graph>.checked.json`), so a
    later load (a server's switch, `core predict`) runs no Keras forward pass at all. The others go to `left_out`.
    """
    record_path = graph.with_name(graph.stem + ".checked.json")
    records = read_json(record_path, {}) or {}
    reference = None
    verified, differences = {}, {}
    for name in candidates:
        record = records.get(name) if isinstance(records.get(name), dict) else None
        known = record is not None and record.get("version") == engines.version(name)
        if known and record.get("problem"):
            left_out[name] = record["problem"]
            continue
        try:
            candidate = engines.engine(name, graph, _onnx_outputs(model))
            if known:
                differences[name] = float(record.get("difference", 0.0))
                verified[name] = candidate
                continue
            if reference is None:
                reference = engines.KerasEngine(model, eager=True).run(pixels)
            differences[name], problem = check(model.output_names, reference, candidate.run(pixels))
        except Exception as e:  # EngineError, or the runtime's own error on the sample
            left_out[name] = f"{TITLES[name]} failed: {e}"
            continue
        if problem:
            left_out[name] = f"{TITLES[name]} gave other answers than Keras ({problem})"
            candidate.close()
        else:
            verified[name] = candidate
        records[name] = {
            "version": engines.version(name),
            "difference": differences[name],
            "problem": left_out.get(name),
        }
        with contextlib.suppress(OSError):
            write_json_atomic(record_path, records)
    return verified, differences


def check(names: list[str], reference: list[np.ndarray], got: list[np.ndarray]) -> tuple[float, str | None]:
    """(largest relative difference over the outputs, what is wrong or None): each output within TOLERANCE of
    Keras relative to its largest magnitude; logits and probabilities with the same top-1 class (rows whose two
    best Keras scores tie within the tolerance are not held against it)."""
    worst = 0.0
    for name, a, b in zip(names, reference, got, strict=True):
        if a.shape != b.shape:
            return float("inf"), f"{name}: shape {b.shape} instead of {a.shape}"
        if not np.all(np.isfinite(b)):
            return float("inf"), f"{name}: not finite"
        scale = float(np.max(np.abs(a))) or 1.0
        difference = float(np.max(np.abs(a - b))) / scale if a.size else 0.0
        worst = max(worst, difference)
        if difference > TOLERANCE:
            return worst, f"{name} differs by {difference:.1e} of its largest value, more than {TOLERANCE:g}"
        if a.ndim == 2 and a.shape[1] > 1 and any(key in name for key in ("logits", "probabilities")):
            top = np.sort(a, axis=1)[:, -2:]
            clear = (top[:, 1] - top[:, 0]) > TOLERANCE * scale
            if np.any((a.argmax(1) != b.argmax(1)) & clear):
                return worst, f"{name}: another top-1 class"
    return worst, None


def converted_graph(model, root: Path) -> Path:
    """The ONNX file of `model` under `root`, written once per graph (its structure and every weight)."""
    path = root / f"{graph_key(model)}.onnx"
    if path.is_file():
        return path
    started = time.perf_counter()
    proto = onnx_graph.convert(model, _onnx_outputs(model))
    write_bytes_atomic(path, proto.SerializeToString())
    log.info("wrote %s for the runtimes in %.1f s", path.name, time.perf_counter() - started)
    return path


def graph_key(model) -> str:
    """A short hash of the converter's version, the model's structure and every weight value."""
    import keras

    digest = hashlib.blake2b(digest_size=12)
    digest.update(f"{onnx_graph.CONVERTER_VERSION}|{model.input_shape}|{model.to_json()}".encode())
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


def device_key() -> str:
    """What a measured choice holds for: this CPU, its cores, the Keras backend and every runtime's version."""
    parts = [cpu_name(), str(os.cpu_count()), str(engines.physical_cores()), keras_backend_name()]
    parts += [f"{name}={engines.version(name)}" for name in (*RUNTIMES, keras_backend_name())]
    parts.append(str(CHOICE_VERSION))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def choice_path(backbone: str, size: int) -> Path:
    """Where this device's measured choice for a backbone and image size is kept (one file each: no two writers
    ever merge into one)."""
    return choices_dir() / f"choice-{device_key()}-{backbone}-{size}.json"


def choices_dir() -> Path:
    """`~/.cache/flora/runtimes/` (core.paths.machine_cache_dir): what was measured on this machine."""
    return machine_cache_dir() / RUNTIMES_DIRNAME


def stored_choice(backbone: str, size: int) -> Decision | None:
    """The choice measured on this device for a backbone and image size, None before one was."""
    data = read_json(choice_path(backbone, size))
    if not isinstance(data, dict) or data.get("runtime") not in RUNTIMES:
        return None
    with contextlib.suppress(TypeError):
        return Decision(**{k: v for k, v in data.items() if k in Decision.__dataclass_fields__})
    return None


def stored_choices() -> list[Decision]:
    """Every choice measured on this device (each backbone and image size), by backbone and size."""
    found = []
    for path in sorted(choices_dir().glob(f"choice-{device_key()}-*.json")):
        parts = path.stem.rsplit("-", 2)
        with contextlib.suppress(ValueError):
            decision = stored_choice(parts[1], int(parts[2]))
            if decision is not None:
                found.append(decision)
    return sorted(found, key=lambda d: (d.backbone, d.image_size))


def measure(runners: dict[str, Any], pixels: np.ndarray, rounds: int = MEASURE_ROUNDS) -> dict[str, float]:
    """Images per CPU-second of each runner's `run` on the same `pixels`: one warm-up call, then `rounds`
    alternating timed calls each (this process's CPU time, steadier than the clock on a shared machine); the
    best round counts."""
    best = dict.fromkeys(runners, 0.0)
    for runner in runners.values():
        runner.run(pixels)
    for _ in range(rounds):
        for name, runner in runners.items():
            started = time.process_time()
            runner.run(pixels)
            seconds = max(time.process_time() - started, 1e-9)
            best[name] = max(best[name], len(pixels) / seconds)
    return best


def _choose(model, verified, pixels, batch, size, backbone, differences, left_out) -> Decision:
    rows = max(1, min(int(batch), MEASURE_ROWS))
    timed = np.concatenate([pixels] * -(-rows // len(pixels)))[:rows]
    figures = measure({KERAS: engines.KerasEngine(model), **verified}, timed)
    best = max(figures, key=figures.get)
    ratio = figures[best] / figures[KERAS] if figures[KERAS] else float("inf")
    when = time.strftime("%Y-%m-%d %H:%M")
    if best == KERAS:
        reason = f"the fastest measured here at {size} px ({when}): " + ", ".join(
            f"{TITLES[name]} {figures[name] / figures[KERAS]:.2f}x" for name in verified
        )
    else:
        reason = f"{ratio:.2f}x Keras's images per CPU-second at {size} px, measured here {when}"
    decision = Decision(best, reason, size, backbone, figures, differences, left_out, time.time(), rows)
    with contextlib.suppress(OSError):
        write_json_atomic(choice_path(backbone, size), decision.to_dict())
    log.info("runtime for %s at %d px: %s (%s)", backbone, size, TITLES[best], json.dumps(figures))
    return decision


def _fallback_words(want: str, left_out: dict[str, str]) -> str:
    why = "; ".join(left_out.values()) or "no other runtime"
    return f"{why}: Keras runs it" if want == AUTO else f"{want} was asked for, but {why}: Keras runs it"


def _size_and_backbone(model) -> tuple[int, str]:
    size = int(model.input_shape[1])
    try:
        return size, backbones.find_in(model).name
    except ValueError:
        inner = [layer for layer in model.layers if hasattr(layer, "layers")]
        for layer in inner:
            with contextlib.suppress(ValueError):
                return size, backbones.find_in(layer).name
        return size, model.name


def _on_gpu() -> bool:
    return describe().kind == "gpu"


def _onnx_outputs(model) -> list[str]:
    return [f"output{i}" for i in range(len(model.outputs))]


def _sample(model, sample: np.ndarray | None, size: int) -> np.ndarray:
    if sample is not None and len(sample):
        return np.ascontiguousarray(np.asarray(sample)[:SAMPLE_ROWS], dtype=np.float32)
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, (SAMPLE_ROWS, size, size, 3)).astype(np.float32)
