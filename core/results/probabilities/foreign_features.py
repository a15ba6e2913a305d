"""The foreign images' pooled features, kept per frozen backbone.

The out-of-distribution reference passes a fixed set of foreign images (noise, flat colours, drawings, crops of
photos; `foreign.py`) through the run's network. Their pooled features depend only on the backbone's weights and the
image size, so a run trained again on the same cached features (another learning rate, another head) gets them from
here and its own logits from its head alone: no pass through ResNet-50, no graph converted for it, and no image
drawn (their picture statistics are kept beside).

  data/.cache/foreign/foreign-v2-<image size>-<cache size>-<backbone weights hash>-seed<seed>.npz
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.fileio import atomic_path
from core.paths import foreign_dir

VERSION = 2  # of the file (2: with the images' statistics); foreign.py's images changing changes this


@dataclass(frozen=True)
class FrozenBackbone:
    """What lets the foreign images skip the network: the backbone's `weights_hash`, and the run's head as a
    function of pooled features -> logits."""

    key: str
    head_logits: Callable[[np.ndarray], np.ndarray]


def foreign_features_path(cache_root: str | os.PathLike, key: str, image_size: int, cache_size: int, seed: int) -> Path:
    return foreign_dir(cache_root) / f"foreign-v{VERSION}-{image_size}-{cache_size}-{key}-seed{seed}.npz"


STATS = "__stats"  # suffix of a kind's image statistics in the file


def load_foreign_features(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """{kind: ((n, D) float32 pooled features, (n, S) image statistics)} kept for these images, or None.

    The images are drawn again only when nothing is kept: drawing them is most of what a rerun's reference cost
    once their features were kept (the flowers are drawn shape by shape)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            names = [name for name in stored.files if not name.endswith(STATS)]
            found = {
                name: (np.asarray(stored[name], np.float32), np.asarray(stored[name + STATS], np.float64))
                for name in names
            }
    except (OSError, ValueError, KeyError):
        return None
    if not found or any(len(features) != len(stats) for features, stats in found.values()):
        return None
    return found


def keep_foreign_features(path: Path, found: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Write them whole or not at all (two runs ending at once each write the same values)."""
    arrays = {}
    for kind, (features, stats) in found.items():
        arrays[kind] = np.asarray(features, np.float32)
        arrays[kind + STATS] = np.asarray(stats, np.float64)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
