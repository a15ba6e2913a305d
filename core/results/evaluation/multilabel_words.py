"""A multi-label evaluation in words: the mAP against a random scorer, and one label's trade-off at a threshold.

Said alike by the Evaluate page and `core evaluate`. A sentence promises no more than its interval holds: where the
mAP's 95% interval reaches down to what a random scorer gets on these photos, the model has not been shown to rank
better than chance, and the words say so instead of praising the figure.
"""

from __future__ import annotations

from typing import Any


def _interval(pair) -> str:
    low, high = pair
    return "" if low is None or high is None else f" (95% interval {low:.2f}-{high:.2f})"


def beats_random(low: float | None, baseline: float | None) -> bool:
    """Whether an interval's low end lies above the random scorer's figure."""
    return low is not None and baseline is not None and low > baseline


def headline(summary: dict[str, Any]) -> str:
    """The mAP, its interval and the random scorer's mAP, with what they say (and do not)."""
    found, baseline, n = summary.get("map"), summary.get("random_map"), summary["test_images"]
    if found is None:
        return f"No test photo has any label ({n} photos): there is no average precision to measure."
    low = summary["map_interval"][0]
    said = (
        f"mAP {found:.2f}{_interval(summary['map_interval'])} on {n} test photos; a random scorer gets {baseline:.2f}"
    )
    said += " (it ranks each label's photos at random: about how often the label occurs, a little more on few photos)"
    if low is None and n:  # no resampling on a split this large (multilabel_bootstrap.MAX_CELLS)
        return f"{said}. No interval: the test split is too large to resample here ({n} photos)."
    if beats_random(low, baseline):
        return f"{said}. The model ranks the photos that have a label above those that do not better than chance."
    return (
        f"{said}. That is no better than a random scorer on these photos: the interval reaches down to its figure, so "
        "the model has not shown that it ranks photos with a label above those without."
    )


def weak_labels(summary: dict[str, Any]) -> list[str]:
    """The labels whose AP interval reaches down to a random scorer's AP (or that no test photo has), worst first."""
    out = []
    for name, entry in summary["per_label"].items():
        low = entry["ap_interval"][0]
        if low is None and summary.get("bootstrap", {}).get("resamples") == 0:
            low = entry["ap"]  # no interval on a split this large: the figure itself
        if entry["ap"] is None or not beats_random(low, entry["random_ap"]):
            out.append((entry["ap"] if entry["ap"] is not None else -1.0, name))
    return [name for _, name in sorted(out)]


def weak_labels_words(summary: dict[str, Any]) -> str | None:
    weak = weak_labels(summary)
    if not weak:
        return None
    total = len(summary["per_label"])
    shown = ", ".join(f"'{name}'" for name in weak[:8]) + (f" and {len(weak) - 8} more" if len(weak) > 8 else "")
    return (
        f"{len(weak)} of {total} label(s) are no better than a random scorer on their own (or have no test photo): "
        f"{shown}."
    )


def trade_off(label: str, threshold: float, found: int, added: int, missed: int) -> str:
    """'at 0.35: 9 of 10 'road' answers right, 3 of 4 photos with 'road' found'."""
    answers, positives = found + added, found + missed
    where = f"at {threshold_text(threshold)}: "
    if positives == 0:
        return where + f"no test photo has '{label}'; {added} photo(s) would be answered '{label}', all wrongly"
    if answers == 0:
        return where + f"no photo is answered '{label}': 0 of {positives} photo(s) with '{label}' found"
    return where + f"{found} of {answers} '{label}' answers right, {found} of {positives} photo(s) with '{label}' found"


def threshold_text(threshold: float) -> str:
    """0.35 as '0.35', a tuned 0.5553 as '0.555': never a rounding that would cut elsewhere."""
    return f"{threshold:.2f}" if abs(threshold - round(threshold, 2)) < 1e-6 else f"{threshold:.3f}"


def thresholds_words(summary: dict[str, Any]) -> str | None:
    """The tuned thresholds' macro F1 on test beside 0.5 for every label."""
    tuned, half = summary.get("f1_macro"), summary.get("f1_macro_at_half")
    if tuned is None or half is None:
        return None
    how = "better than" if tuned > half else "the same as" if tuned == half else "worse than"
    return (
        f"Macro F1 at the thresholds tuned on validation: {tuned:.2f}{_interval(summary['f1_macro_interval'])}; "
        f"at 0.5 for every label: {half:.2f} ({how} 0.5 on these test photos)."
    )
