"""How a served run's inference graph runs: the runtime chosen for it, warmed before requests, op by op meanwhile.

`GraphRunner` holds the Keras inference graph of one run (probabilities, logits, pooled features) and hands every
batch to the runtime that runs it (core.runtimes: ONNX Runtime or OpenVINO on a CPU where measured faster here and
checked against Keras, else Keras). A switch warms it in the background; until that is done a batch runs the
same graph op by op in Keras (slower per batch, but the new run answers seconds sooner).
"""

from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np

from core.network import layer_names as names
from core.paths import cache_dir
from core.runtimes.choice import Forward, accelerated
from core.runtimes.names import KERAS

log = logging.getLogger("flora")


class GraphRunner:
    """One run's inference graph through the runtime chosen for it, called like the graph: batch -> outputs."""

    def __init__(self, model, image_size: int, data_root: str | os.PathLike | None, run_id: str):
        self.model = model  # the Keras inference graph (core.network.graph.inference_model)
        self.image_size = image_size
        self.data_root = data_root
        self.run_id = run_id
        self.through: Forward | None = None  # the runtime that runs the graph (core.runtimes), once prepared
        self._preparing = threading.Lock()
        self.compiling = threading.Event()  # set while `warm(background=True)` prepares it
        self.warm_seconds: float | None = None

    @property
    def graph(self):
        """What runs the graph now: the chosen runtime once prepared, else the Keras graph."""
        return self.through or self.model

    def warm(self, batch_sizes: list[int], background: bool = False) -> None:
        """Prepare the forward pass for these batch sizes, so no request pays for it.

        First the runtime that will run it is chosen; it runs the smallest and largest size once. Where Keras
        runs it, TensorFlow traces the graph once with the batch dimension left open (every size then reuses it)
        and runs it once; JAX compiles each size, so each runs once. `background` (a switch): return at once;
        until it is ready, a batch runs the same graph op by op in Keras.
        """
        if not background:
            self._compile(list(batch_sizes))
            return
        self.compiling.set()
        compiling = threading.Thread(target=self._compile, args=(list(batch_sizes),), name=f"warm-{self.run_id}")
        compiling.daemon = True
        compiling.start()

    def _compile(self, sizes: list[int]) -> None:
        started = time.perf_counter()
        try:
            forward = self.prepare_runtime(max(sizes))
            if forward.runtime == KERAS:
                self._compile_keras(sizes)
            else:
                for size in sorted({sizes[0], max(sizes)}):  # the runtime's first call at a shape allocates
                    forward.run(np.zeros((size, self.image_size, self.image_size, 3), dtype=np.float32))
        finally:
            self.compiling.clear()
        self.warm_seconds = time.perf_counter() - started

    def _compile_keras(self, sizes: list[int]) -> None:
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf  # heavy: the backend's own tracing

            self.model.make_predict_function()
            spec = tf.TensorSpec((None, self.image_size, self.image_size, 3), tf.float32)
            self.model.predict_function.get_concrete_function([(spec,)])
            sizes = sizes[:1]
        for size in sizes:
            self.model.predict_on_batch(np.zeros((size, self.image_size, self.image_size, 3), dtype=np.float32))

    def prepare_runtime(self, batch: int = 32) -> Forward:
        """The runtime that runs this run's graph from now on (core.runtimes.choice: asked for, or the fastest one
        measured here, checked against Keras once per graph); until it is ready Keras answers."""
        with self._preparing:
            if self.through is None:
                root = None if self.data_root is None else cache_dir(self.data_root)
                self.through = accelerated(self.model, cache_root=root, batch=batch)
                log.info("run %s: %s", self.run_id, self.through.decision.text)
        return self.through

    @property
    def fixed_shapes(self) -> bool:
        """Whether batches must keep the warmed sizes: Keras's compiled graph, yes; the other runtimes take any."""
        return self.through is None or self.through.runtime == KERAS or self.compiling.is_set()

    @property
    def batches_at_once(self) -> int:
        """Batches that can be in the model at once: the chosen runtime's once it is ready, else one (Keras)."""
        return 1 if self.through is None or self.compiling.is_set() else self.through.batches_at_once

    @property
    def runtime(self) -> str | None:
        """Which runtime answers and why, once chosen."""
        return None if self.through is None else self.through.decision.text

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """probabilities, logits and pooled features (names.INFERENCE_OUTPUTS) for a (N, size, size, 3) batch."""
        import keras

        batch = np.asarray(batch, dtype=np.float32)
        if not self.compiling.is_set():
            forward = self.through or self.prepare_runtime(len(batch))
            return dict(zip(names.INFERENCE_OUTPUTS, forward.run(batch), strict=True))
        outputs = self.model(batch, training=False)  # a switch's first seconds: the same graph op by op
        return {
            n: keras.ops.convert_to_numpy(o).astype(np.float32)
            for n, o in zip(names.INFERENCE_OUTPUTS, outputs, strict=True)
        }
