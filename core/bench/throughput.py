"""Item 3: training throughput of ResNet-50 on this machine's accelerator (the GPU path).

Full fine-tune (all four residual stages trainable, BatchNorm frozen as the engine fine-tunes) at
224 px with the device's mixed-precision policy, compiled steps (XLA on JAX; Keras's choice on
TensorFlow) and a batch sized to the device, fed twice: one in-memory uint8 batch over and over
(synthetic: no input cost) and real batches read from the decoded cache by the engine's own
`ImageBatches` (threads, uint8). Then the frozen-backbone phase on images (forward only through
ResNet-50), the head on cached features, and feature extraction. Each figure times a second
epoch of `steps` steps, after a first that compiles.

On a CPU it runs a few small steps so that the code path stays tested; the GPU figure (target
3,000 img/s on one H100 or H200 with KERAS_BACKEND=jax) needs `python -m core bench --gpu` on a GPU.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import keras
import numpy as np

from core.bench.common import BACKBONE, PHOTO_SIZES, Row, Scale, photos_of, rate_row
from core.data.datasets import scan_dataset
from core.data.ingest import ingest
from core.device import describe, dtype_policy, input_workers, mixed_precision_policy, recommended_batch_size
from core.network.layer_names import FEATURE_DIM
from core.network.model import build_classifier, head_of, unfreeze
from core.settings.config import cache_size_for
from core.train.batches import ExtractionBatches, FeatureBatches, ImageBatches
from core.train.distribute import data_parallel
from core.train.features import build_extractor

log = logging.getLogger("flora")
ITEM = "3 GPU path"
TARGET_IMAGES_PER_SECOND = 3000
TARGET_GPUS = ("H100", "H200")  # the cards the target is set for; on another card the row says no verdict


def target_gpu(name: str) -> bool:
    return any(card in name for card in TARGET_GPUS)


# Published ResNet-50 training throughput at 224 px (mixed precision), for comparison.
ANCHORS = {
    "H200": (3080, "NVIDIA's tuned PyTorch script, 1 x H200"),
    "A100": (2375, "TensorFlow AMP + XLA, 1 x A100"),
}
CPU_BATCH, CPU_STEPS = 16, 3  # a CPU only checks the path: a few small steps
PLAIN_BATCH = 32  # Keras's default batch size


def run(scale: Scale, dataset: Path, workdir: Path) -> list[Row]:
    device = describe()
    on_gpu = device.kind == "gpu"
    size = scale.gpu_size
    batch = recommended_batch_size(device, size, training=True) if on_gpu else min(CPU_BATCH, 4 * scale.gpu_steps)
    steps = scale.gpu_steps if on_gpu else min(scale.gpu_steps, CPU_STEPS)
    policy = mixed_precision_policy(device)

    # Real batches come from a real decoded cache: the dataset's photos (or photos made up when
    # this machine has none), decoded at the cache size of a 224 px model.
    source = dataset if photos_of(dataset) else _noise_photos(workdir / "gpu-photos", 500)
    cache = ingest(scan_dataset(source), cache_size_for(size), workdir / "gpu-data" / ".cache")
    workers = input_workers(device)
    classes = len(cache.classes)
    rows: list[Row] = []
    # The baseline: the same model and step with plain Keras defaults (float32, batch 32); on a CPU,
    # where Flora changes neither, the same small batch as ours.
    plain_batch = PLAIN_BATCH if on_gpu else batch
    with data_parallel(device):
        model = build_classifier(classes, size, "none", backbone=BACKBONE)
        unfreeze(model, 4)
        _compile(model)
        plain = _images_per_second(model, SameBatch(size, classes, plain_batch, steps), steps, plain_batch)
        del model
    with dtype_policy(policy), data_parallel(device) as parallel:
        model = build_classifier(classes, size, "none", backbone=BACKBONE)
        unfreeze(model, 4)
        _compile(model)
        synthetic = SameBatch(size, classes, batch, steps)
        full = _images_per_second(model, synthetic, steps, batch)
        real = _images_per_second(
            model, _real_batches(cache, size, batch, steps, workers, parallel.replicas), steps, batch
        )
        jit = bool(getattr(model, "jit_compile", False))
        unfreeze(model, 0)  # the frozen-backbone phase: only the head trains
        _compile(model)
        frozen = _images_per_second(model, synthetic, steps, batch)
        head = head_of(model)
        _compile(head)
        features = _images_per_second(head, _feature_batches(classes, batch * 4), 10, batch * 4)
        extraction_batch = recommended_batch_size(device, size, training=False) if on_gpu else batch
        extraction = _extraction_per_second(model, cache, size, extraction_batch, steps, workers)

    setup = (
        f"{device.label}; batch {batch}; {steps} timed steps; mixed precision {policy or 'off'}; "
        f"compiled (XLA) {'yes' if jit else 'no'}; {parallel.label}; {workers} reader threads"
    )
    anchors = "; published anchors: " + ", ".join(f"{v:,} img/s ({label})" for v, label in ANCHORS.values())
    if real < 0.9 * full:
        limit = f"limited by the input pipeline: real batches reach {real / full:.0%} of synthetic ones"
    else:
        limit = "limited by the training step itself: real batches keep up with synthetic ones"
    setup += f"; {limit}"
    full_row = rate_row(
        "gpu.full_finetune",
        ITEM,
        f"ResNet-50 {size} px full fine-tune, synthetic in-memory batches",
        "img/s",
        full,
        plain,
        f"plain Keras defaults: float32, batch {plain_batch}",
        notes=setup + anchors,
    )
    full_row.target = f">= {TARGET_IMAGES_PER_SECOND:,} img/s on one H100 or H200"
    full_row.met = bool(full >= TARGET_IMAGES_PER_SECOND) if on_gpu and target_gpu(device.name) else None
    if not on_gpu:
        full_row.notes += "; no GPU here: a CPU figure, the H100/H200 target stays open"
    rows.append(full_row)
    rows.append(
        rate_row(
            "gpu.real_batches",
            ITEM,
            "the same, real batches from the decoded cache",
            "img/s",
            real,
            full,
            "synthetic in-memory batches",
            target_ratio=0.9,
            notes="input pipeline keeps up when the ratio is near 1",
        )
    )
    rows.append(
        rate_row(
            "gpu.frozen_backbone",
            ITEM,
            "frozen backbone on images (head-only training)",
            "img/s",
            frozen,
            full,
            "full fine-tune, synthetic batches",
            target_ratio=2,
            notes="forward only through ResNet-50",
        )
    )
    rows.append(
        rate_row(
            "gpu.head_on_features",
            ITEM,
            "head on cached features",
            "img/s",
            features,
            full,
            "full fine-tune, synthetic batches",
            notes=f"batch {batch * 4}",
        )
    )
    rows.append(
        rate_row(
            "gpu.extraction",
            ITEM,
            "feature extraction from the cache (the cached path's one-time pass)",
            "img/s",
            extraction,
            frozen,
            "frozen-backbone training on images",
            notes=f"batch {extraction_batch}, uint8 from the cache, the last batch padded (one compile)",
        )
    )
    return rows


def _compile(model: keras.Model) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=["accuracy"],
    )


class EpochTimer(keras.callbacks.Callback):
    """Seconds per epoch; an epoch ends when its metrics are read, so the device work is done."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


