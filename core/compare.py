"""Is run B really better than run A? Paired comparison of runs on the very same test photos.

Runs are comparable when they share the classes (same names, same order), the test photos and the
test labels (a label correction of a test photo changes what the test measures). Their validation
photos may differ (a run retrained with feedback has more): only the test split is compared. Then,
per run: accuracy, macro and weighted F1, NLL and ECE before and after temperature scaling; per
class F1 side by side; the photos one gets right and the other wrong; and McNemar's exact test on
those discordant photos: under "no real difference" each of the n discordant photos is equally
likely to favour either run, so the count favouring B is Binomial(n, 1/2).

This is Flora's one comparison: the Compare page, `python -m core compare`, and the retrain flow's
old-vs-new (core.retrain) all use `compare`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.analysis import RunAnalysis, softmax
from core.calibration import Calibration

MIN_RUNS, MAX_RUNS = 2, 5


class NotComparable(ValueError):
    """The runs cannot be compared photo by photo; the message says why."""


@dataclass
class RunResult:
    """One run's side of a comparison."""

    run_id: str
    analysis: RunAnalysis
    calibration: Calibration

    @property
    def predictions(self) -> np.ndarray:
        return self.analysis.test.logits.argmax(axis=1)

    @property
    def correct(self) -> np.ndarray:
        return self.predictions == self.analysis.test.labels


def check_comparable(results: list[RunResult]) -> None:
    """Raise NotComparable with the reason when the runs differ in classes, test photos or test labels."""
    if not MIN_RUNS <= len(results) <= MAX_RUNS:
        raise NotComparable(f"compare {MIN_RUNS} to {MAX_RUNS} runs. Received: {len(results)}")
    first = results[0]
    for other in results[1:]:
        a, b = first.analysis, other.analysis
        if a.classes != b.classes:
            only_a = sorted(set(a.classes) - set(b.classes))
            only_b = sorted(set(b.classes) - set(a.classes))
            detail = f"only in {first.run_id[:6]}: {only_a[:5]}; only in {other.run_id[:6]}: {only_b[:5]}"
            if not only_a and not only_b:
                detail = "the same names in another order"
            raise NotComparable(f"runs {first.run_id[:6]} and {other.run_id[:6]} have different classes ({detail})")
        if set(a.test.paths) != set(b.test.paths):
            shared = len(set(a.test.paths) & set(b.test.paths))
            raise NotComparable(
                f"runs {first.run_id[:6]} and {other.run_id[:6]} were tested on different photos "
                f"({len(a.test.paths)} and {len(b.test.paths)} test photos, {shared} in common: another dataset, "
                "split seed or fractions, or a photo excluded by a label correction); their accuracies are not paired"
            )
        order = np.argsort(b.test.paths)
        aligned = np.argsort(a.test.paths)
        differ = int(np.sum(a.test.labels[aligned] != b.test.labels[order]))
        if differ:
            raise NotComparable(
                f"{differ} test photo(s) carry different labels in runs {first.run_id[:6]} and {other.run_id[:6]} "
                "(a label correction between them): the two test scores measure different things"
            )


def align(results: list[RunResult]) -> None:
    """Put every run's test rows in the first run's order (the same photos, maybe stored in another order)."""
    reference = {path: i for i, path in enumerate(results[0].analysis.test.paths)}
    for result in results[1:]:
        test = result.analysis.test
        order = np.argsort([reference[p] for p in test.paths])
        test.logits, test.features = test.logits[order], test.features[order]
        test.labels, test.positions = test.labels[order], test.positions[order]
        test.paths = [test.paths[i] for i in order]


def mcnemar(a_correct: np.ndarray, b_correct: np.ndarray) -> dict[str, Any]:
    """McNemar's exact test. b: photos A gets right and B wrong; c: the reverse; two-sided p-value."""
    from scipy.stats import binomtest

    a_correct = np.asarray(a_correct, dtype=bool)
    b_correct = np.asarray(b_correct, dtype=bool)
    b = int(np.sum(a_correct & ~b_correct))
    c = int(np.sum(~a_correct & b_correct))
    p = 1.0 if b + c == 0 else float(binomtest(min(b, c), b + c, 0.5).pvalue)
    return {"b": b, "c": c, "p_value": min(1.0, p)}


def p_value_words(p: float) -> str:
    if p < 0.001:
        return "very unlikely to be chance"
    if p < 0.05:
        return "unlikely to be chance"
    if p < 0.2:
        return "could be chance (weak evidence)"
    return "consistent with chance: no evidence of a real difference"


def verdict(test: dict[str, Any], a_name: str = "A", b_name: str = "B") -> str:
    """'B is better on 31 photos, worse on 12; p = 0.005: unlikely to be chance'."""
    b, c, p = test["b"], test["c"], test["p_value"]
    if b + c == 0:
        return f"{a_name} and {b_name} get exactly the same test photos right: no difference to test"
    p_text = f"p = {p:.3f}" if p >= 0.001 else "p < 0.001"
    return f"{b_name} is better on {c} photo(s), worse on {b}; {p_text}: {p_value_words(p)}"


