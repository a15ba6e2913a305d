"""Item 1: frozen-backbone training on cached features against the plain Keras way, end to end.

Both sides are the real engine (`run_job.execute`, as `python -m core train` runs it) on the same
decoded-image cache, same config, same process: `feature_cache=False` is the plain way (the
augmentation layers inside the model, every epoch a full forward pass through the frozen
ResNet-50, as the seed notebooks do). Timed end to end: model build, feature extraction or image
epochs, fitting, saving model.keras, evaluating the test split.
"""

from __future__ import annotations

import logging
from pathlib import Path

from core import run_job
from core.bench.common import BACKBONE, Row, Scale, link_subset, remove, time_row, timed
from core.data.datasets import scan_dataset
from core.data.ingest import ingest
from core.paths import cache_dir, features_dir
from core.processes import JobState
from core.runs.store import RunStore
from core.settings.config import AUGMENT_PRESETS, TrainConfig
from core.train import jobs

log = logging.getLogger("flora")
ITEM = "1 frozen-backbone training"
VIEWS = 2  # cached augmented views per training image, besides the clean one


def run(scale: Scale, dataset: Path, workdir: Path) -> list[Row]:

    data = dataset
    if scale.train_per_class is not None:
        data = link_subset(dataset, workdir / "train-photos", scale.train_per_class)
    data_root = workdir / "train-data"
    store = RunStore(workdir / "train-models")
    base = TrainConfig(
        image_size=scale.train_size,
        weights="none",  # a frozen forward pass costs the same whatever the weights' values
        epochs=scale.epochs,
        augment=AUGMENT_PRESETS["standard"],
        augmented_views=VIEWS,
        early_stopping_patience=0,  # both sides run every epoch
        backbone=BACKBONE,
    )
    index = scan_dataset(data)
    ingest(index, base.cache_size, cache_dir(data_root))  # the decoded images both sides read; not timed
    _warm_up(base.image_size)

    def train(config: TrainConfig, cold: bool):
        if cold:
            remove(features_dir(cache_dir(data_root)))
        submission = jobs.submit(store, data, config, force=True)
        with timed() as timing:
            status = run_job.execute(store, submission, data_root, console=False)
        if status.state is not JobState.DONE:
            raise RuntimeError(f"run {submission.run_id} ended {status.state}: {status.error}")
        log.info(
            "bench: %s in %.1f s (cpu %.1f s), accuracy %.3f",
            "cached" if config.feature_cache else "plain",
            timing.wall,
            timing.cpu,
            status.accuracy,
        )
        return timing, status

    cached = [train(base, cold=True)]
    plain, plain_status = train(base.replace(feature_cache=False), cold=False)
    if scale.sandwich:  # the machine may be busier during one of them: time ours before and after
        cached.append(train(base, cold=True))
    features = features_dir(cache_dir(data_root))
    before = {path: path.stat().st_mtime_ns for path in features.rglob("*.npy")}
    reuse = [
        train(base.replace(learning_rate=3e-3), cold=False),
        train(base.replace(head=(512,), dropout=0.3), cold=False),
    ]
    recomputed = {path: path.stat().st_mtime_ns for path in features.rglob("*.npy")} != before
    split = plain_status.split
    train_n, val_n, test_n = split["train"], split["val"], split["test"]
    # Images through ResNet-50: the plain way, every epoch; the cached way, once per view.
    plain_images = scale.epochs * (train_n + val_n) + test_n
    cached_images = (1 + VIEWS) * train_n + val_n + test_n
    ideal = plain_images / cached_images
    what = (
        f"{len(index.entries)} photos ({train_n} train / {val_n} val / {test_n} test) at {base.image_size} px, "
        f"{scale.epochs} epochs, augmentation 'standard', 1 clean + {VIEWS} augmented views, weights none"
    )
    cold_wall = sum(t.wall for t, _ in cached) / len(cached)
    cold_cpu = sum(t.cpu for t, _ in cached) / len(cached)
    reuse_wall = sum(t.wall for t, _ in reuse) / len(reuse)
    reuse_cpu = sum(t.cpu for t, _ in reuse) / len(reuse)
    return [
        time_row(
            "train.cached_cold",
            ITEM,
            "train end to end, features cached from cold",
            cold_wall,
            plain.wall,
            "plain Keras: augment on the fly, full ResNet-50 forward every epoch",
            target_ratio=2.5,
            notes=f"{what}; ideal ratio (images through ResNet-50) {ideal:.2f}x"
            + ("; ours = mean of a run before and one after the baseline" if scale.sandwich else ""),
            cpu_seconds=cold_cpu,
            baseline_cpu_seconds=plain.cpu,
            cpu_ratio=plain.cpu / cold_cpu if cold_cpu else None,
            runs_seconds=[t.wall for t, _ in cached],
            ideal_ratio=ideal,
            accuracy=[s.accuracy for _, s in cached],
            baseline_accuracy=plain_status.accuracy,
        ),
        time_row(
            "train.cached_reuse",
            ITEM,
            "train again on the warm cache (another LR; another head + dropout)",
            reuse_wall,
            plain.wall,
            "the same plain Keras run",
            target_ratio=50,
            notes="mean of the two runs; each builds the model, fits the head, saves model.keras, evaluates"
            + ("; WARNING: they recomputed features" if recomputed else "; no feature was recomputed"),
            cpu_seconds=reuse_cpu,
            baseline_cpu_seconds=plain.cpu,
            cpu_ratio=plain.cpu / reuse_cpu if reuse_cpu else None,
            runs_seconds=[t.wall for t, _ in reuse],
        ),
    ]


def _warm_up(image_size: int) -> None:
    """One forward pass first, so neither side pays the framework's one-time start-up."""
    import numpy as np

    from core.network.model import build_classifier  # heavy: keras

    model = build_classifier(2, image_size, "none", backbone=BACKBONE)
    model.predict(np.zeros((2, image_size, image_size, 3), dtype=np.uint8), verbose=0)
