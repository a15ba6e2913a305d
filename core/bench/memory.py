"""Item 5: peak resident memory of a real training process on a large dataset at 224 px.

The parent makes the dataset once (tf_flowers-sized JPEGs made from the real photos, split into
train / val / test folders), then starts a fresh Python process that trains through the engine
(`run_job.train_and_keep`: ingest into the uint8 cache, phase 1 on images through the frozen backbone, phase 2
fine-tuning the top stage, saving, evaluating), with the training steps per epoch bounded so it
ends in minutes on a CPU. The data path is the real one: every batch is read from the cache file
with positioned reads. The process reports its own peak RSS (`getrusage`); the decoded cache it
streams is several times larger.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from core import run_job
from core.bench.common import BACKBONE, Row, Scale, make_photos
from core.data.cache_disk import IMAGES_FILE
from core.data.datasets import split_indices
from core.data.imaging import center_crop
from core.data.ingest import ingest
from core.device import describe
from core.paths import PROJECT_ROOT, cache_dir
from core.runs.store import RunStore
from core.settings.config import TrainConfig
from core.train import jobs

log = logging.getLogger("flora")
ITEM = "5 memory"
LIMIT_GB = 3.0


def run(scale: Scale, dataset: Path, workdir: Path) -> list[Row]:
    held = max(10, scale.memory_images // 100)  # val and test images each: enough to evaluate, quick
    data = make_photos(
        dataset, workdir / "memory-photos", scale.memory_images, seed=2, splits={"val": held, "test": held}
    )
    job = {"dataset": str(data), "image_size": scale.memory_size, "steps": scale.memory_steps, "workdir": str(workdir)}
    ours = _run_child({**job, "mode": "engine"})
    plain = _run_child({**job, "mode": "plain"})  # after ours: the cache is built, it only loads it
    peak, cache_gb = ours["peak_rss_gb"], ours["cache_gb"]
    return [
        Row(
            "memory.peak_rss",
            ITEM,
            f"peak RSS training on {ours['images']:,} images at {scale.memory_size} px",
            "GB",
            peak,
            plain["peak_rss_gb"],
            f"plain: np.load the {cache_gb:.2f} GB cache whole, model.fit on the array (phase 1 only)",
            plain["peak_rss_gb"] / peak if peak else None,
            target=f"< {LIMIT_GB:g} GB",
            met=bool(peak < LIMIT_GB),
            notes=(
                f"fresh training processes; ours: ingest into the cache, phase 1 on images + phase 2 "
                f"fine-tuning conv5, saving, evaluating, {scale.memory_steps} steps of {ours['batch_size']} "
                f"per epoch over {ours['train']:,} train images (val {ours['val']}, test {ours['test']}), "
                f"every batch read from the {cache_gb:.2f} GB cache; state {ours['state']}"
            ),
            extra={"ours": ours, "plain": plain, "images": ours["images"], "state": ours["state"]},
        )
    ]


def _run_child(job: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(
        [sys.executable, "-m", "core.bench.memory", json.dumps(job)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the {job['mode']} training process failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(job: dict) -> dict:
    """Train once in this (fresh) process and report its peak memory."""
    from core.train.trainer import TrainingJob  # heavy: keras

    workdir = Path(job["workdir"])
    store = RunStore(workdir / "memory-models")
    config = TrainConfig(
        image_size=job["image_size"],
        weights="none",
        epochs=1,
        fine_tune_epochs=1,
        unfreeze_stages=1,
        feature_cache=False,  # stream the image cache every epoch: the path that could hold it all
        early_stopping_patience=0,
        backbone=BACKBONE,
    )
    submission = jobs.submit(store, job["dataset"], config, force=True)
    training = TrainingJob(
        store,
        submission.run_id,
        submission.index,
        config,
        cache_dir(workdir / "memory-data"),
        console=False,
        device=describe(),
        max_steps=job["steps"],
    )
    if job["mode"] == "plain":
        split = _plain_fit(training)
        state = "done"
    else:
        status = run_job.train_and_keep(training)
        split, state = status.split, status.state.value
    rows = len(submission.index.entries)
    side = config.cache_size
    return {
        "peak_rss_gb": round(peak_rss_bytes() / 1e9, 3),
        "cache_gb": round(rows * side * side * 3 / 1e9, 3),
        "images": rows,
        "state": state,
        "batch_size": config.batch_size,
        **{name: split[name] for name in ("train", "val", "test")},
    }


def peak_rss_bytes() -> int:
    """This process's peak resident memory since it started its program.

    /proc's VmHWM belongs to the process's own address space; getrusage's ru_maxrss would also
    count the parent's resident memory at the fork that started us (Linux keeps it across exec).
    """
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _plain_fit(training) -> dict:
    """The plain way: the whole decoded dataset in memory as one array, `model.fit` on it."""
    import keras
    import numpy as np

    from core.network.model import build_classifier  # heavy: keras

    config = training.config
    cache = ingest(training.index, config.cache_size, training.cache_root)
    images = np.load(cache.directory / IMAGES_FILE)  # every decoded image, in memory
    split = split_indices(cache.labels, cache.classes, cache.splits, config.val_fraction, config.test_fraction)
    x = center_crop(images[cache.rows[split.train]], config.image_size)
    y = keras.utils.to_categorical(cache.labels[split.train], len(cache.classes))
    model = build_classifier(len(cache.classes), config.image_size, "none", backbone=config.backbone)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=config.batch_size, epochs=1, steps_per_epoch=training.max_steps, verbose=0)
    return split.sizes()


def main() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s flora: %(message)s")
    with contextlib.redirect_stdout(sys.stderr):
        result = child(json.loads(sys.argv[1]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
