"""What else is wrong with the data, in one list: outliers, overlapping classes, underperforming groups, label
health, and the health check's duplicates, leaks and imbalance (cleanlab's Datalab issue types as the checklist).

  outliers                photos farther from their nearest photos than most are (data_issues.outliers), with the ratio
  overlapping_classes     pairs of classes photos sit between (labels.overlap), merge or a clearer rule
  underperforming_groups  clusters of similar photos the model gets wrong much more often (data_issues.groups)
  label_health            the share of labels that look right, overall and per class (labels.overlap)
  duplicates, leaks, imbalance   the dataset health check's findings (core.health), as it reports them

`find(inputs)` makes the result from what core.results.data_issues.inputs gathered; a run keeps it as
`models/<run_id>/data_issues.json` (the "data-issues" task of core.results.tasks; `python -m core data-issues`).
A run's result read back carries its stored label review's counts (`label_review`, from label_issues.json), and
the label health line gives those: the figures the Suspected label errors tab shows.

Every line's score runs from 0 to 1, higher is better, 1 = nothing of that kind found; `SCORE_MEANING` says what
each one measures (mostly the share of photos the issue leaves untouched).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from core.fileio import read_versioned, write_json_atomic
from core.progress import StageCallback
from core.results.data_issues import groups, outliers
from core.results.data_issues.inputs import HEALTH_KINDS, Inputs, Stopped, for_dataset, for_run
from core.results.labels import issues as label_issues
from core.results.labels import overlap, power
from core.runs.files import run_files

__all__ = ["DataIssues", "Inputs", "Stopped", "find", "for_dataset", "for_run", "for_run_saved", "load", "save"]

DATA_ISSUES_VERSION = 1
WEAK_SEPARABILITY = (
    0.7  # below this (a photo of each told apart; guessing: 0.5) the features, not the labels, come first
)
MAX_OUTLIERS = 1000  # listed (the most unusual first); `outliers_flagged` counts them all

EXPLAIN = {
    "outliers": "Photos farther from their nearest photos than most photos are, in what the network sees and in how "
    "the picture looks (a screenshot among photos of the classes, a blank, a wrong file). Score: how many times "
    "farther from its nearest photos than a typical photo is (1.0x: typical); a photo is listed above the usual "
    "outlier bar (the third quartile plus 1.7 interquartile ranges of those ratios). Unusual is not wrong: delete "
    "the ones that do not belong, keep the unusual but genuine ones.",
    "overlapping_classes": "Pairs of classes the model mixes up, photos of each looking like the other. On features "
    "that tell photos apart well, that points at the labels: write a clearer rule for telling the two apart and "
    "relabel by it{merge}. On weak features (a random start, or a pair told apart little better than by guessing) "
    "it points at the model first: better features before judging the labels.",
    "underperforming_groups": "Clusters of similar photos on which the model is right much less often than on the "
    "rest (checked so that chance alone would rarely flag one). Collect more photos like these, or check their labels.",
    "label_health": "The share of labels that look right to a model that never saw the photo (1.0: all of them), "
    "and per class. A low class has many photos that look like another class.",
    "duplicates": "The same picture filed more than once (from the dataset health check).",
    "leaks": "Copies of one picture on both sides of a split (training and validation or test, or validation and "
    "test): the model is scored on pictures it has, in effect, seen, so the scores look better than they are.",
    "imbalance": "Some classes have far fewer photos than others (from the dataset health check). Score: the smallest "
    "class's photos divided by the largest's.",
}


SCORE_MEANING = {
    "label_health": "the share of labels not suspected of being wrong",
    "outliers": "the share of photos that are not outliers",
    "overlapping_classes": "the share of photos not caught between two overlapping classes",
    "underperforming_groups": "the share of photos outside the clusters the model does worse on",
    "duplicates": "the share of photos with no copy",
    "leaks": "the share of photos with no copy across splits",
    "imbalance": "the smallest class's photos divided by the largest's",
}


@dataclass
class DataIssues:
    """Every issue type's findings for one run or dataset (see the module's docstring)."""

    source: dict[str, str]
    photos: int
    classes: int
    by_split: dict[str, int]
    how: str
    outliers: list[dict[str, Any]]
    outliers_flagged: int
    outlier_threshold: float
    overlapping_classes: list[dict[str, Any]]
    underperforming_groups: list[dict[str, Any]]
    groups_tested: int
    label_health: dict[str, Any]
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    leaks: list[dict[str, Any]] = field(default_factory=list)
    imbalance: list[dict[str, Any]] = field(default_factory=list)
    health_note: str | None = None
    label_review: dict[str, Any] | None = None  # the run's label review's counts (with_label_review), when it has one
    random_start: bool = False  # the features come from a random start (a run's backbone or the dataset's)
    dataset_fingerprint: str = ""  # the dataset folder when it was looked at ("": before this was kept)
    dataset_photos: int | None = None  # its photos then
    computed_at: float = 0.0
    seconds: float = 0.0
    version: int = DATA_ISSUES_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "summary": self.summary()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataIssues:
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in known})

    def summary(self) -> list[dict[str, Any]]:
        """One line per issue type, in the order a person would look: what, how many, a score (1 = clean)."""
        n = max(self.photos, 1)
        grouped = sum(g["photos"] for g in self.underperforming_groups)
        between = sum(p["photos"] for p in self.overlapping_classes)
        health, wrong = self.label_health.get("score", 1.0), self.label_health.get("wrong_labels", 0)
        if self.label_review:  # the Suspected label errors tab's own figures
            wrong = self.label_review["suspects"]
            health = 1 - wrong / max(self.label_review["photos"], 1)
        lines = [
            _line("label_health", health, wrong, _health_title(self)),
            _line("outliers", 1 - self.outliers_flagged / n, self.outliers_flagged, _outliers_title(self)),
            _line("overlapping_classes", 1 - between / n, between, _overlap_title(self), self.classes),
            _line("underperforming_groups", 1 - grouped / n, grouped, _groups_title(self)),
        ]
        for key in HEALTH_KINDS:
            findings = getattr(self, key)
            files = len({f for finding in findings for f in finding["files"]})
            title = "; ".join(f["title"] for f in findings) if findings else f"no {key} found"
            if self.health_note and not findings and self.health_note.startswith("the dataset's folder"):
                title = "not checked: the dataset's folder cannot be read"
            score = 1 - files / n
            if key == "imbalance" and any(f["kind"] == "class_imbalance" for f in findings):
                sizes = [row["photos"] for row in self.label_health.get("classes", []) if row["photos"]]
                score = min(sizes) / max(sizes) if sizes else score  # the smallest class against the largest
            lines.append(_line(key, score, files, title))
        return lines


def score_text(score: float) -> str:
    """A score for people: two decimals, or three where two would round a finding up to a clean 1.00."""
    return f"{score:.3f}" if 0.995 <= score < 0.9995 else f"{score:.2f}"


def splits_text(by_split: dict[str, int]) -> str:
    """'356 train, 76 val, 76 test': the splits in training's order."""
    order = ("train", "val", "test", "all")
    names = sorted(by_split, key=lambda name: order.index(name) if name in order else len(order))
    return ", ".join(f"{by_split[name]} {name}" for name in names)


