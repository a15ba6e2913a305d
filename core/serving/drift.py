"""What the Monitor page shows, computed from the prediction log against a run's reference:
traffic and latency, the predicted-class mix (chi-square against the training mix), confidence drift
(KS against the validation baseline), input drift on the pooled features (a classifier telling
validation from recent inputs in the reference's PCA space: AUC), the out-of-distribution rate, and
accuracy on feedback. Each test says when it crosses its threshold and what that means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

P_VALUE = 0.05  # chi-square and KS: drift when p < 0.05 (Evidently's default for small references)
KS_DISTANCE = 0.1  # with a large reference (over 1,000 photos) a p-value flags tiny shifts: use the distance
DOMAIN_AUC = 0.55  # a classifier telling recent inputs from validation ones better than this: drift
OOD_RATE = 0.15  # the threshold passes 95 % of validation photos; 3x the expected 5 % flagged is an alarm
MIN_ROWS = 30  # fewer recent predictions say too little for a test
FEW_INPUTS = 3  # a window is dominated by repeats when its FEW_INPUTS most-sent inputs make up ...
REPEATED_SHARE = 0.5  # ... at least this share of its predictions: its alarms are about that sender


@dataclass
class Check:
    name: str
    value: float | None
    threshold: float
    alarm: bool
    meaning: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class MonitorReport:
    rows: int
    traffic: pd.DataFrame  # time bucket -> requests
    latency: dict[str, float]
    class_mix: pd.DataFrame  # class, predicted share, training share
    confidence: pd.DataFrame  # time bucket -> mean top probability
    checks: list[Check] = field(default_factory=list)
    feedback: dict[str, Any] = field(default_factory=dict)
    repeats: Repeats | None = None  # a window dominated by a few inputs sent again and again, when it is

    @property
    def alarms(self) -> list[Check]:
        return [c for c in self.checks if c.alarm]


@dataclass
class Repeats:
    """A window whose predictions are mostly a few inputs sent again and again (one photo sent 200 times raised
    three drift alarms: they described that sender, not a change in what people send)."""

    rows: int  # predictions in the window with an input hash
    distinct: int  # distinct inputs among them
    top: list[tuple[str, str | None, int]]  # (sha256, a name it was sent as, times) of the most-sent inputs
    share: float  # of the predictions that are the FEW_INPUTS most-sent inputs
    distinct_alarms: list[str] | None  # the tests that still alarm on each distinct input once; None: too few

    @property
    def text(self) -> str:
        times = ", ".join(f"{name or sha[:12]} ×{n}" for sha, name, n in self.top)
        if self.distinct_alarms is None:
            alike = f"too few distinct inputs (under {MIN_ROWS}) to test them on their own"
        elif self.distinct_alarms:
            alike = f"counting each distinct input once, {', '.join(self.distinct_alarms)} still alarm"
        else:
            alike = "counting each distinct input once, no test alarms"
        return (
            f"{self.share:.0%} of the {self.rows} predictions in this period are {len(self.top)} input(s) sent again "
            f"and again ({times}; {self.distinct} distinct inputs in all). The tests below then describe that "
            f"sender more than a change in the photos people send: {alike}."
        )


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    data = pd.DataFrame(rows)
    if len(data):
        data["when"] = pd.to_datetime(data["time"], unit="s")
    return data


def report(rows: list[dict[str, Any]], classes: list[str], reference=None, bucket: str = "1min") -> MonitorReport:
    """The Monitor page's figures for one run's log rows (oldest first; with features for input drift)."""
    data = frame(rows)
    if not len(data):
        empty = pd.DataFrame()
        return MonitorReport(0, empty, {}, empty, empty)
    traffic = data.set_index("when").resample(bucket).size().rename("requests").to_frame()
    latency = {
        "p50": float(np.nanpercentile(data["latency_ms"], 50)),
        "p95": float(np.nanpercentile(data["latency_ms"], 95)),
    }
    confidence = data.set_index("when")["max_probability"].resample(bucket).mean().rename("confidence").to_frame()
    observed = data["label"].value_counts().reindex(classes, fill_value=0)
    mix = pd.DataFrame({"class": classes, "predicted": observed.to_numpy() / max(1, observed.sum())})
    checks: list[Check] = []
    if reference is not None:
        train = np.asarray(reference.train_counts, dtype=float)
        mix["training"] = train / max(1.0, train.sum())
        checks.append(_class_mix(observed.to_numpy(), train))
        checks.append(_confidence(data["max_probability"].dropna().to_numpy(), reference.val_confidence))
        features = [f for f in data.get("features", pd.Series(dtype=object)) if f is not None]
        checks.append(_input_drift(np.array(features) if features else np.zeros((0, 1)), reference.val_projection))
    checks.append(_ood_rate(data))
    found = MonitorReport(len(data), traffic, latency, mix, confidence, checks, _feedback(data))
    found.repeats = _repeats(data, rows, classes, reference)
    return found


def _repeats(data: pd.DataFrame, rows: list[dict[str, Any]], classes: list[str], reference) -> Repeats | None:
    """A Repeats when a few inputs make up most of the window (None otherwise, or without input hashes)."""
    if "image_sha256" not in data:
        return None
    hashes = data["image_sha256"].dropna()
    if len(hashes) < MIN_ROWS:
        return None
    counts = hashes.value_counts()
    top = counts.head(FEW_INPUTS)
    share = float(top.sum() / len(hashes))
    if share < REPEATED_SHARE or len(counts) == len(hashes):
        return None
    names = data.dropna(subset=["image_sha256"]).groupby("image_sha256")["name"].first() if "name" in data else {}
    first: dict[str, dict[str, Any]] = {}
    for row in rows:  # each input once (its first prediction), as a window of varied traffic would have it
        if row.get("image_sha256") is not None:
            first.setdefault(row["image_sha256"], row)
    distinct_rows = list(first.values())
    once = report(distinct_rows, classes, reference) if len(distinct_rows) >= MIN_ROWS else None
    return Repeats(
        rows=len(hashes),
        distinct=len(counts),
        top=[(sha, names.get(sha) if len(names) else None, int(n)) for sha, n in top.items()],
        share=share,
        distinct_alarms=[c.name for c in once.alarms] if once is not None else None,
    )


def _class_mix(observed: np.ndarray, train: np.ndarray) -> Check:
    meaning = (
        "The model predicts the classes in other proportions than it saw in training: the photos sent to it "
        "differ, or one class is being over-predicted."
    )
    present = train > 0
    if observed.sum() < MIN_ROWS or present.sum() < 2:
        return Check("class mix (chi-square p)", None, P_VALUE, False, meaning, f"needs {MIN_ROWS}+ predictions")
    expected = train[present] / train[present].sum() * observed[present].sum()
    p = float(stats.chisquare(observed[present], expected).pvalue)
    return Check("class mix (chi-square p)", p, P_VALUE, p < P_VALUE, meaning, "alarm when p < 0.05")


def _confidence(recent: np.ndarray, baseline: np.ndarray) -> Check:
    meaning = (
        "The model is more or less sure of itself than on the validation photos: inputs have changed "
        "(new lighting, camera, subjects) or the model meets photos unlike its training ones."
    )
    if len(recent) < MIN_ROWS or len(baseline) < MIN_ROWS:
        return Check("confidence drift (KS)", None, P_VALUE, False, meaning, f"needs {MIN_ROWS}+ predictions")
    result = stats.ks_2samp(recent, baseline)
    if len(baseline) > 1000:  # a large reference: judge by the distance
        return Check(
            "confidence drift (KS distance)",
            float(result.statistic),
            KS_DISTANCE,
            result.statistic > KS_DISTANCE,
            meaning,
        )
    p = float(result.pvalue)
    return Check("confidence drift (KS p)", p, P_VALUE, p < P_VALUE, meaning, f"KS distance {result.statistic:.3f}")


def _input_drift(recent: np.ndarray, baseline: np.ndarray) -> Check:
    meaning = (
        "A classifier can tell recent inputs from the validation photos by their ResNet-50 features: "
        "the photos coming in are not like the ones the model was checked on."
    )
    if len(recent) < MIN_ROWS or recent.ndim != 2 or recent.shape[1] != baseline.shape[1]:
        return Check(
            "input drift (domain classifier AUC)",
            None,
            DOMAIN_AUC,
            False,
            meaning,
            f"needs {MIN_ROWS}+ logged features",
        )
    auc = domain_auc(baseline, recent)
    return Check("input drift (domain classifier AUC)", auc, DOMAIN_AUC, auc > DOMAIN_AUC, meaning, "alarm above 0.55")


def domain_auc(reference: np.ndarray, recent: np.ndarray, seed: int = 0) -> float:
    """Cross-validated ROC AUC of a logistic regression telling `recent` rows from `reference` rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    n = min(len(reference), max(len(recent), MIN_ROWS) * 4)
    ref = reference[rng.choice(len(reference), n, replace=False)] if len(reference) > n else reference
    x = np.vstack([ref, recent]).astype(np.float64)
    y = np.r_[np.zeros(len(ref)), np.ones(len(recent))]
    folds = StratifiedKFold(n_splits=min(5, int(min(len(ref), len(recent)))), shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))
    scores = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, scores))


def _ood_rate(data: pd.DataFrame) -> Check:
    meaning = (
        "Many photos do not look like any class the model knows (out of distribution): it is being sent "
        "things it was not trained for, and its answers for them mean little."
    )
    flags = data["ood_flag"].dropna()
    if not len(flags):
        return Check("out-of-distribution rate", None, OOD_RATE, False, meaning, "no scores logged")
    rate = float(flags.astype(float).mean())
    return Check("out-of-distribution rate", rate, OOD_RATE, len(flags) >= 10 and rate > OOD_RATE, meaning)


def _feedback(data: pd.DataFrame) -> dict[str, Any]:
    given = data.dropna(subset=["feedback_label"]) if "feedback_label" in data else data.iloc[:0]
    if not len(given):
        return {"count": 0}
    right = (given["label"] == given["feedback_label"]).to_numpy()
    return {"count": len(given), "accuracy": float(right.mean()), "right": int(right.sum())}
