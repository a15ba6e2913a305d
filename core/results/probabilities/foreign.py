"""Images from outside any flower dataset's domain, made or found on this machine, for measuring
how well an out-of-distribution score flags what a model was never trained on.

Four kinds: `noise` (uniform and Gaussian pixel noise, smooth colour blobs), `flat` (one colour, some with a
faint grain: a blank wall, a lens cap), `drawings` (Flora's offline demo flowers: a different domain from photos),
`photos` (crops of the real photograph scikit-learn ships, a temple in China: no flowers). Another `seed` draws
another set of each kind (the crops of the one photograph differ, the photograph does not).
"""

from __future__ import annotations

import functools

import numpy as np

from core.data.imaging import ImageError, pixels_for_model
from core.importers.demo import DEMO_CLASSES, draw_flower

KINDS = ("noise", "flat", "drawings", "photos")


def foreign_images(image_size: int, cache_size: int, per_kind: int = 24, seed: int = 0) -> dict[str, np.ndarray]:
    """{kind: (n, image_size, image_size, 3) uint8}, prepared as prediction prepares a photo (read-only arrays).

    Drawn once per process for each size and seed: drawing the flowers shape by shape is most of their cost, and
    every run's reference (and every test that trains one) asks for the same ones."""
    return dict(_drawn(image_size, cache_size, per_kind, seed))


@functools.lru_cache(maxsize=4)  # two seeds of two sizes: at 224 px about 14 MB each
def _drawn(image_size: int, cache_size: int, per_kind: int, seed: int) -> tuple[tuple[str, np.ndarray], ...]:
    rng = np.random.default_rng(seed)
    out = {
        "noise": _noise(rng, per_kind, cache_size),
        "flat": flat_images(rng, per_kind, cache_size),
        "drawings": _drawings(rng, per_kind, cache_size),
    }
    photos = _photo_crops(rng, per_kind, cache_size)
    if photos is not None:
        out["photos"] = photos
    drawn = []
    for kind, images in out.items():
        stacked = np.stack([pixels_for_model(p, image_size, cache_size) for p in images])
        stacked.flags.writeable = False  # shared by every caller in this process
        drawn.append((kind, stacked))
    return tuple(drawn)


def _noise(rng: np.random.Generator, n: int, side: int) -> list[np.ndarray]:
    images = []
    for i in range(n):
        if i % 3 == 0:
            image = rng.integers(0, 256, size=(side, side, 3))
        elif i % 3 == 1:
            image = rng.normal(rng.uniform(60, 200), rng.uniform(20, 60), size=(side, side, 3))
        else:  # smooth colour blobs: low-frequency noise, upsampled
            small = rng.uniform(0, 255, size=(4, 4, 3))
            image = np.kron(small, np.ones((side // 4 + 1, side // 4 + 1, 1)))[:side, :side]
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return images


def flat_images(rng: np.random.Generator, n: int, side: int) -> list[np.ndarray]:
    """One colour each; every third with a faint grain (a standard deviation of 2 grey levels)."""
    images = []
    for i in range(n):
        image = np.ones((side, side, 3)) * rng.uniform(0, 255, size=3)
        if i % 3 == 2:
            image += rng.normal(0, 2, size=image.shape)
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return images


def _drawings(rng: np.random.Generator, n: int, side: int) -> list[np.ndarray]:

    kinds = list(DEMO_CLASSES.values())
    return [draw_flower(rng, side, *kinds[i % len(kinds)]) for i in range(n)]


def _photo_crops(rng: np.random.Generator, n: int, side: int) -> list[np.ndarray] | None:
    try:
        from sklearn.datasets import load_sample_image

        photo = load_sample_image("china.jpg")  # 427 x 640, shipped with scikit-learn
    except (ImportError, OSError, ImageError):
        return None
    height, width = photo.shape[:2]
    crops = []
    for _ in range(n):
        crop = int(rng.integers(min(height, width) // 4, min(height, width)))
        top, left = int(rng.integers(0, height - crop + 1)), int(rng.integers(0, width - crop + 1))
        crops.append(np.ascontiguousarray(photo[top : top + crop, left : left + crop]))
    return crops
