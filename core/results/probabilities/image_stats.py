"""How a picture looks, as a few numbers, and how far they are from a run's own photos: the check on image
statistics that catches what a network's features can miss (pure noise, a flat grey frame, a lens cap).

From the pixels the model sees (image_size square, RGB 0-255), per image:

  contrast        the standard deviation of its grey levels (0 in a flat image)
  neighbours      how alike neighbouring pixels are: the correlation of each grey pixel with the next, across and
                  down, averaged (near 1 in a photograph, near 0 in noise; 1 in a flat image)
  flat share      the share of pixels in its most common of 32 grey levels (near 1 in a flat image)
  still share     the share of neighbouring pixels whose grey levels are exactly equal (large in flat areas and in
                  blocky drawings, small in photographs and in noise)
  edges           the mean absolute grey step to the next pixel (large in noise)

`StatsCheck` keeps the median and the spread (1.4826 x the median absolute deviation, the standard deviation of a
normal sample) of each number over a run's training photos; an image's score is its largest distance from them in
those units, either way (`scores`): a flat image sits dozens of spreads from any photo's flat share, noise dozens
from any photo's neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NAMES = ("contrast", "neighbours", "flat share", "still share", "edges")
WORDS = (  # each number as a person reads it
    "contrast",
    "likeness of neighbouring pixels",
    "share of pixels in its most common grey",
    "share of neighbouring pixels exactly alike",
    "edge strength",
)
CHUNK = 256  # images at a time (a 224 px float32 batch of 256 is 150 MB)
MIN_SPREAD = (0.01, 0.005, 0.01, 0.005, 0.002)  # a floor per number: some sets of photos barely vary in one


def image_statistics(pixels: np.ndarray) -> np.ndarray:
    """(N, len(NAMES)) float32 for (N, H, W, 3) pixels in 0-255 (uint8 or float)."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 3:
        pixels = pixels[None]
    parts = [_statistics(pixels[i : i + CHUNK]) for i in range(0, len(pixels), CHUNK)]
    return np.concatenate(parts) if parts else np.zeros((0, len(NAMES)), dtype=np.float32)


def _statistics(pixels: np.ndarray) -> np.ndarray:
    rgb = np.asarray(pixels, dtype=np.float32) / 255.0
    grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (n, h, w)
    n = len(grey)
    contrast = grey.std(axis=(1, 2))
    across = _correlation(grey[:, :, 1:], grey[:, :, :-1])
    down = _correlation(grey[:, 1:], grey[:, :-1])
    levels = np.clip((grey * 31).round().astype(np.int64), 0, 31).reshape(n, -1)
    offsets = (np.arange(n) * 32)[:, None]
    counts = np.bincount((levels + offsets).ravel(), minlength=32 * n).reshape(n, 32)
    flat_share = counts.max(axis=1) / levels.shape[1]
    quantised = np.round(grey * 255.0)
    still = np.concatenate(
        [(np.diff(quantised, axis=2) == 0).reshape(n, -1), (np.diff(quantised, axis=1) == 0).reshape(n, -1)], axis=1
    ).mean(axis=1)
    edges = (np.abs(np.diff(grey, axis=2)).mean(axis=(1, 2)) + np.abs(np.diff(grey, axis=1)).mean(axis=(1, 2))) / 2
    return np.column_stack([contrast, (across + down) / 2, flat_share, still, edges]).astype(np.float32)


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per image, the correlation of `a` with `b` (same shape); 1 where either does not vary (a flat image)."""
    a = a.reshape(len(a), -1)
    b = b.reshape(len(b), -1)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    spread = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (a * b).sum(axis=1) / spread
    return np.where(spread > 1e-9, value, 1.0)


@dataclass
class StatsCheck:
    """The median and spread of each image statistic over a run's training photos."""

    median: np.ndarray  # (len(NAMES),)
    spread: np.ndarray  # (len(NAMES),)

    @classmethod
    def fit(cls, statistics: np.ndarray) -> StatsCheck:
        statistics = np.asarray(statistics, dtype=np.float64)
        median = np.median(statistics, axis=0)
        spread = 1.4826 * np.median(np.abs(statistics - median), axis=0)
        return cls(median.astype(np.float32), np.maximum(spread, MIN_SPREAD).astype(np.float32))

    def distances(self, statistics: np.ndarray) -> np.ndarray:
        """(N, len(NAMES)): each number's signed distance from the training photos' median, in spreads."""
        return (np.asarray(statistics, dtype=np.float64) - self.median) / self.spread

    def scores(self, statistics: np.ndarray) -> np.ndarray:
        """(N,): the largest distance, either way (higher: less like the run's photos)."""
        distances = np.abs(self.distances(statistics))
        return distances.max(axis=1) if len(distances) else np.zeros(0)

    def why(self, statistics: np.ndarray) -> str:
        """One image's most unusual number in words: 'its likeness of neighbouring pixels is 0.02, where the run's
        photos have about 0.93 (31 spreads below)'."""
        distances = self.distances(np.asarray(statistics)[None])[0]
        k = int(np.abs(distances).argmax())
        value = float(np.asarray(statistics)[k])
        side = "above" if distances[k] > 0 else "below"
        return (
            f"its {WORDS[k]} is {value:.2f}, where the run's photos have about {self.median[k]:.2f} "
            f"({abs(distances[k]):.0f} spreads {side})"
        )
