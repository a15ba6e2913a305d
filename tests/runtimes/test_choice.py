"""Which runtime runs a forward pass: what is asked for, the same answers whichever runs, a measured choice kept per
machine, and Keras whenever another runtime is missing, fails or gives other answers."""

from __future__ import annotations

import numpy as np
import pytest

from core.network.graph import inference_model
from core.network.model import build_classifier
from core.paths import MACHINE_CACHE_ENV
from core.runtimes import choice, engines
from core.runtimes.choice import RUNTIME_ENV, accelerated, check, requested

SIZE = 32


@pytest.fixture(autouse=True)
def machine_cache(tmp_path, monkeypatch):
    """Each test measures on a machine of its own: no choice kept by another test or run."""
    monkeypatch.setenv(MACHINE_CACHE_ENV, str(tmp_path / "machine"))
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    return tmp_path / "machine"


@pytest.fixture(scope="module")
def graph():
    classifier = build_classifier(3, SIZE, "none", head=(8,), seed=0)
    return inference_model(classifier)


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(0).uniform(0, 255, (6, SIZE, SIZE, 3)).astype("float32")


def test_the_runtime_asked_for_comes_from_the_argument_then_the_environment(monkeypatch):
    assert requested() == "auto"
    monkeypatch.setenv(RUNTIME_ENV, "openvino")
    assert requested() == "openvino" and requested("keras") == "keras"
    with pytest.raises(ValueError, match="runtime must be one of"):
        requested("tensorrt")


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_each_runtime_gives_kerass_answers(graph, pixels, runtime, tmp_path):
    forward = accelerated(graph, runtime=runtime, cache_root=tmp_path)
    assert forward.runtime == runtime and forward.decision.runtime == runtime
    assert "asked for" in forward.decision.text and "within" in forward.decision.text
    keras_out = accelerated(graph, runtime="keras").predict_on_batch(pixels)
    out = forward.predict_on_batch(pixels)
    for name, a, b in zip(graph.output_names, keras_out, out, strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-4 * np.abs(a).max(), err_msg=name)
    assert (out[0].argmax(1) == keras_out[0].argmax(1)).all()


@pytest.mark.backend_agnostic
def test_the_check_on_a_few_images_runs_op_by_op_only_where_that_is_cheap(graph, pixels):
    """TensorFlow runs the check's few images op by op (no graph to trace); JAX compiles each op on its first call,
    so there the whole pass is compiled instead. Either way, Keras's own answers."""
    import keras

    check_engine = engines.KerasEngine(graph, eager=True)
    assert check_engine.eager == (keras.backend.backend() == "tensorflow")
    compiled = engines.KerasEngine(graph).run(pixels)
    for a, b in zip(compiled, check_engine.run(pixels), strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * np.abs(a).max())


def test_auto_measures_once_keeps_the_figures_and_picks_the_fastest(graph, pixels, tmp_path, monkeypatch):
    calls = []

    def fake_measure(runners, x, rounds=2):
        calls.append(sorted(runners))
        return {name: {"keras": 10.0, "onnxruntime": 30.0, "openvino": 20.0}[name] for name in runners}

    monkeypatch.setattr(choice, "measure", fake_measure)
    first = accelerated(graph, cache_root=tmp_path, sample=pixels)
    assert first.runtime == "onnxruntime" and calls == [["keras", "onnxruntime", "openvino"]]
    assert first.decision.images_per_cpu_second == {"keras": 10.0, "onnxruntime": 30.0, "openvino": 20.0}
    assert "3.00x Keras's images per CPU-second at 32 px" in first.decision.text
    kept = choice.choice_path("tiny", SIZE)
    assert kept.is_file() and kept.name.startswith(f"choice-{choice.device_key()}-tiny-{SIZE}")
    again = accelerated(graph, cache_root=tmp_path / "other-data")  # another data folder, the same machine
    assert again.runtime == "onnxruntime" and len(calls) == 1  # read, not measured again
    assert [(d.backbone, d.image_size, d.runtime) for d in choice.stored_choices()] == [("tiny", SIZE, "onnxruntime")]


def test_auto_keeps_keras_where_it_measured_fastest(graph, tmp_path, monkeypatch):
    monkeypatch.setattr(
        choice, "measure", lambda runners, x, rounds=2: {n: 50.0 if n == "keras" else 20.0 for n in runners}
    )
    forward = accelerated(graph, cache_root=tmp_path)
    assert forward.runtime == "keras" and "the fastest measured here at 32 px" in forward.decision.text


def test_a_runtime_that_is_not_installed_leaves_keras_and_says_so(graph, tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "installed", lambda runtime: runtime == "keras")
    forward = accelerated(graph, runtime="openvino", cache_root=tmp_path)
    assert forward.runtime == "keras"
    assert "openvino was asked for, but OpenVINO is not installed: Keras runs it" in forward.decision.text
    assert accelerated(graph, cache_root=tmp_path).runtime == "keras"


