"""The foreign images' pooled features, kept per frozen backbone.

The out-of-distribution reference passes a fixed set of foreign images (noise, flat colours, drawings, crops of
photos; `foreign.py`) through the run's network. Their pooled features depend only on the backbone's weights and the
image size, so a run trained again on the same cached features (another learning rate, another head) gets them from
here and its own logits from its head alone: no pass through ResNet-50 and no graph converted for it.

  data/.cache/features/foreign-v1-<image size>-<cache size>-<backbone weights hash>-seed<seed>.npz
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.fileio import atomic_path
from core.paths import features_dir

VERSION = 1  # of the file; foreign.py's images changing changes this


@dataclass(frozen=True)
class FrozenBackbone:
    """What lets the foreign images skip the network: the backbone's `weights_hash`, and the run's head as a
    function of pooled features -> logits."""

    key: str
    head_logits: Callable[[np.ndarray], np.ndarray]


def foreign_features_path(cache_root: str | os.PathLike, key: str, image_size: int, cache_size: int, seed: int) -> Path:
    return features_dir(cache_root) / f"foreign-v{VERSION}-{image_size}-{cache_size}-{key}-seed{seed}.npz"


def load_foreign_features(path: Path, kinds: dict[str, int]) -> dict[str, np.ndarray] | None:
    """{kind: (n, D) float32} when the file holds every kind with its number of images; else None."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            found = {kind: np.asarray(stored[kind], np.float32) for kind in kinds if kind in stored.files}
    except (OSError, ValueError, KeyError):
        return None
    if set(found) != set(kinds) or any(len(found[kind]) != n for kind, n in kinds.items()):
        return None
    return found


def keep_foreign_features(path: Path, features: dict[str, np.ndarray]) -> None:
    """Write them whole or not at all (two runs ending at once each write the same values)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{kind: np.asarray(value, np.float32) for kind, value in features.items()})
