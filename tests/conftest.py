"""Shared fixtures: tiny generated datasets, a subset of the real flower photos, a trained run."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Plumbing tests build the tiny test backbone (core.backbones), ResNet-50's contract at a fraction of its
# cost; the processes they start inherit it. Tests about the network itself ask for the `resnet50` fixture.
os.environ["FLORA_TEST_BACKBONE"] = "tiny"

import numpy as np
import pytest
from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# ../shared/data beside the project, unless FLORA_SHARED_DATA says where it is
SHARED_DATA = Path(os.environ.get("FLORA_SHARED_DATA") or PROJECT_ROOT.parent / "shared" / "data")
FLOWERS = SHARED_DATA / "flowers5-128"
OXFORD = SHARED_DATA / "oxford102"

# Distinct hues so that even a random-weights backbone separates the classes.
COLORS = [(220, 40, 40), (40, 190, 40), (40, 60, 220), (230, 220, 40), (200, 40, 200), (40, 210, 210)]


def make_image_dataset(
    root: Path,
    counts: dict[str, int],
    size: tuple[int, int] = (48, 40),
    seed: int = 0,
    suffix: str = ".png",
    colors: list[tuple[int, int, int]] | None = None,
) -> Path:
    """Write `counts[class]` small images per class folder: a class colour, a shape and noise."""
    rng = np.random.default_rng(seed)
    colors = colors or COLORS
    root.mkdir(parents=True, exist_ok=True)
    for k, (name, count) in enumerate(counts.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            write_class_image(folder / f"img_{i:03d}{suffix}", colors[k % len(colors)], size, rng)
    return root


def write_class_image(path: Path, color, size, rng) -> None:
    width, height = size
    base = np.empty((height, width, 3), dtype=np.float32)
    base[:] = color
    base += rng.normal(0, 18, size=base.shape)
    # a darker square somewhere, so images of a class are not all alike
    x, y = rng.integers(0, max(1, width // 2)), rng.integers(0, max(1, height // 2))
    base[y : y + height // 3, x : x + width // 3] *= 0.5
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB").save(path)


def link_subset(source: Path, target: Path, per_class: int) -> Path:
    """A dataset of symlinks to the first `per_class` photos of each class (the source stays read-only)."""
    for class_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        out = target / class_dir.name
        out.mkdir(parents=True, exist_ok=True)
        for photo in sorted(class_dir.iterdir())[:per_class]:
            (out / photo.name).symlink_to(photo)
    return target


def require_flowers() -> Path:
    if not FLOWERS.is_dir():
        pytest.skip(f"the shared flower photos are not at {FLOWERS}")
    return FLOWERS


@pytest.fixture
def resnet50(monkeypatch) -> str:
    """The real ResNet-50 for this test (and the processes it starts): where the network is the subject."""
    from core.backbones import RESNET50, TEST_BACKBONE_ENV

    monkeypatch.delenv(TEST_BACKBONE_ENV, raising=False)
    return RESNET50


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    """3 classes x 12 generated images."""
    return make_image_dataset(tmp_path / "tiny", {"red": 12, "green": 12, "blue": 12})


@pytest.fixture(scope="session")
def flowers_subset(tmp_path_factory) -> Path:
    """40 real photos per class of the 5 flower classes (symlinks into ../shared/data)."""
    source = require_flowers()
    return link_subset(source, tmp_path_factory.mktemp("flowers") / "flowers-subset", per_class=40)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One finished run on generated images at 32 px (weights none), shared by read-only tests.

    Returns a dict with store, run_id, dataset, data_root.
    """
    from core import jobs
    from core.config import TrainConfig
    from core.runs import RunStore

    base = tmp_path_factory.mktemp("trained")
    dataset = make_image_dataset(base / "colours", {"red": 14, "green": 14, "blue": 14, "yellow": 14}, seed=3)
    store = RunStore(base / "models")
    config = TrainConfig(image_size=32, weights="none", epochs=4, batch_size=16, head=(32,), seed=1)
    submission = jobs.submit(store, dataset, config)
    jobs.execute(store, submission, base / "data", console=False, ingest_workers=1)
    return {
        "store": store,
        "run_id": submission.run_id,
        "dataset": dataset,
        "data_root": base / "data",
        "config": config,
    }
