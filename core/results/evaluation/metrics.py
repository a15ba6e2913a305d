"""Test-split evaluation: probabilities stored once, metrics and error views derived from them.

An `Evaluation` holds every test image's class probabilities and true label; per-class metrics,
the confusion matrix, the most-confused pairs and the top losses are cheap queries on it
(plain arrays and DataFrames; plotting belongs to the pages).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from core.errors import NotFound, Unavailable
from core.fileio import atomic_path, write_json_atomic
from core.runs.files import run_files

_EPS = 1e-7


class EvaluationMissing(Unavailable, FileNotFoundError):
    def __str__(self) -> str:
        return f"no evaluation stored in {self.args[0]} (the run has not finished)"


@dataclass
class Evaluation:
    """Test-split probabilities of one run and everything derived from them."""

    probabilities: np.ndarray  # (N, C) float32
    labels: np.ndarray  # (N,) true class indices
    classes: list[str]
    paths: list[str]  # test images, relative to the dataset root
    cache_positions: np.ndarray | None = None  # rows in the image cache, when known

    def __post_init__(self) -> None:
        self.probabilities = np.asarray(self.probabilities, dtype=np.float32)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n, c = self.probabilities.shape
        if len(self.labels) != n or len(self.paths) != n:
            raise ValueError(
                f"probabilities ({n}), labels ({len(self.labels)}) and paths ({len(self.paths)}) differ in length"
            )
        if c != len(self.classes):
            raise ValueError(f"probabilities have {c} columns for {len(self.classes)} classes")

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def accuracy(self) -> float:
        return float(np.mean(self.predictions == self.labels)) if len(self.labels) else 0.0

    def top_k_accuracy(self, k: int) -> float:
        k = min(k, self.num_classes)
        top = np.argsort(-self.probabilities, axis=1)[:, :k]
        return float(np.mean(np.any(top == self.labels[:, None], axis=1))) if len(self.labels) else 0.0

    def per_class(self) -> pd.DataFrame:
        """Precision, recall, F1 and support per class (rows in class order)."""
        precision, recall, f1, support = skm.precision_recall_fscore_support(
            self.labels, self.predictions, labels=np.arange(self.num_classes), zero_division=0
        )
        return pd.DataFrame(
            {
                "class": self.classes,
                "precision": precision,
                "recall": recall,
                "f1": f1,
                "support": support.astype(int),
            }
        )

    def averages(self) -> dict[str, dict[str, float]]:
        """Macro and support-weighted averages of precision, recall and F1, over the classes with test photos.

        A class with no test photo has no recall to speak of: counted as 0 it sank the macro F1 of a dataset
        with more classes than test photos per class (1,000 classes, ~1 test photo each)."""
        out = {}
        tested = np.unique(np.asarray(self.labels, dtype=np.int64))
        for average in ("macro", "weighted"):
            p, r, f, _ = skm.precision_recall_fscore_support(
                self.labels,
                self.predictions,
                labels=tested if len(tested) else np.arange(self.num_classes),
                average=average,
                zero_division=0,
            )
            out[average] = {"precision": float(p), "recall": float(r), "f1": float(f)}
        return out

    def confusion_matrix(self, normalize: str | None = None) -> np.ndarray:
        """Rows are true classes, columns predicted. normalize="true" gives row fractions."""
        if normalize not in (None, "true"):
            raise ValueError(f"normalize must be None or 'true'. Received: normalize={normalize!r}")
        return skm.confusion_matrix(
            self.labels, self.predictions, labels=np.arange(self.num_classes), normalize=normalize
        )

    def losses(self) -> np.ndarray:
        """Cross-entropy of each test image's true class."""
        picked = self.probabilities[np.arange(len(self.labels)), self.labels]
        return -np.log(np.clip(picked, _EPS, 1.0))

    def _rows(self, mask: np.ndarray) -> pd.DataFrame:
        index = np.flatnonzero(mask)
        predicted = self.predictions[index]
        return pd.DataFrame(
            {
                "index": index,
                "path": [self.paths[i] for i in index],
                "true": [self.classes[i] for i in self.labels[index]],
                "predicted": [self.classes[i] for i in predicted],
                "p_true": self.probabilities[index, self.labels[index]],
                "p_predicted": self.probabilities[index, predicted],
                "loss": self.losses()[index],
            }
        )

    def top_losses(self, k: int = 16, wrong_only: bool = True) -> pd.DataFrame:
        """The `k` test images the model got most confidently wrong (highest loss first)."""
        mask = self.predictions != self.labels if wrong_only else np.ones(len(self.labels), dtype=bool)
        return self._rows(mask).sort_values("loss", ascending=False).head(k).reset_index(drop=True)

    def most_confused(self, min_count: int = 1) -> pd.DataFrame:
        """Off-diagonal (true, predicted) pairs with at least `min_count` images, most first."""
        matrix = self.confusion_matrix()
        np.fill_diagonal(matrix, 0)
        true_idx, pred_idx = np.nonzero(matrix >= max(1, min_count))
        counts = matrix[true_idx, pred_idx]
        support = np.maximum(matrix.sum(axis=1) + np.diag(self.confusion_matrix()), 1)
        frame = pd.DataFrame(
            {
                "true": [self.classes[i] for i in true_idx],
                "predicted": [self.classes[j] for j in pred_idx],
                "count": counts.astype(int),
                "share_of_true": counts / support[true_idx],
            }
        )
        return frame.sort_values(["count", "share_of_true"], ascending=False).reset_index(drop=True)

    def pair(self, true_class: str | int, predicted_class: str | int) -> pd.DataFrame:
        """Test images of `true_class` predicted as `predicted_class`, most confident first."""
        t = self._class_index(true_class)
        p = self._class_index(predicted_class)
        mask = (self.labels == t) & (self.predictions == p)
        return self._rows(mask).sort_values("p_predicted", ascending=False).reset_index(drop=True)

    def _class_index(self, value: str | int) -> int:
        if isinstance(value, str):
            try:
                return self.classes.index(value)
            except ValueError:
                raise NotFound(f"unknown class {value!r}") from None
        return int(value)

    def classes_by_error(self) -> list[str]:
        """Classes ordered from the lowest recall to the highest (ties by name)."""
        table = self.per_class()
        return table.sort_values(["recall", "class"]).loc[:, "class"].tolist()

    def error_counts(self) -> pd.Series:
        """Mistakes each class is involved in (as the true class or as the wrong prediction)."""
        matrix = self.confusion_matrix()
        np.fill_diagonal(matrix, 0)
        return pd.Series(matrix.sum(axis=1) + matrix.sum(axis=0), index=self.classes)

    def classes_of_top_mistakes(self, n: int) -> list[str]:
        """Up to `n` classes taken from the most frequent (true, predicted) mistakes, both sides of each pair,
        so a matrix of just these classes shows those mistakes (the classes with the most errors alone can
        have all of them outside the set); filled up with the classes with the most errors."""
        chosen: list[str] = []
        for pair in self.most_confused().itertuples():
            for name in (pair.true, pair.predicted):
                if name not in chosen and len(chosen) < n:
                    chosen.append(name)
            if len(chosen) >= n:
                break
        for name in self.classes_with_most_errors(n):
            if len(chosen) >= n:
                break
            if name not in chosen:
                chosen.append(name)
        return chosen

    def classes_with_most_errors(self, n: int) -> list[str]:
        """The `n` classes involved in the most mistakes, most first (ties by name)."""
        counts = self.error_counts()
        frame = pd.DataFrame({"class": counts.index, "errors": counts.values})
        return frame.sort_values(["errors", "class"], ascending=[False, True]).head(n)["class"].tolist()

    def summary(self) -> dict[str, Any]:
        """Plain-JSON metrics: what `python -m core evaluate --json` prints."""
        per_class = self.per_class().set_index("class")
        summary = {
            "accuracy": self.accuracy(),
            "test_images": len(self.labels),
            **self.averages(),
            "per_class": {
                name: {
                    "precision": float(row.precision),
                    "recall": float(row.recall),
                    "f1": float(row.f1),
                    "support": int(row.support),
                }
                for name, row in per_class.iterrows()
            },
            "labels": list(self.classes),
            "confusion_matrix": self.confusion_matrix().astype(int).tolist(),
        }
        if self.num_classes > 5:
            summary["top5_accuracy"] = self.top_k_accuracy(5)
        return summary

    def save(self, run_dir: str | os.PathLike) -> None:
        """Write evaluation.npz (the raw probabilities) and evaluation.json (the metrics)."""
        run_dir = Path(run_dir)
        with atomic_path(run_files(run_dir).evaluation_arrays) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(
                f,
                probabilities=self.probabilities,
                labels=self.labels,
                classes=np.array(self.classes, dtype=str),
                paths=np.array(self.paths, dtype=str),
                cache_positions=np.asarray(
                    self.cache_positions if self.cache_positions is not None else [], dtype=np.int64
                ),
            )
        write_json_atomic(run_files(run_dir).evaluation_summary, self.summary())

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> Evaluation:
        """Read a run's stored evaluation. Raises EvaluationMissing."""
        path = run_files(run_dir).evaluation_arrays
        if not path.exists():
            raise EvaluationMissing(run_dir)
        with np.load(path, allow_pickle=False) as data:
            positions = data["cache_positions"] if "cache_positions" in data.files else None
            return cls(
                probabilities=data["probabilities"],
                labels=data["labels"],
                classes=data["classes"].tolist(),
                paths=data["paths"].tolist(),
                cache_positions=positions if positions is not None and len(positions) else None,
            )


def test_photos_among(run_dir: str | os.PathLike, paths) -> int:
    """How many of `paths` (relative to the dataset) are photos of the run's test split; 0 when it has no stored
    evaluation. The Train page says how many of the label corrections a run would apply touch its test photos."""
    if not paths:
        return 0
    try:
        test = set(Evaluation.load(run_dir).paths)
    except (EvaluationMissing, OSError, ValueError):
        return 0
    return sum(1 for path in paths if path in test)
