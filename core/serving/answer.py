"""One photo's answer from a served run (`Answer`): a single-label run's top-k, set, flags and whether it is held
back; a multi-label run's labels (each at or above its threshold, core.results.probabilities.label_thresholds), "none
of these" when none is, and every label's score (`label_answers`, `labels_dict`); and what a multi-label run does not
answer yet, in words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.data.multilabel import NO_LABEL
from core.results.probabilities import conformal, label_thresholds, promise

MULTILABEL_NO_SETS = "prediction sets are for single-label runs; each label's threshold (tuned on validation) decides"
MULTILABEL_NO_MAX_ERROR = (
    "answering only when sure (max_error) is for single-label runs; each label's threshold (tuned on validation) "
    "decides"
)
MULTILABEL_NO_REFERENCE = "a multi-label run has no 'looks like none of the labels' check yet"
MULTILABEL_NOT_YET = (
    "prediction sets, answering only when sure (max_error), the out-of-distribution check, the prediction log and "
    "feedback are for single-label runs (not yet for multi-label ones)"
)


@dataclass
class Answer:
    """The model's answer for one input."""

    probabilities: np.ndarray  # (C,) calibrated where the run has a temperature
    label: str
    top: list[tuple[str, float]]
    max_probability: float
    entropy: float
    ood_score: float | None = None
    ood_flag: bool | None = None
    ood_why: str | None = None  # where the picture's statistics flag it: its most unusual one, in words
    ood_false_alarms: float | None = None  # the share of the run's own test photos the check flags
    ood_let_through: str | None = None  # the share of other photos the check let through when tested, in words
    projection: np.ndarray | None = field(default=None, repr=False)  # drift coordinates for the log
    raw_probabilities: np.ndarray | None = field(default=None, repr=False)  # (C,) the softmax before calibration
    prediction_set: list[str] | None = None  # the classes of its conformal set, most probable first
    set_level: float | None = None  # the share of such sets that hold the right class
    views: int = 1  # > 1: the probabilities average test-time augmentation's views
    abstained: bool | None = None  # held back (core.serving.holding_back); None: nothing could hold it back
    abstain_reason: str | None = None
    max_error: float | None = None  # the level asked for ("answer only when sure")
    guarantee: str | None = None  # what the level promises and, where halvings often found none, how fragile that is
    labels: list[str] | None = None  # a multi-label run's: each label at or above its threshold ([]: none of these)
    thresholds: dict[str, float] | None = field(default=None, repr=False)  # a multi-label run's, by label

    @property
    def multilabel(self) -> bool:
        return self.labels is not None

    @property
    def found(self) -> list[dict[str, Any]]:
        """A multi-label answer's labels with their probability and threshold, the most probable first."""
        if self.labels is None or self.thresholds is None:
            return []
        return label_thresholds.found_rows(self.labels, self.scores, self.thresholds)

    @property
    def scores(self) -> dict[str, float]:
        """A multi-label answer's probability of every label, by name, in the run's order ({}: single-label)."""
        if self.thresholds is None:
            return {}
        return {name: float(p) for name, p in zip(self.thresholds, self.probabilities, strict=True)}

    @property
    def set_trusted(self) -> bool | None:
        """Whether the prediction set's promise reaches this photo: not when it looks like none of the classes
        (None: no set)."""
        return None if self.prediction_set is None else not self.ood_flag

    def to_dict(self, ood_method: str | None = None) -> dict[str, Any]:
        if self.multilabel:
            return self.labels_dict()
        out = {
            "label": self.label,
            "probability": round(self.max_probability, 6),
            "top": [{"label": label, "probability": round(p, 6)} for label, p in self.top],
            "entropy": round(self.entropy, 6),
        }
        if self.prediction_set is not None:
            out["prediction_set"] = {
                "level": self.set_level,
                "classes": self.prediction_set,
                "trusted": self.set_trusted,
            }
            if not self.set_trusted:
                out["prediction_set"]["note"] = conformal.FOREIGN_SET_NOTE
            else:
                out["prediction_set"]["note"] = promise.unflagged_set_note(self.ood_let_through)
        if self.views > 1:
            out["views"] = self.views
        if self.abstained is not None:
            out["abstained"] = self.abstained
            if self.abstain_reason:
                out["reason"] = self.abstain_reason
            if self.max_error is not None:
                out["max_error"] = self.max_error
            if self.guarantee:
                out["guarantee"] = self.guarantee
        if self.ood_score is not None:
            out["out_of_distribution"] = {
                "flag": bool(self.ood_flag),
                "score": round(float(self.ood_score), 4),
                "method": ood_method,
            }
            if self.ood_why:
                out["out_of_distribution"]["why"] = self.ood_why
            if self.ood_false_alarms is not None:
                out["out_of_distribution"]["false_alarms"] = round(self.ood_false_alarms, 4)
        return out

    def labels_dict(self) -> dict[str, Any]:
        """A multi-label answer as every predictor gives it: `labels` (at or above their thresholds, in the run's
        order; [] is "none of these", said by `none_of_these`), `found` (those with probability and threshold, the
        most probable first) and `scores` (every label's probability)."""
        return {
            "labels": list(self.labels or []),
            "none_of_these": not self.labels,
            "found": self.found,
            "scores": {name: label_thresholds.figure(p) for name, p in self.scores.items()},
        }


def label_answers(
    probabilities: np.ndarray, classes: list[str], thresholds: dict[str, float], top_k: int = 3
) -> list[Answer]:
    """A multi-label run's answers for (N, labels) sigmoids: each photo's labels at or above their `thresholds`
    (every label's, in `classes` order), "none of these" when none is, its top-k scores."""
    top_k = max(1, min(int(top_k), len(classes)))
    found = label_thresholds.present(probabilities, classes, thresholds)
    out = []
    for row, labels in zip(probabilities, found, strict=True):
        order = np.argsort(-row)[:top_k]
        top = [(classes[j], float(row[j])) for j in order]
        best = max(labels, key=lambda name: row[classes.index(name)]) if labels else NO_LABEL
        out.append(
            Answer(
                probabilities=row,
                label=best,
                top=top,
                max_probability=float(row[order[0]]),
                entropy=float("nan"),  # a softmax's measure: the sigmoids are not one distribution
                raw_probabilities=row,
                labels=labels,
                thresholds=thresholds,
            )
        )
    return out
