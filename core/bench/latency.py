"""Item 4: predicting with a saved run: one photo at a time (latency) and in batches (throughput).

Ours: `core.inference.Predictor` (the model loaded once, its predict step compiled once for a
single image) as the Predict page and `python -m core predict` use it. Baseline: the plain Keras
way, `model.predict(x[None])` per photo after the same decoding, and `model.predict(images)` for
a batch. Single-photo timings alternate ours / baseline photo by photo, so both see the same noise.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from core.bench.common import BACKBONE, Row, Scale, photos_of, rate_row, time_row
from core.data.datasets import scan_dataset
from core.data.imaging import load_for_model
from core.inference import Predictor
from core.processes import JobState
from core.runs.files import run_files
from core.runs.record import new_run_record
from core.runs.store import RunStore
from core.settings.config import TrainConfig

log = logging.getLogger("flora")
ITEM = "4 inference"
BATCH = 64


def run(scale: Scale, dataset: Path, workdir: Path) -> list[Row]:
    import keras

    from core.network.model import build_classifier  # heavy: keras
    from core.train.training import save_model  # heavy: keras

    size = scale.inference_size
    index = scan_dataset(dataset)
    config = TrainConfig(image_size=size, weights="none", epochs=1, backbone=BACKBONE)
    store = RunStore(workdir / "inference-models")
    run_id = "bench-inference"
    store.create(run_id, new_run_record(index, config))
    # Latency does not depend on what the weights learned: a freshly built classifier will do.
    save_model(
        build_classifier(len(index.classes), size, "none", backbone=BACKBONE), run_files(store.run_dir(run_id)).model
    )
    store.set_status(run_id, state=JobState.DONE)

    all_photos = photos_of(dataset)
    photos = all_photos[:: max(1, len(all_photos) // scale.inference_photos)][: scale.inference_photos]
    predictor = Predictor(store.get(run_id))
    plain = keras.saving.load_model(run_files(store.run_dir(run_id)).model, compile=False)

    def plain_predict(photo: Path) -> np.ndarray:
        x = load_for_model(photo, size, config.cache_size)
        return plain.predict(x[None].astype("float32"), verbose=0)

    for photo in photos[:3]:  # warm both: the first calls compile
        predictor.predict([photo])
        plain_predict(photo)
    ours, theirs = [], []
    for photo in photos:
        start = time.perf_counter()
        result = predictor.predict([photo])[0]
        ours.append(time.perf_counter() - start)
        if not result.ok:
            raise RuntimeError(f"prediction failed for {photo}: {result.error}")
        start = time.perf_counter()
        plain_predict(photo)
        theirs.append(time.perf_counter() - start)

    images = np.stack([load_for_model(photo, size, config.cache_size) for photo in photos])
    images = np.concatenate([images] * max(1, -(-2 * BATCH // len(images))))[: max(2 * BATCH, len(images))]
    predictor.predict_batch(images[:BATCH], batch_size=BATCH)  # compile the batch shape
    plain.predict(images[:BATCH].astype("float32"), batch_size=BATCH, verbose=0)
    batch_ours, batch_plain = [], []
    for _ in range(2):
        start = time.perf_counter()
        predictor.predict_batch(images, batch_size=BATCH)
        batch_ours.append(len(images) / (time.perf_counter() - start))
        start = time.perf_counter()
        plain.predict(images.astype("float32"), batch_size=BATCH, verbose=0)
        batch_plain.append(len(images) / (time.perf_counter() - start))

    what = f"{len(photos)} photos, {size} px model, decode + forward"
    ms = 1000.0
    rows = []
    for q in (50, 95):
        ours_q, theirs_q = np.percentile(ours, q), np.percentile(theirs, q)
        row = time_row(
            f"inference.p{q}",
            ITEM,
            f"one photo, latency p{q}",
            ours_q * ms,
            theirs_q * ms,
            "plain Keras: model.predict(x[None]) per photo, same decoding",
            notes=what,
        )
        row.unit = "ms"
        rows.append(row)
    rows.append(
        rate_row(
            "inference.batch",
            ITEM,
            f"batches of {BATCH} decoded photos, throughput",
            "img/s",
            max(batch_ours),
            max(batch_plain),
            f"plain Keras: model.predict(images, batch_size={BATCH})",
            notes=f"{len(images)} images, {size} px, best of 2 alternating runs; forward only",
        )
    )
    return rows
