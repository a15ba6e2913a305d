"""A multi-label run's threshold per label: a photo has label j when its probability of j is at or above j's threshold.

Tuned on the validation photos only, never the test ones, as the run ends (core.results.after_fit): each label's
threshold is set at the validation score with the best F1 (the highest of tied ones), or, when the run asks for a
precision (`TrainConfig.threshold_precision`), at the lowest score at which the label's validation precision reaches
it (the most photos found at that precision); halfway down to the next lower validation score, which gives the same
validation answers. A label no validation photo has cannot be tuned: it keeps 0.5 and is named; a label
that never reaches the precision asked for keeps its best-F1 threshold and is named too.

Stored in the run folder (`label_thresholds.json`, through `run_files`); `core predict`, the Predict page, the server
and the exports' `preprocessing.json` read it (`load`), so every predictor gives the same label lists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.fileio import read_json, write_json_atomic
from core.runs.files import run_files

VERSION = 1
UNTUNED = 0.5  # a label without validation positives: the sigmoid's middle
BEST_F1, PRECISION = "best_f1", "precision"


@dataclass
class LabelThresholds:
    """The thresholds of every label and how each was had, on `photos` validation photos."""

    labels: list[str]
    thresholds: list[float]
    rule: str  # BEST_F1 or PRECISION
    precision: float | None  # the precision asked for (PRECISION)
    photos: int
    per_label: dict[str, dict[str, Any]] = field(default_factory=dict)  # threshold, precision, recall, f1, positives
    untuned: list[str] = field(default_factory=list)  # no validation positive: kept at 0.5
    unreached: list[str] = field(default_factory=list)  # never reached the precision asked for: best F1 kept

    def by_label(self) -> dict[str, float]:
        return dict(zip(self.labels, self.thresholds, strict=True))

    def notes(self) -> list[str]:
        """What a reader should know, in words: the labels that could not be tuned as asked."""
        out = []
        if self.untuned:
            out.append(
                f"{len(self.untuned)} label(s) with no validation photo keep the threshold {UNTUNED}: "
                + ", ".join(self.untuned)
            )
        if self.unreached:
            out.append(
                f"{len(self.unreached)} label(s) never reach precision {self.precision:g} on validation and keep their "
                "best-F1 threshold: " + ", ".join(self.unreached)
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "split": "val",
            "rule": self.rule,
            "precision": self.precision,
            "photos": self.photos,
            "thresholds": self.by_label(),
            "per_label": self.per_label,
            "untuned": self.untuned,
            "unreached": self.unreached,
        }


def _curve(truth: np.ndarray, scores: np.ndarray):
    """Each distinct score (highest first) as a threshold: (thresholds, true positives, answers) at it."""
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], truth[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(ranked) != 0), len(ranked) - 1]
    return ranked[last_of_tie], np.cumsum(hits)[last_of_tie], last_of_tie + 1


def fit(
    probabilities: np.ndarray, targets: np.ndarray, labels: list[str], precision: float | None = None
) -> LabelThresholds:
    """Each label's threshold from validation `probabilities` (N, C) and 0/1 `targets` (N, C).

    Args:
        precision: None for the best F1; else the lowest threshold whose validation precision is at least this.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    truth_all = np.asarray(targets) > 0
    if probabilities.shape != truth_all.shape or probabilities.shape[1] != len(labels):
        raise ValueError(
            f"probabilities {probabilities.shape}, targets {truth_all.shape} and {len(labels)} labels do not agree"
        )
    result = LabelThresholds(
        list(labels), [], PRECISION if precision is not None else BEST_F1, precision, len(probabilities)
    )
    for j, name in enumerate(labels):
        truth, scores = truth_all[:, j], probabilities[:, j]
        positives = int(truth.sum())
        if positives == 0:
            result.thresholds.append(UNTUNED)
            result.untuned.append(name)
            result.per_label[name] = {"threshold": UNTUNED, "positives": 0, "tuned": False}
            continue
        thresholds, true_pos, answers = _curve(truth, scores)
        precisions = true_pos / answers
        f1 = 2 * true_pos / (answers + positives)
        chosen = int(np.argmax(f1))  # the first best: the highest threshold among ties
        if precision is not None:
            reached = np.flatnonzero(precisions >= precision - 1e-12)
            if len(reached):
                chosen = int(reached[-1])  # the lowest threshold (thresholds fall along the curve)
            else:
                result.unreached.append(name)
        # halfway down to the next lower validation score: the same validation answers, and a new photo scored like
        # the chosen one (a float32 sigmoid a hair below this float64 one) is not cut on a rounding
        below = thresholds[chosen + 1] if chosen + 1 < len(thresholds) else thresholds[chosen]
        threshold = float((thresholds[chosen] + below) / 2)
        result.thresholds.append(threshold)
        result.per_label[name] = {
            "threshold": threshold,
            "positives": positives,
            "precision": float(precisions[chosen]),
            "recall": float(true_pos[chosen] / positives),
            "f1": float(f1[chosen]),
            "tuned": True,
        }
    return result


def save(thresholds: LabelThresholds, run_dir: str | os.PathLike) -> None:
    write_json_atomic(run_files(run_dir).label_thresholds, thresholds.to_dict())


def stored(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run's label_thresholds.json as written (None: a single-label run, or one from before they were kept)."""
    data = read_json(run_files(run_dir).label_thresholds)
    return data if isinstance(data, dict) and data.get("version") == VERSION else None


def load(run_dir: str | os.PathLike) -> dict[str, float]:
    """The run's threshold by label name ({} when it keeps none)."""
    data = stored(run_dir) or {}
    found = data.get("thresholds")
    if not isinstance(found, dict):
        return {}
    return {str(k): float(v) for k, v in found.items() if isinstance(v, int | float) and 0 <= v <= 1}


def figure(value: float) -> float:
    """A score or threshold as every predictor writes it: six significant digits, so a tuned 1.02e-07 stays 1.02e-07
    (six decimals made it 0.0 in the server's JSON: walk 55) and 0.123456789 is 0.123457."""
    return float(f"{float(value):.6g}")


def found_rows(labels: list[str], scores: dict[str, float], thresholds: dict[str, float]) -> list[dict[str, float]]:
    """A multi-label answer's `found`: its labels with their probability and threshold, the most probable first (the
    same rows from every predictor: the server, `core predict`, the Python Predictor)."""
    rows = [
        {"label": name, "probability": figure(scores[name]), "threshold": figure(thresholds.get(name, UNTUNED))}
        for name in labels
    ]
    return sorted(rows, key=lambda row: -row["probability"])


def present(probabilities: np.ndarray, labels: list[str], thresholds: dict[str, float]) -> list[list[str]]:
    """For each row of `probabilities` (N, C), the labels at or above their threshold (UNTUNED where none is kept)."""
    probabilities = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    cut = np.array([thresholds.get(name, UNTUNED) for name in labels], dtype=np.float64)
    above = probabilities >= cut
    return [[labels[j] for j in np.flatnonzero(row)] for row in above]
