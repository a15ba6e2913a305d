"""The health check's findings about a multi-label dataset's labels: rare labels, labels no photo has, photos with
none, and how uneven the labels are (core.health.check calls these instead of the class checks)."""

from __future__ import annotations

import numpy as np

from core.data.datasets import DatasetIndex
from core.health.findings import MIN_CLASS_IMAGES, STRONG_IMBALANCE, Checks, _s

_SHOWN = 8


def class_counts(index: DatasetIndex, labels: np.ndarray, readable: np.ndarray) -> dict[str, int]:
    """Readable photos of each class, or (multi-label) having each label."""
    if index.multilabel:
        positives = index.targets.positives(np.flatnonzero(readable))
        return {name: int(positives[j]) for j, name in enumerate(index.classes)}
    return {c: int(np.sum(labels[readable] == i)) for i, c in enumerate(index.classes)}


def _named(names: list[str], counts: np.ndarray, which) -> str:
    shown = ", ".join(f"{names[j]} ({counts[j]})" for j in which[:_SHOWN])
    return shown + (" ..." if len(which) > _SHOWN else "")


def label_findings(checker: Checks, readable: np.ndarray) -> None:
    """Add what the labels of a multi-label dataset call for."""
    index = checker.index
    sets, names = index.targets, index.classes
    rows = np.flatnonzero(readable)
    counts = sets.positives(rows)
    unused = [j for j in range(len(names)) if counts[j] == 0]
    if unused:
        checker.add(
            "empty_label",
            "warning",
            f"{len(unused)} label{_s(len(unused))} that no readable photo has: "
            + ", ".join(names[j] for j in unused[:5])
            + (" ..." if len(unused) > 5 else ""),
            "The model cannot learn a label it is never shown: it will never answer it, and its average precision "
            "cannot be measured. Label photos with it, or drop it from the table.",
            files=[],
        )
    small = [j for j in range(len(names)) if 0 < counts[j] < MIN_CLASS_IMAGES]
    if small:
        members = rows[sets.dense(rows)[:, small].any(axis=1)]
        checker.add(
            "small_label",
            "warning",
            f"{len(small)} label{_s(len(small))} on fewer than {MIN_CLASS_IMAGES} readable photos: "
            + _named(names, counts, small),
            "A label this rare gives a validation and test score of one or two photos, and little to learn from; "
            "under 3 photos it cannot be in every split (the split names it). Label more photos with it, or merge "
            "or drop it.",
            members,
        )
    without = rows[sets.sizes()[rows] == 0]
    if len(without):
        checker.add(
            "no_label",
            "info",
            f"{len(without)} photo{_s(len(without))} with no label ({len(without) / max(1, len(rows)):.0%})",
            "Kept, with an empty list: the model learns to answer 'none of these' for such photos. If they should "
            "have labels, label them; if they are not part of the task, remove them.",
            without,
        )
    present = counts[counts > 0]
    if len(present) >= 2 and present.max() / present.min() >= STRONG_IMBALANCE:
        rare = [j for j in np.argsort(counts) if counts[j] > 0][:_SHOWN]
        checker.add(
            "label_imbalance",
            "info",
            f"labels are uneven: the most frequent is on {int(present.max())} photos, the rarest on "
            f"{int(present.min())} ({present.max() / present.min():.0f}x)",
            "Each label is a yes/no question of its own; training weighs each label's positive photos by how rare "
            "they are (class weights 'auto'), and each label gets its own threshold, tuned on validation. The "
            "per-label table on the Evaluate page shows how the rare ones fare. Rarest: " + _named(names, counts, rare),
            files=[],
        )