def changed_since(result: DataIssues, fingerprint: str, photos: int) -> str | None:
    """Why the result's counts are from an earlier dataset, in words, or None: the dataset folder (`fingerprint`,
    `photos`: as scanned now) is not the one it looked at (photos labelled in Flora, added, removed or edited since).
    A result from before the folder was recorded says nothing."""
    if not result.dataset_fingerprint or result.dataset_fingerprint == fingerprint:
        return None
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(result.computed_at))
    then = result.dataset_photos
    if then is None or then == photos:
        how = f"its {photos:,} photos are not the same ones (some replaced or edited)"
    else:
        moved = f"{photos - then:,} more" if photos > then else f"{then - photos:,} fewer"
        how = f"it had {then:,} photos then and has {photos:,} now ({moved})"
    return (
        f"The dataset changed since these counts were made on {when}: {how}. What follows counts the dataset as it "
        "was then; look again to count it as it is now."
    )


def _line(kind: str, score: float, photos: int, title: str, classes: int = 0) -> dict[str, Any]:
    return {
        "kind": kind,
        "score": round(float(max(0.0, score)), 4),
        "photos": int(photos),
        "title": title,
        "explanation": EXPLAIN[kind].format(merge=" (or merge them)" if classes > 2 else ""),
        "score_meaning": SCORE_MEANING[kind],
    }


def _health_title(issues: DataIssues) -> str:
    health = issues.label_health
    worst = health.get("classes", [])[:1]
    lowest = f"; lowest class: {worst[0]['class']} ({worst[0]['score']:.0%} of its labels look right)" if worst else ""
    review = issues.label_review
    if review:  # the label review's one verdict (labels.verdict), not its figures side by side
        n, suspects, supported = max(review["photos"], 1), review["suspects"], review.get("supported")
        listed = f"{suspects} suspected label errors ({suspects / n:.0%} of {review['photos']} photos)"
        if supported is None:
            said = f"{listed}, each a guess (too few photos to test the list)"
        elif supported == 0 and review.get("self_test_too_small"):
            said = f"{listed}: the self-test was too small to judge the list, so look through it by eye"
        elif supported == 0:
            said = f"{listed}, none found clearly better than a random pick in the self-test: treat them as guesses"
        else:
            said = f"{listed}: review the first {supported} first, as deep as the self-test found the list beats chance"
        return f"{said}; see Suspected label errors" + lowest
    text = f"{health.get('score', 1.0):.1%} of labels look right ({health.get('wrong_labels', 0)} probably wrong)"
    return text + lowest