def test_a_runtime_with_other_answers_is_left_out(graph, pixels, tmp_path, monkeypatch):
    real = engines.engine

    class Off:
        name = "onnxruntime"

        def __init__(self, inner):
            self.inner = inner

        def run(self, x):
            return [o * 1.01 for o in self.inner.run(x)]  # 1 % off: far past the tolerance

        def close(self):
            pass

    monkeypatch.setattr(engines, "engine", lambda name, *a, **k: Off(real(name, *a, **k)))
    forward = accelerated(graph, runtime="onnxruntime", cache_root=tmp_path, sample=pixels)
    assert forward.runtime == "keras" and "gave other answers than Keras" in forward.decision.text


def test_a_graph_is_checked_once_per_runtime_version(graph, pixels, tmp_path, monkeypatch):
    accelerated(graph, runtime="onnxruntime", cache_root=tmp_path, sample=pixels)
    records = list((tmp_path / "runtimes").glob("*.checked.json"))
    assert len(records) == 1 and len(list((tmp_path / "runtimes").glob("*.onnx"))) == 1
    eager = []
    original = engines.KerasEngine.run
    monkeypatch.setattr(engines.KerasEngine, "run", lambda self, x: eager.append(self.eager) or original(self, x))
    again = accelerated(graph, runtime="onnxruntime", cache_root=tmp_path, sample=pixels)
    assert again.runtime == "onnxruntime" and eager == []  # no Keras pass: the record says it agreed


def test_a_runtime_failing_later_hands_over_to_keras(graph, pixels, tmp_path):
    forward = accelerated(graph, runtime="onnxruntime", cache_root=tmp_path)

    class Broken:
        name = "onnxruntime"

        def run(self, x):
            raise RuntimeError("out of threads")

        def close(self):
            pass

    forward.engine = Broken()
    out = forward.predict_on_batch(pixels)
    assert forward.runtime == "keras" and len(out) == 3 and "failed on a batch" in forward.decision.text


def test_check_holds_shapes_finiteness_tolerance_and_the_top_class():
    a = np.array([[1.0, 0.0, 0.0], [0.2, 0.5, 0.3]], dtype=np.float32)
    assert check(["logits"], [a], [a + 1e-6])[1] is None
    assert "shape" in check(["logits"], [a], [a[:1]])[1]
    assert "not finite" in check(["logits"], [a], [np.full_like(a, np.nan)])[1]
    assert "differs by" in check(["features"], [a], [a + 0.01])[1]
    swapped = a.copy()
    swapped[1] = [0.2, 0.3, 0.5]
    assert "top-1" in check(["logits"], [a], [swapped])[1] or "differs" in check(["logits"], [a], [swapped])[1]
    tie = np.array([[0.5, 0.5 + 1e-6]], dtype=np.float32)  # a tie within the tolerance is not a disagreement
    assert check(["probabilities"], [tie], [tie[:, ::-1].copy()])[1] is None


def test_physical_cores_are_at_least_one_and_at_most_the_cpus():
    assert 1 <= engines.physical_cores() <= (__import__("os").cpu_count() or 1)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino", "keras"])
def test_callers_at_once_each_get_their_own_answers(graph, pixels, runtime, tmp_path):
    """The server's batch workers call one runtime at once: OpenVINO runs each caller's batch on a stream of its
    own, the others take the callers in turn; every caller gets the answers a lone call gives."""
    import threading

    forward = accelerated(graph, runtime=runtime, cache_root=tmp_path)
    assert forward.batches_at_once >= 1 and (forward.batches_at_once == 1 or runtime == "openvino")
    batches = [pixels[i : i + 1 + i % 3] for i in range(6)] + [pixels]  # 1-3 rows each, and all 6 (a split)
    alone = [forward.run(b)[0] for b in batches]
    got: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        for _ in range(5):
            got[i] = forward.run(batches[i])[0]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for i, expected in enumerate(alone):
        np.testing.assert_allclose(got[i], expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_openvino_splits_a_lone_batch_over_its_streams_and_queues_one_batch_a_stream(graph, tmp_path):
    """A caller alone gets a request a stream (its batch split across them); callers at once get a request each,
    two a stream, so the next batch already waits on a stream when the last one ends."""
    forward = accelerated(graph, runtime="openvino", cache_root=tmp_path)
    engine = forward.engine
    streams = engine.stream_count
    assert forward.batches_at_once == engines.REQUESTS_A_STREAM * streams == len(engine.requests)
    alone = engine._take(2 * streams)
    assert len(alone) == streams
    engine._give_back(alone)
    small = engine._take(1)
    assert len(small) == 1  # too few rows to split
    others = [engine._take(2 * streams) for _ in range(len(engine.requests) - 1)]
    assert [len(taken) for taken in others] == [1] * len(others)  # not every request free: one each
    for taken in [small, *others]:
        engine._give_back(taken)
    assert len(engine._free) == len(engine.requests)