class SameBatch(keras.utils.PyDataset):
    """One uint8 batch served every step: what the model costs with no input pipeline at all."""

    def __init__(self, size: int, classes: int, batch: int, steps: int):
        super().__init__()
        rng = np.random.default_rng(0)
        self.x = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        self.y = keras.utils.to_categorical(rng.integers(0, classes, batch), classes).astype("float32")
        self.steps = steps

    def __len__(self) -> int:
        return 2 * self.steps  # fit(steps_per_epoch=...) goes on where the previous epoch stopped

    def __getitem__(self, index: int):
        return self.x, self.y


def _images_per_second(model: keras.Model, data, steps: int, batch: int) -> float:
    """Images per second over the second epoch of `steps` steps (the first one compiles)."""
    timer = EpochTimer()
    model.fit(data, epochs=2, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    return steps * batch / timer.seconds[-1]


def _feature_batches(classes: int, batch: int) -> FeatureBatches:
    rng = np.random.default_rng(0)
    n = batch * 20  # two epochs of 10 steps
    views = rng.normal(size=(3, n, FEATURE_DIM)).astype(np.float16)
    return FeatureBatches(views, rng.integers(0, classes, n), classes, batch, seed=0)


def _real_batches(cache, size: int, batch: int, steps: int, workers: int, replicas: int) -> ImageBatches:
    # Enough positions for both epochs even when the cache is smaller: rows are read again.
    positions = np.resize(np.arange(len(cache)), 2 * steps * batch)
    return ImageBatches(
        cache,
        positions,
        len(cache.classes),
        size,
        batch,
        shuffle=True,
        replicas=replicas,
        workers=workers,
        max_queue_size=2 * workers,
    )


def _extraction_per_second(model: keras.Model, cache, size: int, batch: int, steps: int, workers: int) -> float:
    extractor = build_extractor(model)
    positions = np.resize(np.arange(len(cache)), steps * batch)
    batches = ExtractionBatches(cache, positions, size, batch, workers=workers, max_queue_size=2 * workers)
    extractor.predict(batches, verbose=0)  # compiles
    start = time.perf_counter()
    extractor.predict(batches, verbose=0)
    return len(positions) / (time.perf_counter() - start)


def _noise_photos(folder: Path, count: int) -> Path:
    """Random JPEGs of tf_flowers sizes in two class folders, for a machine without the photos."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        width, height = PHOTO_SIZES[i % len(PHOTO_SIZES)]
        out = folder / f"class{i % 2}"
        out.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((width, height), Image.Resampling.BICUBIC).save(out / f"{i:05d}.jpg")
    return folder