def _outliers_title(issues: DataIssues) -> str:
    if not issues.outliers_flagged:
        return "no photo stands far apart from the rest"
    scores = [row["score"] for row in issues.outliers]
    spread = f"{min(scores):.1f}x to {max(scores):.1f}x" if scores else "more than"
    return (
        f"{issues.outliers_flagged} photo(s) ({issues.outliers_flagged / max(issues.photos, 1):.1%}) stand farther "
        f"from their nearest photos than the rest: {spread} a typical photo's distance (listed above "
        f"{issues.outlier_threshold:.2f}x, the usual outlier bar)"
    )


def weak_features(pair: dict[str, Any], random_start: bool) -> str | None:
    """Why the pair's overlap says more about the model than the labels, in words, or None: a random start, or
    features that tell pairs apart under WEAK_SEPARABILITY of the time in general (the typical candidate pair's
    figure; with two classes, the pair's own). A pair far worse than the typical one on good features is the
    pair's own matter (drawn alike: merge), not the model's."""
    apart = pair.get("separability")
    typical = pair.get("typical_separability")
    typical = apart if typical is None else typical
    told = f"it tells them apart only {apart:.0%} of the time (guessing: 50%)" if apart is not None else ""
    if pair.get("suggestion") == "merge" and typical is not None and typical >= WEAK_SEPARABILITY:
        return None  # the features tell the other pairs apart: this pair is drawn alike
    if random_start:
        return "this model started from random weights" + (f" and {told}" if told else "")
    if typical is not None and typical < WEAK_SEPARABILITY and told:
        return told
    return None


def overlap_advice(pair: dict[str, Any], classes: int, name=str, random_start: bool = False) -> str:
    """What to do about an overlapping pair, fitting the dataset and the model: on weak features (`weak_features`)
    better features come first and the labelling advice after, conditional; merging is offered only where other
    classes would be left to tell apart (merging the only two classes leaves nothing to classify). `name` dresses a
    class name (the page bolds it)."""
    a, b = (name(c) for c in pair["classes"])
    weak = weak_features(pair, random_start)
    if weak:
        merge = ", or merge them" if classes > 2 else ""
        return (
            f"First give the model features that can tell {a} from {b}: {weak}, so the overlap says more about the "
            "model than about your labels. Train with ImageNet weights, for longer or on larger images, and look "
            f"again; if they still overlap then, write a clearer rule for telling them apart and relabel by it{merge}."
        )
    if pair["suggestion"] == "merge" and classes > 2:
        return f"Consider merging {a} and {b}, or write a clearer rule for telling them apart."
    if classes > 2:
        return f"Write a clearer rule for telling {a} from {b} and relabel by it (or merge them)."
    return (
        f"Write a clearer rule for telling {a} from {b} and relabel by it, check the labels of the photos below, or "
        "give the model more to see (larger images, ImageNet weights). These are the only two classes: merging them "
        "would leave nothing to classify."
    )


def _overlap_title(issues: DataIssues) -> str:
    if not issues.overlapping_classes:
        return "no two classes overlap"
    top = issues.overlapping_classes[0]
    a, b = top["classes"]
    weak = weak_features(top, issues.random_start)
    if weak:
        return (
            f"{a} and {b} overlap most (about {top['photos']} photos sit between them), but the model's features "
            f"cannot tell them apart yet ({weak}): train with ImageNet weights, longer or on larger images before "
            "judging the labels"
        )
    if top["suggestion"] == "merge" and issues.classes > 2:
        return (
            f"the model cannot tell {a} from {b} (given one photo of each, it says which is which "
            f"{top['separability']:.0%} of the time; guessing: 50%): consider merging {a} and {b}, or write a "
            "clearer rule for telling them apart"
        )
    return f"{a} and {b} overlap most (about {top['photos']} photos sit between them): a clearer rule may separate them"


def _groups_title(issues: DataIssues) -> str:
    if not issues.underperforming_groups:
        return f"no cluster of photos does clearly worse than the rest ({issues.groups_tested} tested)"
    worst = issues.underperforming_groups[0]
    return (
        f"{len(issues.underperforming_groups)} cluster(s) of similar photos do clearly worse; the worst: "
        f"{worst['photos']} photos, {worst['accuracy']:.0%} right against {worst['rest_accuracy']:.0%} elsewhere"
    )


