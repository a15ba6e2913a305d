"""Item 12: the frozen backbone's forward pass in each runtime against TensorFlow and this CPU's matmul ceiling.

For each image size (64, 128, 224 px at full scale) ResNet-50's feature extractor (preprocessing, backbone,
pooling: what feature extraction runs) is written as ONNX (core.runtimes.onnx_graph, timed: the conversion's
cost) and run by Keras (on TensorFlow here: the baseline), ONNX Runtime and OpenVINO on the same decoded photos
in the same batch, alternating, one warm-up call and then timed rounds; the figure is images per CPU-second of
this process (steadier than the clock on shared cores), the best round. Each runtime's features are checked
against Keras's (largest difference relative to the largest feature).

The ceiling is this CPU's float32 matrix multiply measured in the same process, before and after the sizes: the
best GFLOP per CPU-second of numpy's BLAS, ONNX Runtime's MatMul (MLAS) and OpenVINO's (oneDNN), one thread and
all physical cores, 1024 and 2048 square. A runtime's GFLOP per CPU-second is its images per CPU-second times
ResNet-50's FLOPs per image at that size (2 x the multiply-adds of its convolutions, counted from the graph).

Targets (issue 44): the fastest runtime at least 1.5x TensorFlow's images per CPU-second at 64 and 128 px, at
least 80% of the ceiling at 224 px, never slower than TensorFlow. Below the tiny scale the levers are measured
too, at one size: ONNX Runtime's graph optimisation level, its threads and spin-waiting, NCHW (this converter)
against NHWC (tf2onnx's graph, where TensorFlow is the backend), OpenVINO's throughput against latency hint, and
the batch size.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from core.bench.common import BACKBONE, Row, Scale, photos_of, rate_row
from core.data.imaging import load_for_model
from core.runtimes import engines, onnx_graph
from core.runtimes.choice import check, measure
from core.runtimes.names import KERAS, ONNXRUNTIME, OPENVINO, TITLES
from core.settings.config import TrainConfig

log = logging.getLogger("flora")
ITEM = "12 runtime"
# scale -> (sizes, batch, timed rounds, lever size or None)
PLAN = {"full": ((64, 128, 224), 32, 3, 128), "quick": ((64, 128), 32, 2, 64), "tiny": ((32,), 4, 1, None)}
SPEEDUP_TARGET = 1.5  # at 64 and 128 px, against TensorFlow
CEILING_TARGET = 0.8  # at 224 px, of the measured matmul ceiling
CEILING_SIZE = 224


def run(scale: Scale, dataset: Path, workdir: Path) -> list[Row]:
    sizes, batch, rounds, lever_size = PLAN.get(scale.name, PLAN["quick"])
    photos = photos_of(dataset)[:: max(1, len(photos_of(dataset)) // batch)][:batch]
    small = scale.name == "tiny"
    ceilings = [matmul_ceiling(small)]
    rows: list[Row] = []
    for size in sizes:
        rows += _size_rows(size, photos, batch, rounds, workdir)
        if size == lever_size:
            rows += _lever_rows(size, photos, batch, rounds, workdir)
    ceilings.append(matmul_ceiling(small))
    ceiling, how = max(ceilings, key=lambda c: c[0])
    return _with_ceiling(rows, ceiling, how)


def _extractor(size: int):
    from core.network.model import build_classifier  # heavy: keras
    from core.train.features import build_extractor  # heavy: keras

    return build_extractor(build_classifier(2, size, "none", backbone=BACKBONE))


def _pixels(photos: list[Path], size: int, batch: int) -> np.ndarray:
    cache_size = TrainConfig(image_size=size).cache_size
    images = np.stack([load_for_model(p, size, cache_size) for p in photos]).astype(np.float32)
    return np.concatenate([images] * -(-batch // len(images)))[:batch]


def _size_rows(size: int, photos: list[Path], batch: int, rounds: int, workdir: Path) -> list[Row]:
    model = _extractor(size)
    pixels = _pixels(photos, size, batch)
    started = time.perf_counter()
    graph = workdir / f"resnet50-{size}.onnx"
    graph.parent.mkdir(parents=True, exist_ok=True)
    graph.write_bytes(onnx_graph.convert(model, ["features"]).SerializeToString())
    convert_seconds = time.perf_counter() - started
    runners = {KERAS: engines.KerasEngine(model)}
    runners.update({name: engines.engine(name, graph, ["features"]) for name in (ONNXRUNTIME, OPENVINO)})
    reference = runners[KERAS].run(pixels)
    differences = {name: check(["features"], reference, r.run(pixels))[0] for name, r in runners.items()}
    figures = measure(runners, pixels, rounds)
    flops = forward_flops(model)
    best = max(figures, key=figures.get)
    rows = []
    for name, rate in figures.items():
        if name == KERAS:
            continue
        rows.append(
            rate_row(
                f"runtime.{size}.{name}",
                ITEM,
                f"{TITLES[name]} at {size} px, ResNet-50 features",
                "img/CPU-s",
                rate,
                figures[KERAS],
                "Keras on TensorFlow, predict_on_batch, the same photos and batch",
                target_ratio=SPEEDUP_TARGET if size < CEILING_SIZE and name == best else None,
                notes=f"batch {batch}, best of {rounds} alternating rounds; features within {differences[name]:.1e} "
                f"of Keras's; {rate * flops / 1e9:.1f} GFLOP per CPU-second ({flops / 1e9:.2f} GFLOP an image)",
                size=size,
                gflop_per_image=flops / 1e9,
                gflop_per_cpu_second=rate * flops / 1e9,
                difference=differences[name],
                fastest=name == best,
                convert_seconds=convert_seconds,
            )
        )
    rows.append(
        Row(
            f"runtime.{size}.keras",
            ITEM,
            f"Keras (TensorFlow) at {size} px, the baseline",
            "img/CPU-s",
            figures[KERAS],
            notes=f"{figures[KERAS] * flops / 1e9:.1f} GFLOP per CPU-second; fastest here: {TITLES[best]}; the "
            f"graph written as ONNX in {convert_seconds:.1f} s",
            extra={
                "size": size,
                "gflop_per_image": flops / 1e9,
                "gflop_per_cpu_second": figures[KERAS] * flops / 1e9,
                "fastest": best,
            },
        )
    )
    return rows


def _lever_rows(size: int, photos: list[Path], batch: int, rounds: int, workdir: Path) -> list[Row]:
    """Each lever against the setting Flora uses, in one alternating measurement at one size."""
    import onnxruntime as ort

    model = _extractor(size)
    pixels = _pixels(photos, size, batch)
    graph = workdir / f"resnet50-{size}.onnx"
    variants = {
        "ort_all": engines.OnnxRuntimeEngine(graph, ["features"]),
        "ort_basic": _ort(graph, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
        "ort_extended": _ort(graph, ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
        "ort_1_thread": engines.OnnxRuntimeEngine(graph, ["features"], threads=1),
        "ort_spinning": _ort(graph, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, spin=True),
        "ov_throughput": engines.OpenVinoEngine(graph, ["features"]),
        "ov_latency": engines.OpenVinoEngine(graph, ["features"], hint="LATENCY"),
    }
    nhwc = _tf2onnx_graph(model, workdir / f"resnet50-{size}-nhwc.onnx")
    if nhwc is not None:
        variants["ort_nhwc_tf2onnx"] = engines.OnnxRuntimeEngine(nhwc[0], ["features"])
        variants["ov_nhwc_tf2onnx"] = engines.OpenVinoEngine(nhwc[0], ["features"])
    figures = measure(variants, pixels, rounds)
    levers = [
        ("ort_basic", "ort_all", "ONNX Runtime: basic graph optimisation", "all optimisations (Flora's)"),
        ("ort_extended", "ort_all", "ONNX Runtime: extended graph optimisation", "all optimisations (Flora's)"),
        ("ort_1_thread", "ort_all", "ONNX Runtime: 1 intra-op thread", "one per physical core (Flora's)"),
        ("ort_spinning", "ort_all", "ONNX Runtime: threads spin-wait", "no spinning (Flora's)"),
        ("ov_latency", "ov_throughput", "OpenVINO: latency hint", "throughput hint (Flora's)"),
    ]
    if nhwc is not None:
        note = f"tf2onnx's NHWC graph (converted in {nhwc[1]:.0f} s)"
        levers += [
            ("ort_nhwc_tf2onnx", "ort_all", f"ONNX Runtime on {note}", "this converter's NCHW graph (Flora's)"),
            ("ov_nhwc_tf2onnx", "ov_throughput", f"OpenVINO on {note}", "this converter's NCHW graph (Flora's)"),
        ]
    rows = [
        rate_row(
            f"runtime.lever.{name}",
            ITEM,
            f"{figure} at {size} px",
            "img/CPU-s",
            figures[name],
            figures[base],
            base_label,
            notes=f"batch {batch}, best of {rounds} alternating rounds, the same photos",
            size=size,
        )
        for name, base, figure, base_label in levers
    ]
    best_name = max(("ort_all", "ov_throughput"), key=figures.get)
    best = variants[best_name]
    for other in variants.values():
        if other is not best:
            other.close()
    runtime = TITLES[ONNXRUNTIME if best_name == "ort_all" else OPENVINO]
    by_batch = {n: _pixels(photos, size, n) for n in (8, 128)}
    rates = {n: measure({"x": best}, x, rounds)["x"] for n, x in by_batch.items()}
    for n, rate in rates.items():
        rows.append(
            rate_row(
                f"runtime.lever.batch{n}",
                ITEM,
                f"{runtime}: batches of {n} at {size} px",
                "img/CPU-s",
                rate,
                figures[best_name],
                f"batches of {batch} (the same runtime)",
                notes=f"best of {rounds} rounds",
                size=size,
            )
        )
    return rows


def _ort(graph: Path, level, spin: bool = False):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.intra_op_num_threads = engines.physical_cores()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

    class _Session:
        name = "onnxruntime"

        def run(self, x):
            return session.run(None, {"image": x})

        def close(self):
            pass

    return _Session()


def _tf2onnx_graph(model, path: Path) -> tuple[Path, float] | None:
    """tf2onnx's NHWC graph of the same extractor (TensorFlow backend only), and how long it took."""
    import keras

    if keras.backend.backend() != "tensorflow" or not engines.installed(ONNXRUNTIME):
        return None
    import tensorflow as tf  # heavy: tf2onnx traces the TensorFlow graph

    from core.export.convert import import_tf2onnx  # heavy: tf2onnx, TensorFlow

    tf2onnx = import_tf2onnx()

    size = int(model.input_shape[1])
    spec = [tf.TensorSpec((None, size, size, 3), tf.float32, name="image")]

    @tf.function(input_signature=spec, autograph=False)
    def features(image):
        return {"features": model(image, training=False)}

    started = time.perf_counter()
    tf2onnx.convert.from_function(features, input_signature=spec, opset=17, output_path=str(path))
    return path, time.perf_counter() - started


