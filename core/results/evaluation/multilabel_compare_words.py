"""A multi-label comparison in words: the verdict on the mAP difference, what the test covers, the labels that moved.

Said alike by the Compare page and `core compare`. A sentence promises no more than the figures hold: B is called
better (or worse) only when the mAP difference's paired 95% interval leaves out 0 and the permutation test's p is under
0.05 (`multilabel_compare.shown`); otherwise "no real difference shown", whatever the sign of the difference, which on
few test photos or a weak model is what they show.
"""

from __future__ import annotations

from typing import Any

from core.results.evaluation.compare import p_value_words


def signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def interval_text(pair) -> str:
    low, high = pair
    return "no interval" if low is None or high is None else f"95% interval {low:+.3f} to {high:+.3f}"


def p_text(p: float | None) -> str:
    if p is None:
        return "no test"
    return f"p = {p:.3f}" if p >= 0.001 else "p < 0.001"


def verdict(pair: dict[str, Any], photos: int, a_name: str = "A", b_name: str = "B") -> str:
    """'B ranks better than A on these 60 test photos, by mAP (...): mAP +0.080 for B against A (95% interval +0.031
    to +0.129; p = 0.002): unlikely to be chance.', or
    'No real difference shown: ...' when the interval reaches 0 or p >= 0.05."""
    difference, p = pair["map_difference"], pair["p_value"]
    if difference is None:
        return f"No test photo has any label ({photos} photos): there is no mAP to compare."
    figures = (
        f"mAP {signed(difference)} for {b_name} against {a_name} ({interval_text(pair['map_interval'])}; {p_text(p)})"
    )
    if pair.get("identical"):  # a walk: "+0.000 (95% interval +0.000 to +0.000) ... may be chance's"
        return (
            f"{a_name} and {b_name} rank these {photos} test photos in the same order for every label (their scores "
            f"differ by {pair.get('largest_score_difference', 0.0):.1e} at most): every AP and the mAP are the same, "
            "so there is no difference to test. Runs that trained on the same photos with the same labels and seed "
            "score alike, e.g. when the only corrections between them are of validation or test photos; their "
            "thresholds, tuned on validation, may still differ, and with them the labels they answer (each run's F1 "
            "on Evaluate)."
        )
    if pair["map_interval"][0] is None and p is None:  # no resampling on a split this large (bootstrap.MAX_CELLS)
        return (
            f"mAP {signed(difference)} for {b_name} against {a_name} on these {photos} test photos, untested: the "
            "split is too large to resample here, so whether the difference is real is not known."
        )
    if pair["shown"]:
        better = "better" if difference > 0 else "worse"
        return (
            f"{b_name} ranks {better} than {a_name} on these {photos} test photos, by mAP (the mean over labels; a "
            f"label may still move the other way): {figures}: {p_value_words(p)}."
        )
    why = (
        "the interval reaches 0"
        if pair["map_interval"][0] is not None and pair["map_interval"][0] <= 0 <= pair["map_interval"][1]
        else "the test cannot tell it from chance"
    )
    return (
        f"No real difference shown between {a_name} and {b_name} on these {photos} test photos: {figures}; "
        f"{why}, so the sign of the difference may be chance's (more test photos narrow it)."
    )


def scope(comparison: dict[str, Any]) -> str:
    """What the test covers: these photos, the mAP's labels, the labels without a positive test photo."""
    photos, labels = comparison["test_images"], comparison["labels"]
    missing = comparison["labels_without_positive"]
    said = (
        f"On these {photos} test photos alone, with the same label list for every run. mAP is the mean AP over the "
        f"{len(labels) - len(missing)} label(s) at least one of them has"
    )
    if missing:
        shown = ", ".join(f"'{name}'" for name in missing[:8]) + (
            f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        )
        said += f"; {shown} no test photo has, so they have no AP and are left out"
    pairs = comparison["pairs"]
    how = ""
    if pairs and pairs[0]["permutations"]:
        drawn = (
            f"all {pairs[0]['permutations']} ways" if pairs[0]["exact"] else f"{pairs[0]['permutations']} random ways"
        )
        how = (
            f" The p-value swaps the two runs' answers photo by photo ({drawn}); the intervals resample the photos "
            f"({pairs[0]['bootstrap']['resamples']} times, the same photos for both runs). A label's interval is "
            "its own: among many labels that do not really differ, about one in twenty would leave out 0 by chance."
        )
    return said + "." + how


def labels_words(pair: dict[str, Any], a_name: str = "A", b_name: str = "B") -> str:
    """How many labels moved with an interval clear of 0, each way."""
    up = [row["label"] for row in pair["per_label"] if row["clear_of_zero"] and (row["difference"] or 0) > 0]
    down = [row["label"] for row in pair["per_label"] if row["clear_of_zero"] and (row["difference"] or 0) < 0]
    tested = sum(1 for row in pair["per_label"] if row["difference"] is not None)
    if not up and not down:
        return f"No label's AP difference has an interval clear of 0 ({tested} label(s) with an AP)."
    parts = []
    if up:
        parts.append(f"{b_name} higher on {len(up)} ({', '.join(repr(n) for n in up[:5])})")
    if down:
        parts.append(f"{b_name} lower on {len(down)} ({', '.join(repr(n) for n in down[:5])})")
    rest = tested - len(up) - len(down)
    return f"AP with an interval clear of 0: {'; '.join(parts)}; no difference shown on the other {rest} (vs {a_name})."