def find(inputs: Inputs, seed: int = 0, progress: StageCallback | None = None) -> DataIssues:
    """Every check on what `inputs` holds."""
    started = time.perf_counter()
    classes, labels, paths = inputs.classes, inputs.labels, inputs.paths
    if progress:
        progress("looking for outliers", 0, 4)
    score, by_features, by_look = outliers.outlier_scores(inputs.features, inputs.look, seed=seed)
    bar = outliers.threshold(score)
    flagged = np.flatnonzero(score > bar)
    flagged = flagged[np.argsort(-score[flagged], kind="stable")]
    outlier_rows = [
        {
            "path": paths[i],
            "score": float(score[i]),
            "class": classes[labels[i]],
            "split": inputs.splits[i],
            "features": float(by_features[i]),
            "look": None if by_look is None or np.isnan(by_look[i]) else float(by_look[i]),
        }
        for i in flagged[:MAX_OUTLIERS]
    ]
    if progress:
        progress("overlapping classes and label health", 1, 4)
    cj = overlap.confident_joint(inputs.probabilities, labels)
    counts = np.bincount(labels, minlength=len(classes))
    pairs = overlap.overlapping_classes(inputs.probabilities, labels, classes, paths, cj)
    health = overlap.label_health(cj, classes, counts)
    if progress:
        progress("clustering the photos", 2, 4)
    assignment = groups.clusters(inputs.features[:, : outliers.KNN_DIMENSIONS], seed=seed)
    predicted = _top_class(inputs.probabilities)
    weak = groups.underperforming_groups(assignment, predicted == labels, labels, predicted, classes, paths)
    if progress:
        progress("done", 4, 4)
    by_split: dict[str, int] = {}
    for name in inputs.splits:
        by_split[name] = by_split.get(name, 0) + 1
    return DataIssues(
        source={k: str(v) for k, v in inputs.source.items()},
        photos=len(labels),
        classes=len(classes),
        by_split=by_split,
        how=inputs.how,
        outliers=outlier_rows,
        outliers_flagged=len(flagged),
        outlier_threshold=bar,
        overlapping_classes=pairs,
        underperforming_groups=weak,
        groups_tested=len(np.unique(assignment)),
        label_health=health,
        random_start=inputs.random_start,
        **{key: [f.to_dict() for f in inputs.findings.get(key, [])] for key in HEALTH_KINDS},
        health_note=inputs.health_note,
        dataset_fingerprint=inputs.dataset_fingerprint,
        dataset_photos=inputs.dataset_photos,
        computed_at=time.time(),
        seconds=round(time.perf_counter() - started, 3),
    )


def _top_class(probabilities) -> np.ndarray:
    n = len(probabilities)
    out = np.empty(n, dtype=np.int64)
    for start in range(0, n, overlap.ROWS_AT_ONCE):
        out[start : start + overlap.ROWS_AT_ONCE] = np.asarray(
            probabilities[start : start + overlap.ROWS_AT_ONCE]
        ).argmax(axis=1)
    return out


def save(result: DataIssues, run_dir: str | os.PathLike) -> None:
    write_json_atomic(run_files(run_dir).data_issues, result.to_dict())


def load(run_dir: str | os.PathLike) -> DataIssues | None:
    """The run's stored result with its label review's counts, or None (never computed, or by an older version)."""
    found = read_versioned(run_files(run_dir).data_issues, DATA_ISSUES_VERSION, DataIssues.from_dict)
    return with_label_review(found, run_dir) if found is not None else None


def with_label_review(result: DataIssues, run_dir: str | os.PathLike) -> DataIssues:
    """`result` carrying the counts of the run's stored label review (None when it has none): its suspects, confident
    learning's estimate of the wrong labels and the depth its self-test supports, so label health says what the
    Suspected label errors tab says. Both score the photos alike (data_issues_inputs), so they agree unless one is
    older than the other."""
    review = label_issues.load(run_dir)
    result.label_review = (
        None
        if review is None
        else {
            "suspects": len(review.issues),
            "flagged": review.flagged,
            "estimated_errors": review.estimated_errors,
            "supported": review.supported,
            "photos": review.images,
            "self_test_too_small": power.inconclusive(review.trust),
        }
    )
    return result


def for_run_saved(run, data_root, progress=None, should_stop=None) -> DataIssues:
    """Gather a run's inputs, find the issues, keep them in the run folder (the "data-issues" task)."""
    result = find(for_run(run, data_root, progress, should_stop), progress=progress)
    save(result, run.directory)
    return with_label_review(result, run.directory)
