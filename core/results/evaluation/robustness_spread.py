"""How far chance moves a robustness figure: each photo's answers kept as 0/1 strings, and a paired bootstrap over
the photos for the accuracy a corruption takes away.

The accuracy lost is a difference on the same photos (clean, then corrupted), so it is resampled by photo: each
photo's clean answer minus its mean answer over the corrupted versions, the mean of that over a resample of photos,
2,000 times (seeded). On 54 photos an 8-point drop can be chance (walk 42: no interval was shown); the interval says
whether it is.
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 2000
MASS = 0.95


def encode(right: np.ndarray) -> str:
    """'0110…': one character a photo, 1 where the answer was right."""
    return "".join("1" if r else "0" for r in np.asarray(right, dtype=bool))


def decode(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8) == ord("1")


def drop_interval(clean: np.ndarray, corrupted: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """(low, high): the 95% paired-bootstrap interval of the accuracy lost, clean minus corrupted. `clean` is (n,)
    0/1 per photo, `corrupted` (n, k) 0/1 per photo and corrupted version (k severities, or all 75 passes)."""
    clean = np.asarray(clean, dtype=np.float64)
    per_photo = clean - np.asarray(corrupted, dtype=np.float64).reshape(len(clean), -1).mean(axis=1)
    if len(per_photo) == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = per_photo[rng.integers(0, len(per_photo), size=(RESAMPLES, len(per_photo)))].mean(axis=1)
    tail = (1 - MASS) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def interval_words(low: float, high: float) -> str:
    """'95% interval 2 to 14 points' and whether it includes no change."""
    said = f"95% interval {low * 100:+.0f} to {high * 100:+.0f} points"
    if low <= 0 <= high:
        return said + ", which includes no change: on this many photos the difference can be chance"
    return said