def metrics(result: RunResult) -> dict[str, Any]:
    from sklearn.metrics import f1_score

    test = result.analysis.test
    calibration = result.calibration

    def f1(average: str) -> float:
        labels = np.arange(len(result.analysis.classes))
        return float(f1_score(test.labels, result.predictions, average=average, labels=labels, zero_division=0))

    return {
        "accuracy": float(np.mean(result.correct)) if len(test.labels) else 0.0,
        "macro_f1": f1("macro"),
        "weighted_f1": f1("weighted"),
        "nll_before": calibration.before.nll,
        "nll_after": calibration.after.nll,
        "ece_before": calibration.before.ece,
        "ece_after": calibration.after.ece,
        "temperature": calibration.temperature,
        "test_images": len(test.labels),
    }


def per_class_f1(results: list[RunResult]) -> pd.DataFrame:
    """One row per class: each run's F1, and each later run's difference from the first."""
    from sklearn.metrics import f1_score

    classes = results[0].analysis.classes
    table = pd.DataFrame({"class": classes})
    for result in results:
        table[result.run_id] = f1_score(
            result.analysis.test.labels,
            result.predictions,
            average=None,
            labels=np.arange(len(classes)),
            zero_division=0,
        )
    for result in results[1:]:
        table[f"Δ {result.run_id}"] = table[result.run_id] - table[results[0].run_id]
    return table


def disagreements(a: RunResult, b: RunResult) -> dict[str, pd.DataFrame]:
    """The photos A gets right and B wrong ("a_only"), and the reverse ("b_only"), with both predictions."""
    test = a.analysis.test
    classes = a.analysis.classes
    pa, pb = softmax(a.analysis.test.logits), softmax(b.analysis.test.logits)
    out = {}
    for name, mask in (("a_only", a.correct & ~b.correct), ("b_only", ~a.correct & b.correct)):
        rows = np.flatnonzero(mask)
        out[name] = pd.DataFrame(
            {
                "path": [test.paths[i] for i in rows],
                "true": [classes[test.labels[i]] for i in rows],
                "a_predicted": [classes[a.predictions[i]] for i in rows],
                "a_p": pa[rows, a.predictions[rows]],
                "b_predicted": [classes[b.predictions[i]] for i in rows],
                "b_p": pb[rows, b.predictions[rows]],
            }
        )
    return out


def compare(results: list[RunResult]) -> dict[str, Any]:
    """Everything `python -m core compare --json` prints: per-run metrics, McNemar of each run vs the first,
    per-class F1 deltas.

    Raises:
        NotComparable: see `check_comparable`.
    """
    check_comparable(results)
    align(results)
    first = results[0]
    per_class = per_class_f1(results)
    out: dict[str, Any] = {
        "runs": {r.run_id: metrics(r) for r in results},
        "classes": first.analysis.classes,
        "test_images": len(first.analysis.test.labels),
        "per_class_f1": {
            r.run_id: dict(zip(per_class["class"], per_class[r.run_id].astype(float).round(6), strict=True))
            for r in results
        },
        "pairs": [],
    }
    for other in results[1:]:
        test = mcnemar(first.correct, other.correct)
        out["pairs"].append(
            {
                "a": first.run_id,
                "b": other.run_id,
                "mcnemar": test,
                "verdict": verdict(test, first.run_id[:6], other.run_id[:6]),
                "per_class_f1_delta": dict(
                    zip(per_class["class"], per_class[f"Δ {other.run_id}"].astype(float).round(6), strict=True)
                ),
            }
        )
    if len(results) == 2:
        out["mcnemar"] = out["pairs"][0]["mcnemar"]
        out["per_class_f1_delta"] = out["pairs"][0]["per_class_f1_delta"]
    return out


def load_result(run) -> RunResult:
    """A run's comparison side from its stored arrays (its calibration fitted and stored once).

    Raises:
        AnalysisMissing: the run has no analysis arrays yet.
    """
    from core.calibration import calibrate_run

    analysis = RunAnalysis.load(run.directory)
    return RunResult(run.run_id, analysis, calibrate_run(run.directory))


def settings_table(runs) -> pd.DataFrame:
    """The training settings that differ between `runs` (one row per setting, one column per run)."""
    from core.train_options import OPTIONS

    rows = []
    configs = [run.train_config for run in runs]
    for option in OPTIONS:
        values = [option.format(getattr(config, option.field)) for config in configs]
        if len(set(values)) > 1:
            rows.append({"setting": option.label, **{run.run_id: v for run, v in zip(runs, values, strict=True)}})
    corrections = [len(run.corrections or {}) for run in runs]
    if len(set(corrections)) > 1:
        rows.append(
            {"setting": "label corrections", **{r.run_id: str(n) for r, n in zip(runs, corrections, strict=True)}}
        )
    return pd.DataFrame(rows, columns=["setting", *[run.run_id for run in runs]])


__all__ = [
    "NotComparable",
    "RunResult",
    "check_comparable",
    "compare",
    "disagreements",
    "load_result",
    "mcnemar",
    "per_class_f1",
    "settings_table",
    "verdict",
]