def forward_flops(model) -> float:
    """FLOPs of one image through `model`: 2 x the multiply-adds of its convolutions and dense layers."""
    import keras

    total = 0
    for layer in model.layers:
        if hasattr(layer, "layers"):
            total += forward_flops(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, height, width, _ = layer.output.shape
            total += 2 * kh * kw * cin * cout * height * width
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * int(np.prod(layer.kernel.shape))
    return float(total)


def matmul_ceiling(small: bool = False) -> tuple[float, str]:
    """(GFLOP per CPU-second, which) of the best float32 square matrix multiply here: numpy's BLAS, ONNX Runtime's
    MatMul and OpenVINO's, one thread and every physical core, 1024 and 2048 square (256 at the tiny scale)."""
    best = (0.0, "")
    for n in (256,) if small else (1024, 2048):
        a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
        flop = 2.0 * n**3
        for name, runner in _matmuls(n).items():
            runner(a)
            calls = max(2, int(4e9 / flop))
            started = time.process_time()
            for _ in range(calls):
                runner(a)
            rate = flop * calls / max(time.process_time() - started, 1e-9) / 1e9
            if rate > best[0]:
                best = (rate, f"{name}, {n} square")
    return best


def _matmuls(n: int) -> dict:
    from onnx import TensorProto, helper

    runners = {"numpy": lambda a: a @ a}
    tensor = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "a"], ["c"])],
        "matmul",
        [tensor("a", TensorProto.FLOAT, [n, n])],
        [tensor("c", TensorProto.FLOAT, [n, n])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    data = proto.SerializeToString()
    cores = engines.physical_cores()
    if engines.installed(ONNXRUNTIME):
        import onnxruntime as ort

        for threads in sorted({1, cores}):
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
            runners[f"ONNX Runtime MatMul, {threads} thread(s)"] = lambda a, s=session: s.run(None, {"a": a})
    if engines.installed(OPENVINO):
        import openvino as ov

        core = ov.Core()
        for threads in sorted({1, cores}):
            compiled = core.compile_model(
                core.read_model(data, b""),
                "CPU",
                {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"},
            )
            runners[f"OpenVINO MatMul, {threads} thread(s)"] = lambda a, c=compiled: c([a])
    return runners


def _with_ceiling(rows: list[Row], ceiling: float, how: str) -> list[Row]:
    """Each row's share of the ceiling in its notes; at 224 px the fastest runtime judged against it."""
    out = []
    for row in rows:
        gflops = row.extra.get("gflop_per_cpu_second")
        if gflops:
            row.extra["of_ceiling"] = gflops / ceiling
            row.notes += f"; {gflops / ceiling:.0%} of the ceiling"
        out.append(row)
        if row.extra.get("fastest") is True and row.extra.get("size") == CEILING_SIZE:
            out.append(
                rate_row(
                    f"runtime.{CEILING_SIZE}.ceiling",
                    ITEM,
                    f"{row.figure.split(' at ')[0]} at {CEILING_SIZE} px against the matmul ceiling",
                    "GFLOP/CPU-s",
                    gflops,
                    ceiling,
                    f"this CPU's float32 matmul ceiling ({how})",
                    target_ratio=CEILING_TARGET,
                    notes="the same process, measured before and after the sizes, the best",
                )
            )
    out.append(
        Row(
            "runtime.ceiling",
            ITEM,
            "float32 matmul ceiling, this CPU",
            "GFLOP/CPU-s",
            ceiling,
            notes=f"best of numpy, ONNX Runtime's and OpenVINO's MatMul, 1 thread and all physical cores: {how}",
        )
    )
    return out
