"""Per-run analysis arrays: the validation and test splits' logits and pooled backbone features, stored once.

  models/<run_id>/analysis.npz   for "val" and "test": logits (N, C) float32, features (N, D) float16,
                                 labels, paths (relative to the dataset root), cache positions; the classes;
                                 a hash of the two splits' paths (runs compared on the same photos);
                                 a multi-label run's also its photos' 0/1 label rows (targets, (N, C) uint8), its
                                 labels -1, and its probabilities a sigmoid of the logits

Computed at the end of training (a run of an earlier version computes it once on demand), so that
calibration, the embedding map, label errors and run comparison work from these arrays with numpy
and scikit-learn and never reload the model. The logits are exact: the head's last Dense layer
(layer_names.LOGITS) is linear, and a separate float32 softmax follows it. D is the backbone's width
(2048 for ResNet-50).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import Unavailable
from core.fileio import atomic_path
from core.runs.record import ANALYSIS_FILE

SPLITS = ("val", "test")


class AnalysisMissing(Unavailable, FileNotFoundError):
    def __str__(self) -> str:
        return f"no analysis arrays in {self.args[0]} (a run from before they were stored: compute them once)"


@dataclass
class SplitArrays:
    """One split's rows: what the model said (logits) and saw (pooled features), and the truth."""

    logits: np.ndarray  # (N, C) float32
    features: np.ndarray  # (N, D) float16
    labels: np.ndarray  # (N,) int64
    paths: list[str]
    positions: np.ndarray  # rows in the image cache
    targets: np.ndarray | None = None  # (N, C) 0/1 label rows of a multi-label run (its labels are then -1)

    def __post_init__(self) -> None:
        self.logits = np.asarray(self.logits, dtype=np.float32)
        self.features = np.asarray(self.features, dtype=np.float16)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.positions = np.asarray(self.positions, dtype=np.int64)
        n = len(self.labels)
        if self.targets is not None:
            self.targets = np.asarray(self.targets, dtype=np.uint8)
            if self.targets.shape != self.logits.shape:
                raise ValueError(f"targets {self.targets.shape} and logits {self.logits.shape} differ in shape")
        if not (len(self.logits) == len(self.features) == len(self.paths) == len(self.positions) == n):
            raise ValueError(
                f"split arrays differ in length: logits {len(self.logits)}, features {len(self.features)}, "
                f"labels {n}, paths {len(self.paths)}, positions {len(self.positions)}"
            )

    @property
    def multilabel(self) -> bool:
        return self.targets is not None

    @property
    def probabilities(self) -> np.ndarray:
        """The softmax of the logits; a multi-label run's sigmoid of each."""
        return sigmoid(self.logits) if self.multilabel else softmax(self.logits)


@dataclass
class RunAnalysis:
    """The validation and test arrays of one run."""

    classes: list[str]
    val: SplitArrays
    test: SplitArrays

    @property
    def split_hash(self) -> str:
        return split_hash(self.val.paths, self.test.paths)

    def split(self, name: str) -> SplitArrays:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}. Received: split={name!r}")
        return getattr(self, name)

    def save(self, run_dir: str | os.PathLike) -> None:
        arrays = {"classes": np.array(self.classes, dtype=str), "split_hash": np.array(self.split_hash)}
        for name in SPLITS:
            part = self.split(name)
            arrays |= {
                f"{name}_logits": part.logits,
                f"{name}_features": part.features,
                f"{name}_labels": part.labels,
                f"{name}_paths": np.array(part.paths, dtype=str),
                f"{name}_positions": part.positions,
            }
            if part.targets is not None:
                arrays[f"{name}_targets"] = part.targets
        with atomic_path(Path(run_dir) / ANALYSIS_FILE) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)  # features barely compress; the file is read often

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> RunAnalysis:
        """Read a run's arrays. Raises AnalysisMissing."""
        path = Path(run_dir) / ANALYSIS_FILE
        if not path.exists():
            raise AnalysisMissing(run_dir)
        with np.load(path, allow_pickle=False) as data:
            parts = {
                name: SplitArrays(
                    data[f"{name}_logits"],
                    data[f"{name}_features"],
                    data[f"{name}_labels"],
                    data[f"{name}_paths"].tolist(),
                    data[f"{name}_positions"],
                    data[f"{name}_targets"] if f"{name}_targets" in data.files else None,
                )
                for name in SPLITS
            }
            return cls(data["classes"].tolist(), parts["val"], parts["test"])


def split_hash(val_paths: list[str], test_paths: list[str]) -> str:
    """A short hash of which photos are in the validation and test splits (order-independent)."""
    digest = hashlib.sha256()
    for name, paths in (("val", val_paths), ("test", test_paths)):
        digest.update(name.encode())
        for path in sorted(paths):
            digest.update(b"\0" + path.encode())
    return digest.hexdigest()[:16]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The logistic function of each logit, computed stably in float64, returned as float32."""
    z = np.asarray(logits, dtype=np.float64)
    return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax over the last axis of logits / temperature, computed stably in float64, returned as float32."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
