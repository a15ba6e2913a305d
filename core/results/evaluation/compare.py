"""Is run B really better than run A? Paired comparison of runs on the very same test photos.

Runs are comparable when they share the classes (same names, same order) and most of their test
photos; they are compared on the test photos they all have with the same label (a label correction
that excluded or relabelled a test photo leaves it out, and the result says so). Their validation
photos may differ (a run retrained with feedback has more): only the test split is compared. Then,
per run: accuracy, macro and weighted F1, NLL and ECE before and after temperature scaling; per
class F1 side by side; the photos one gets right and the other wrong; and McNemar's exact test on
those discordant photos: under "no real difference" each of the n discordant photos is equally
likely to favour either run, so the count favouring B is Binomial(n, 1/2). Runs on the very same split that differ
in their seed alone (a split seed kept them on one split) are two random starts: `same_split_note` says that their
difference is what chance alone moves; runs split differently are told how to get that (`split_note`).

This is Flora's one comparison: the Compare page, `python -m core compare`, and the retrain flow's
old-vs-new (core.retrain) all use `compare`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.errors import InvalidInput
from core.results.probabilities.calibration import Calibration, Scores, calibrate_run
from core.runs.analysis import RunAnalysis, softmax
from core.settings.config import TrainConfig, canonical_json
from core.settings.options import OPTIONS

MIN_RUNS, MAX_RUNS = 2, 5


class NotComparable(InvalidInput):
    """The runs cannot be compared photo by photo; the message says why."""


@dataclass
class RunResult:
    """One run's side of a comparison.

    `config`, `dataset` (its fingerprint) and `corrections` (their canonical JSON, "" for none) say how the run was
    trained, when known (`load_result` fills them): they tell two random starts on the same split apart from runs
    that differ in more.
    """

    run_id: str
    analysis: RunAnalysis
    calibration: Calibration
    config: TrainConfig | None = None
    dataset: str | None = None
    corrections: str | None = None

    @property
    def predictions(self) -> np.ndarray:
        return self.analysis.test.logits.argmax(axis=1)

    @property
    def correct(self) -> np.ndarray:
        return self.predictions == self.analysis.test.labels


MIN_SHARED = 0.5  # runs sharing under half of their test photos were split differently: paired on the few shared


def check_comparable(results: list[RunResult], noun: str = "classes", figures: str = "accuracies") -> None:
    """Raise NotComparable with the reason when the runs differ in classes or were tested on other photos.
    (`noun` and `figures` name them for other runs: a multi-label comparison's "labels" and "AP".)

    Runs that share most of their test photos (a label correction excluded or relabelled a few) are
    comparable on the photos they share with the same label (`common_photos`). Runs split differently (another
    seed without a split seed: Flora's seed draws the split as well as the start, or other fractions) share only a
    few; they are compared on those few and the result says so (`split_note`). Runs that share none are refused.
    """
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
            raise NotComparable(f"runs {first.run_id[:6]} and {other.run_id[:6]} have different {noun} ({detail})")
        shared = len(set(a.test.paths) & set(b.test.paths))
        if shared == 0:
            raise NotComparable(
                f"runs {first.run_id[:6]} and {other.run_id[:6]} were tested on different photos "
                f"({len(a.test.paths)} and {len(b.test.paths)} test photos, none in common: another dataset, "
                f"or another seed or fractions, which draw another split); their {figures} are not paired"
            )


def split_note(
    results: list[RunResult],
    shared: int,
    names: dict[str, str] | None = None,
    figures: str = "accuracy, McNemar, per class",
    own: str = "test accuracy is",
) -> str | None:
    """When the runs were split differently (they share under MIN_SHARED of their test photos), that in words: how
    many test photos each has, how many they share, and that the paired figures (`figures`) are on those alone
    (`own`: what each run's own page reports, "test accuracy is"). None otherwise."""
    names = names or {}
    sizes = [len(r.analysis.test.paths) for r in results]
    if shared >= MIN_SHARED * min(sizes):
        return None
    each = ", ".join(f"{names.get(r.run_id, r.run_id[:6])} {n}" for r, n in zip(results, sizes, strict=True))
    first = results[0]
    keep = (
        f"its split seed, {first.config.split_draw_seed}, and its validation and test shares"
        if first.config is not None
        else "the first run's split seed (its seed, unless it had a split seed) and shares"
    )
    return (
        f"These runs were split differently, so their test photos differ: they share only {shared} (test photos: "
        f"{each}). Flora's seed draws the split as well as the weights' start unless a split seed is set, so runs "
        f"with another seed (or other fractions) are tested mostly on other photos. Every paired figure here "
        f"({figures}) is on the {shared} shared photo(s) alone; each run's own {own} on photos the other never saw, "
        "and cannot be set side by side. To see what another random start alone "
        f"moves, on the very same photos, train again like {names.get(first.run_id, first.run_id[:6])} with {keep} "
        "and another seed: --split-seed on `core train`, or the Train page's Split seed (under Advanced)."
    )


def same_split_note(results: list[RunResult], names: dict[str, str] | None = None) -> str | None:
    """When the runs trained, validated and tested on the very same photos (the same data, corrections, validation
    and test photos) with the same settings but for their seeds, that in words: their differences are chance's.
    None otherwise, and when a run's settings are unknown. Call it before the runs are restricted."""
    if any(r.config is None for r in results):
        return None
    first = results[0]
    split = (first.dataset, first.corrections, first.analysis.split_hash)
    if any((r.dataset, r.corrections, r.analysis.split_hash) != split for r in results[1:]):
        return None
    seeds = [r.config.seed for r in results]
    others = {canonical_json(r.config.replace(seed=0, split_seed=None).to_dict()) for r in results}
    if len(set(seeds)) < len(seeds) or len(others) > 1:
        return None  # the same run twice, or runs that differ in more than their start
    names = names or {}
    each = ", ".join(_with_seed(names.get(r.run_id, r.run_id[:6]), r.config.seed) for r in results)
    return (
        "Same split, another random start: the difference is what chance alone moves. These runs trained, "
        f"validated and tested on the very same photos with the same settings; only the seed differs ({each}), "
        "which draws the weights' start, the augmentation and the photos' order. A change of setting or of data "
        "has to move the figures by more than this to count."
    )


def _with_seed(name: str, seed: int) -> str:
    """'7f80f7 seed 1', unless the run's name says its seed already (a title from its settings: 'seed 1 · ...')."""
    return name if re.search(rf"(?<!split )\bseed {seed}\b", name) else f"{name} seed {seed}"


def common_photos(results: list[RunResult]) -> tuple[list[str], dict[str, Any]]:
    """The test photos every run was tested on with the same label (in the first run's order), and what was
    left out: {"only_in": {run id: photos}, "relabelled": photos whose label differs between the runs}."""
    labels = [dict(zip(r.analysis.test.paths, r.analysis.test.labels.tolist(), strict=True)) for r in results]
    shared = [p for p in results[0].analysis.test.paths if all(p in other for other in labels[1:])]
    same = [p for p in shared if all(other[p] == labels[0][p] for other in labels[1:])]
    left_out = {
        "only_in": {r.run_id: len(r.analysis.test.paths) - len(shared) for r in results},
        "relabelled": len(shared) - len(same),
    }
    return same, left_out


def restrict(results: list[RunResult], paths: list[str]) -> None:
    """Keep only the test rows of `paths` in every run, in that order (the same photos, maybe stored in another)."""
    for result in results:
        test = result.analysis.test
        where = {path: i for i, path in enumerate(test.paths)}
        order = np.array([where[p] for p in paths], dtype=np.int64)
        test.logits, test.features = test.logits[order], test.features[order]
        test.labels, test.positions = test.labels[order], test.positions[order]
        test.paths = list(paths)


def difference_note(left_out: dict[str, Any], names: dict[str, str] | None = None) -> str | None:
    """What the comparison left out, in words, or None when every run had the same test photos and labels."""
    names = names or {}
    alone = len(left_out["only_in"]) <= 2  # of two runs, a photo one lacks is the other's alone; of more, not so
    parts = [
        f"{n} test photo(s) only {name} has" if alone else f"{n} of {name}'s test photos that not every run has"
        for run_id, n in left_out["only_in"].items()
        if n
        for name in [names.get(run_id, run_id[:6])]
    ]
    if left_out["relabelled"]:
        parts.append(f"{left_out['relabelled']} whose label a correction changed between the runs")
    if not parts:
        return None
    return (
        "Left out of the comparison: " + "; ".join(parts) + ". Test photos differ when label corrections exclude "
        "or relabel test photos, or when the dataset's photos changed between the runs (photos added or removed "
        "reshuffle a seeded split; 'What differs' shows it as 'dataset photos'); runs are compared only on the "
        "photos where they were asked the same question."
    )


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
    """'B is better than A on 31 photos, worse on 12; p = 0.005: unlikely to be chance'."""
    b, c, p = test["b"], test["c"], test["p_value"]
    if b + c == 0:
        return f"{a_name} and {b_name} get exactly the same test photos right: no difference to test"
    p_text = f"p = {p:.3f}" if p >= 0.001 else "p < 0.001"
    return f"{b_name} is better than {a_name} on {c} photo(s), worse on {b}; {p_text}: {p_value_words(p)}"


def metrics(result: RunResult) -> dict[str, Any]:
    """The run's figures on its (compared) test rows; NLL and ECE before and after its temperature."""
    from sklearn.metrics import f1_score

    test = result.analysis.test
    calibration = result.calibration
    before = Scores.of(softmax(test.logits), test.labels)
    after = Scores.of(softmax(test.logits, calibration.temperature), test.labels)

    def f1(average: str) -> float:
        labels = np.arange(len(result.analysis.classes))
        return float(f1_score(test.labels, result.predictions, average=average, labels=labels, zero_division=0))

    return {
        "accuracy": float(np.mean(result.correct)) if len(test.labels) else 0.0,
        "macro_f1": f1("macro"),
        "weighted_f1": f1("weighted"),
        "nll_before": before.nll,
        "nll_after": after.nll,
        "ece_before": before.ece,
        "ece_after": after.ece,
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
    paths, left_out = common_photos(results)
    split_differs = split_note(results, len(paths))  # on each run's own test photos, before they are restricted
    same_split = same_split_note(results)
    restrict(results, paths)
    first = results[0]
    per_class = per_class_f1(results)
    out: dict[str, Any] = {
        "runs": {r.run_id: metrics(r) for r in results},
        "classes": first.analysis.classes,
        "test_images": len(paths),
        "left_out": left_out,
        "difference": None if split_differs else difference_note(left_out),  # (split_differs says why they differ)
        "split_differs": split_differs,
        "same_split": same_split,
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

    analysis = RunAnalysis.load(run.directory)
    corrections = canonical_json(run.corrections) if run.corrections else ""
    return RunResult(
        run.run_id, analysis, calibrate_run(run.directory), run.train_config, run.dataset_fingerprint, corrections
    )


def settings_table(runs) -> pd.DataFrame:
    """The training settings that differ between `runs` (one row per setting, one column per run)."""

    rows = []
    configs = [run.train_config for run in runs]
    for option in OPTIONS:
        values = [option.format(getattr(config, option.field)) for config in configs]
        if len(set(values)) > 1:
            rows.append({"setting": option.label, **{run.run_id: v for run, v in zip(runs, values, strict=True)}})
    datasets = [(run.dataset_path, run.dataset_fingerprint) for run in runs]
    if len(set(datasets)) > 1:  # other photos (added, labelled in Flora, removed) or another folder altogether
        rows.append(
            {
                "setting": "dataset photos",
                **{r.run_id: f"{r.dataset_images or '?'} ({r.dataset_fingerprint[:6]})" for r in runs},
            }
        )
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
    "common_photos",
    "compare",
    "disagreements",
    "load_result",
    "mcnemar",
    "per_class_f1",
    "same_split_note",
    "settings_table",
    "split_note",
    "verdict",
]
