"""A multi-label run's test evaluation: its scores stored once, every figure and error view derived from them.

`MultilabelEvaluation` holds each test photo's score for every label (the sigmoids), its true labels (0/1 rows) and
each label's threshold, tuned on validation as the run ended (core.results.probabilities.label_thresholds). From
them: mAP (macro over the labels with a test photo, and micro over every (photo, label) pair), AP per label beside
what a random scorer gets (`multilabel_bootstrap.random_ap`), precision, recall and F1 per label at its threshold,
exact-match accuracy and Hamming loss, each with a seeded bootstrap 95% interval, each label's calibration error
(`multilabel_calibration`); and, cheaply on demand, each
label's precision-recall curve, its 2x2 counts at any threshold with the photos behind each cell, its top losses, and
the multi-label confusion (for photos with a label, which labels the model adds and which it misses), in
`multilabel_views`.

Stored with the run as the single-label evaluation is (`multilabel_evaluation.npz`: the arrays;
`multilabel_evaluation.json`: `summary()`, intervals included), by `after_fit.finish_multilabel`; a run trained before
they were kept is evaluated from its analysis arrays and thresholds (`of_run`), which is what `after_fit` does too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.errors import NotFound, Unavailable
from core.fileio import atomic_path, read_json, write_json_atomic
from core.results.evaluation import multilabel_bootstrap as bootstrap
from core.results.evaluation import multilabel_calibration as calibration
from core.results.probabilities import label_thresholds
from core.runs.analysis import AnalysisMissing, RunAnalysis
from core.runs.files import run_files
from core.train.average_precision import average_precisions

VERSION = 1
NO_LABEL = "(no label)"  # the confusion's row for the photos that have none
CELLS = ("found", "added", "missed", "left out")  # true positive, false positive, false negative, true negative


class MultilabelEvaluationMissing(Unavailable, FileNotFoundError):
    def __str__(self) -> str:
        return f"no multi-label evaluation in {self.args[0]}: the run keeps no analysis arrays or thresholds"


@dataclass
class MultilabelEvaluation:
    """Test-split scores of one multi-label run, its true label rows and its thresholds."""

    probabilities: np.ndarray  # (N, C) float32 sigmoids
    targets: np.ndarray  # (N, C) 0/1
    classes: list[str]
    paths: list[str]  # test photos, relative to the dataset root
    thresholds: np.ndarray  # (C,) a photo has label j when its score is at or above thresholds[j]
    cache_positions: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.probabilities = np.asarray(self.probabilities, dtype=np.float32)
        self.targets = (np.asarray(self.targets) > 0).astype(np.uint8)
        self.thresholds = np.asarray(self.thresholds, dtype=np.float64)
        n, c = self.probabilities.shape
        if self.targets.shape != (n, c) or len(self.paths) != n:
            raise ValueError(f"scores {(n, c)}, targets {self.targets.shape} and {len(self.paths)} paths differ")
        if len(self.classes) != c or self.thresholds.shape != (c,):
            raise ValueError(f"{c} score columns for {len(self.classes)} labels and {len(self.thresholds)} thresholds")
        self._stored: dict[str, Any] | None = None

    # ------------------------------------------------------------------ the answers
    @property
    def truth(self) -> np.ndarray:
        return self.targets > 0

    @property
    def predicted(self) -> np.ndarray:
        """(N, C) bool: each label at or above its threshold, as every predictor answers."""
        return self.probabilities >= self.thresholds

    def label_index(self, label: str | int) -> int:
        if isinstance(label, str):
            try:
                return self.classes.index(label)
            except ValueError:
                raise NotFound(f"unknown label {label!r}") from None
        return int(label)

    def labels_of(self, rows: np.ndarray) -> list[list[str]]:
        return [[self.classes[j] for j in np.flatnonzero(row)] for row in rows]

    # ------------------------------------------------------------------ the figures
    def average_precisions(self) -> np.ndarray:
        """AP of each label (NaN for a label no test photo has)."""
        return average_precisions(self.targets, self.probabilities)

    def mean_average_precision(self) -> float | None:
        """Macro mAP over the labels with a test photo (scikit-learn's average="macro" on those)."""
        per_label = self.average_precisions()
        measured = per_label[~np.isnan(per_label)]
        return float(measured.mean()) if len(measured) else None

    def micro_average_precision(self) -> float | None:
        """AP of every (photo, label) pair as one ranking (scikit-learn's average="micro")."""
        if not self.truth.any():
            return None
        return float(bootstrap.micro_average_precision(self.targets, self.probabilities)[0])

    def frequencies(self) -> np.ndarray:
        """Each label's share of the test photos."""
        return self.truth.mean(axis=0) if len(self.paths) else np.zeros(len(self.classes))

    def random_aps(self) -> np.ndarray:
        """What a random scorer's AP is, label by label, on these photos (NaN without a positive)."""
        return np.atleast_1d(bootstrap.random_ap(self.truth.sum(axis=0), len(self.paths)))

    def random_map(self) -> float | None:
        """The macro mAP a random scorer gets on average: the mean of `random_aps` over the labels with a photo."""
        values = self.random_aps()
        values = values[~np.isnan(values)]
        return float(values.mean()) if len(values) else None

    def random_map_micro(self) -> float | None:
        positives = int(self.truth.sum())
        return float(bootstrap.random_ap(positives, self.truth.size)) if positives else None

    def counts(self, thresholds: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Per label at `thresholds` (default its own): photos found, added (wrongly), missed, left out (rightly)."""
        predicted = self.predicted if thresholds is None else self.probabilities >= np.asarray(thresholds)
        truth = self.truth
        return {
            "found": np.sum(truth & predicted, axis=0),
            "added": np.sum(~truth & predicted, axis=0),
            "missed": np.sum(truth & ~predicted, axis=0),
            "left out": np.sum(~truth & ~predicted, axis=0),
        }

    def counts_at(self, label: str | int, threshold: float) -> dict[str, int]:
        """One label's 2x2 counts if its threshold were `threshold`, with its precision (1 with no answer, as the
        curve starts) and recall there."""
        j = self.label_index(label)
        has, said = self.truth[:, j], self.probabilities[:, j] >= threshold
        out: dict = {cell: int(mask.sum()) for cell, mask in zip(CELLS, cells(has, said), strict=True)}
        answers, positives = out["found"] + out["added"], out["found"] + out["missed"]
        out["precision"] = out["found"] / answers if answers else 1.0
        out["recall"] = out["found"] / positives if positives else 0.0
        return out

    def precision_recall_f1(self, thresholds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per label (scikit-learn's precision_recall_fscore_support, zero_division=0)."""
        n = self.counts(thresholds)
        tp, fp, fn = (n[k].astype(np.float64) for k in ("found", "added", "missed"))
        return bootstrap.ratio(tp, tp + fp), bootstrap.ratio(tp, tp + fn), bootstrap.ratio(2 * tp, 2 * tp + fp + fn)

    def f1_macro(self, thresholds: np.ndarray | None = None) -> float | None:
        """F1 averaged over the labels with a test photo."""
        tested = self.truth.any(axis=0)
        return float(self.precision_recall_f1(thresholds)[2][tested].mean()) if tested.any() else None

    def exact_match(self) -> float:
        """Share of test photos whose whole label list is right (scikit-learn's accuracy_score)."""
        return float(np.mean(np.all(self.truth == self.predicted, axis=1))) if len(self.paths) else 0.0

    def hamming_loss(self) -> float:
        """Share of (photo, label) answers that are wrong (scikit-learn's hamming_loss)."""
        return float(np.mean(self.truth != self.predicted)) if self.truth.size else 0.0

    def intervals(self, resamples: int = bootstrap.RESAMPLES, seed: int = 0) -> bootstrap.Intervals:
        return bootstrap.bootstrap(self.targets, self.probabilities, self.predicted, resamples, seed)

    def per_label(self) -> pd.DataFrame:
        """One row per label, worst AP first (labels without a test photo last): its AP and interval beside its
        frequency and a random scorer's AP, its threshold, precision, recall and F1 there, and its 2x2 counts."""
        summary = self.summary()
        rows = []
        for name in self.classes:
            entry = summary["per_label"][name]
            rows.append(
                {
                    "label": name,
                    "ap": entry["ap"],
                    "ap_low": entry["ap_interval"][0],
                    "ap_high": entry["ap_interval"][1],
                    "random_ap": entry["random_ap"],
                    "frequency": entry["frequency"],
                    "threshold": entry["threshold"],
                    "precision": entry["precision"],
                    "recall": entry["recall"],
                    "f1": entry["f1"],
                    "positives": entry["positives"],
                    "ece": entry.get("ece"),
                    **{cell: entry[cell.replace(" ", "_")] for cell in CELLS},
                }
            )
        frame = pd.DataFrame(rows).astype({"ap": float, "ap_low": float, "ap_high": float, "random_ap": float})
        frame["_untested"] = frame["positives"] == 0
        return frame.sort_values(["_untested", "ap", "label"]).drop(columns="_untested").reset_index(drop=True)

    def summary(self) -> dict[str, Any]:
        """Plain-JSON figures (the stored ones when loaded): what `core evaluate --json` prints, less the photos."""
        if self._stored is None:
            self._stored = self._compute_summary()
        return self._stored

    def _compute_summary(self, seed: int = 0) -> dict[str, Any]:
        spread = self.intervals(seed=seed)
        ap, randoms, frequency = self.average_precisions(), self.random_aps(), self.frequencies()
        precision, recall, f1 = self.precision_recall_f1()
        counts = self.counts()
        ece = calibration.per_label(self.targets, self.probabilities)
        per_label = {}
        for j, name in enumerate(self.classes):
            per_label[name] = {
                "ap": _number(ap[j]),
                "ap_interval": _pair(spread.ap[j]),
                "frequency": float(frequency[j]),
                "random_ap": _number(randoms[j]),
                "threshold": float(self.thresholds[j]),
                "precision": float(precision[j]),
                "precision_interval": _pair(spread.precision[j]),
                "recall": float(recall[j]),
                "recall_interval": _pair(spread.recall[j]),
                "f1": float(f1[j]),
                "f1_interval": _pair(spread.f1[j]),
                "positives": int(self.truth[:, j].sum()),
                "ece": _number(ece[j]),
                **{cell.replace(" ", "_"): int(counts[cell][j]) for cell in CELLS},
            }
        return {
            "version": VERSION,
            "task": "multilabel",
            "test_images": len(self.paths),
            "labels": list(self.classes),
            "map": self.mean_average_precision(),
            "map_interval": _pair(spread.map),
            "map_micro": self.micro_average_precision(),
            "map_micro_interval": _pair(spread.map_micro),
            "random_map": self.random_map(),
            "random_map_micro": self.random_map_micro(),
            "f1_macro": self.f1_macro(),
            "f1_macro_interval": _pair(spread.f1_macro),
            "f1_macro_at_half": self.f1_macro(np.full(len(self.classes), 0.5)),
            "exact_match": self.exact_match(),
            "exact_match_interval": _pair(spread.exact_match),
            "hamming_loss": self.hamming_loss(),
            "hamming_loss_interval": _pair(spread.hamming_loss),
            "photos_without_label": int((~self.truth.any(axis=1)).sum()),
            "bootstrap": {"resamples": spread.resamples, "seed": spread.seed, "level": bootstrap.LEVEL},
            "per_label": per_label,
        }

    def photos(self) -> list[dict[str, Any]]:
        """Per test photo: its path, true labels, the labels at the thresholds, every label's score."""
        true, predicted = self.labels_of(self.truth), self.labels_of(self.predicted)
        return [
            {
                "path": path,
                "labels": true[i],
                "predicted": predicted[i],
                "scores": {
                    name: round(float(p), 6) for name, p in zip(self.classes, self.probabilities[i], strict=True)
                },
            }
            for i, path in enumerate(self.paths)
        ]

    # ------------------------------------------------------------------ the files
    def save(self, run_dir: str | os.PathLike) -> None:
        """Write multilabel_evaluation.npz (the arrays) and multilabel_evaluation.json (`summary()`)."""
        files = run_files(run_dir)
        with atomic_path(files.multilabel_evaluation_arrays) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(
                f,
                probabilities=self.probabilities,
                targets=self.targets,
                classes=np.array(self.classes, dtype=str),
                paths=np.array(self.paths, dtype=str),
                thresholds=self.thresholds,
                cache_positions=np.asarray([] if self.cache_positions is None else self.cache_positions, np.int64),
            )
        write_json_atomic(files.multilabel_evaluation_summary, self.summary())

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> MultilabelEvaluation:
        """Read a run's stored evaluation, figures included. Raises MultilabelEvaluationMissing."""
        files = run_files(run_dir)
        if not files.multilabel_evaluation_arrays.exists():
            raise MultilabelEvaluationMissing(run_dir)
        with np.load(files.multilabel_evaluation_arrays, allow_pickle=False) as data:
            positions = data["cache_positions"]
            found = cls(
                data["probabilities"],
                data["targets"],
                data["classes"].tolist(),
                data["paths"].tolist(),
                data["thresholds"],
                positions if len(positions) else None,
            )
        found._stored = stored_summary(run_dir)
        return found

    @classmethod
    def of_run(cls, run_dir: str | os.PathLike) -> MultilabelEvaluation:
        """The stored evaluation, or one made now from the run's analysis arrays and thresholds (not written).

        Raises:
            MultilabelEvaluationMissing: neither is there.
        """
        if run_files(run_dir).multilabel_evaluation_arrays.exists():
            return cls.load(run_dir)
        try:
            analysis = RunAnalysis.load(run_dir)
        except AnalysisMissing:
            raise MultilabelEvaluationMissing(run_dir) from None
        if analysis.test.targets is None or label_thresholds.stored(run_dir) is None:
            raise MultilabelEvaluationMissing(run_dir)
        return cls.from_analysis(analysis, label_thresholds.load(run_dir))

    @classmethod
    def from_analysis(cls, analysis: RunAnalysis, thresholds: dict[str, float]) -> MultilabelEvaluation:
        """The test split of a multi-label run's arrays, read at `thresholds` (by label; 0.5 where one lacks)."""
        test = analysis.test
        cut = [thresholds.get(name, label_thresholds.UNTUNED) for name in analysis.classes]
        return cls(test.probabilities, test.targets, list(analysis.classes), list(test.paths), cut, test.positions)


def stored_summary(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run's stored figures (`summary()` as saved), without its arrays; None when it keeps none of this version."""
    stored = read_json(run_files(run_dir).multilabel_evaluation_summary)
    return stored if isinstance(stored, dict) and stored.get("version") == VERSION else None


def cells(has: np.ndarray, said: np.ndarray) -> tuple[np.ndarray, ...]:
    """The masks of CELLS, in order: found, added, missed, left out."""
    return has & said, ~has & said, has & ~said, ~has & ~said


def _number(value: float) -> float | None:
    return None if value is None or np.isnan(value) else float(value)


def _pair(values) -> list[float | None]:
    return [_number(float(v)) for v in values]
