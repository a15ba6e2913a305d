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
    """The mAP, its interval and the random scorer's mAP, with what they say (and do not), then what the labels show
    one by one: one statement, the pooled claim and the per-label one each said with which holds."""
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
    tested = _tested(summary)
    weak = [name for name in weak_labels(summary) if name in tested]
    strong = [name for name in tested if name not in weak]
    if beats_random(low, baseline):
        said += (
            ". Averaged over the labels, the model ranks the photos that have a label above those that do not better "
            "than chance"
        )
        if not weak:
            return said + ", and each label shows it on its own."
        if not strong:
            return (
                f"{said}; label by label, none of the {len(tested)} has shown it on its own "
                f"({_weak_detail(summary, weak)}): the average is ahead only by small leads spread over the labels."
            )
        return (
            f"{said}; label by label, {len(weak)} of the {len(tested)} have not shown it on their own "
            f"({_weak_detail(summary, weak)})."
        )
    said += (
        ". That is no better than a random scorer on these photos: the interval reaches down to its figure, so the "
        "model has not shown, averaged over the labels, that it ranks photos with a label above those without"
    )
    if strong:
        names = ", ".join(f"'{name}'" for name in strong[:8]) + (" and more" if len(strong) > 8 else "")
        return f"{said}; label by label, {len(strong)} of the {len(tested)} show it on their own: {names}."
    return f"{said}, nor has any label on its own."


def _tested(summary: dict[str, Any]) -> list[str]:
    return [name for name, entry in summary["per_label"].items() if entry["ap"] is not None]


def _weak_detail(summary: dict[str, Any], names: list[str]) -> str:
    """ "the AP intervals of 'a', 'b' reach down to a random scorer's; some APs are even below it: 'b' 0.46 against
    0.48"."""
    shown = ", ".join(f"'{name}'" for name in names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    below = [
        f"'{name}' {entry['ap']:.2f} against {entry['random_ap']:.2f}"
        for name in names
        if (entry := summary["per_label"][name])["random_ap"] is not None and entry["ap"] < entry["random_ap"]
    ]
    out = (
        f"the AP interval of {shown} reaches down to a random scorer's"
        if len(names) == 1
        else f"the AP intervals of {shown} reach down to a random scorer's"
    )
    return out + (f"; some APs are even below it: {', '.join(below[:8])}" if below else "")


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


def untested_words(summary: dict[str, Any]) -> str | None:
    """The labels no test photo has, named: they have no AP (the headline speaks of the others)."""
    untested = [name for name, entry in summary["per_label"].items() if entry["ap"] is None]
    if not untested:
        return None
    shown = ", ".join(f"'{name}'" for name in untested[:8]) + (
        f" and {len(untested) - 8} more" if len(untested) > 8 else ""
    )
    return f"{len(untested)} of {len(summary['per_label'])} label(s) have no test photo, so no AP: {shown}."


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
    """0.35 as '0.35', a tuned 0.5553 as '0.555': never a rounding that would cut elsewhere; one under 0.001 as
    '1.0e-07' (and 0 as '0'), never '0.000', which would hide how low it is."""
    if threshold == 0:
        return "0"
    if 0 < threshold < 0.001:
        return f"{threshold:.1e}"
    return f"{threshold:.2f}" if abs(threshold - round(threshold, 2)) < 1e-6 else f"{threshold:.3f}"


def all_yes_f1(summary: dict[str, Any]) -> float | None:
    """The macro F1 of answering every label for every test photo: each label's precision is then its share f of the
    test photos and its recall 1, so its F1 is 2f / (1 + f); averaged over the labels with a test photo."""
    shares = [entry["frequency"] for entry in summary["per_label"].values() if entry["positives"]]
    return sum(2 * f / (1 + f) for f in shares) / len(shares) if shares else None


def thresholds_words(summary: dict[str, Any]) -> str | None:
    """The tuned thresholds' macro F1 on test beside 0.5 for every label and beside answering every label for every
    photo (from the test photos' label shares), with which it beats."""
    tuned, half = summary.get("f1_macro"), summary.get("f1_macro_at_half")
    if tuned is None or half is None:
        return None
    shown_tuned, shown_half = round(tuned, 2), round(half, 2)  # as written: "0.76 ... worse than 0.76" read wrong
    how = "better than" if shown_tuned > shown_half else "as well as" if shown_tuned == shown_half else "worse than"
    said = (
        f"Macro F1 at the thresholds tuned on validation: {tuned:.2f}{_interval(summary['f1_macro_interval'])}; "
        f"at 0.5 for every label: {half:.2f} (on these test photos the tuned thresholds do {how} 0.5)"
    )
    every = all_yes_f1(summary)
    if every is None:
        return said + "."
    said += (
        f"; answering every label for every photo: {every:.2f} (each label's F1 is then 2f/(1+f), f its share of the "
        "test photos)"
    )
    low = summary["f1_macro_interval"][0]
    if tuned <= every:
        return said + ". The tuned thresholds do no better than answering every label for every photo."
    if low is not None and low <= every:
        return (
            f"{said}. The tuned thresholds are not shown to do better than answering every label for every photo: "
            "the interval reaches down to its figure."
        )
    return said + "."


NEARLY_ALL = 0.9  # a label answered for at least this share of the test photos is answered for (nearly) every one


def every_photo_labels(summary: dict[str, Any]) -> dict[str, int]:
    """The labels whose threshold answers them for (nearly) every test photo, with how many photos got them."""
    n = summary["test_images"]
    out = {}
    for name, entry in summary["per_label"].items():
        answered = entry["found"] + entry["added"]
        if n and answered >= NEARLY_ALL * n:
            out[name] = answered
    return out


def every_photo_note(summary: dict[str, Any], label: str) -> str | None:
    """Why a label answered for (nearly) every photo says little: its threshold, how many photos got it, and whether
    the model separates it at all (None when the label is not answered so widely)."""
    answered = every_photo_labels(summary).get(label)
    if answered is None:
        return None
    entry, n = summary["per_label"][label], summary["test_images"]
    said = (
        f"threshold {threshold_text(entry['threshold'])}, tuned on validation: '{label}' is answered for {answered} of "
        f"{n} test photos ({'every' if answered == n else 'nearly every'} photo; {entry['positives']} have it), so a "
        f"'{label}' answer says little about a photo"
    )
    if label in weak_labels(summary):
        return said + f": the model has not shown that it tells the photos with '{label}' from the others yet."
    return said + "."


def every_photo_words(summary: dict[str, Any] | None, labels: list[str] | None = None) -> str | None:
    """One sentence for a predictor: which of `labels` (default: all) are answered for (nearly) every test photo."""
    every = every_photo_labels(summary) if summary else {}
    names = [name for name in (labels if labels is not None else list(every)) if name in every]
    if not names:
        return None
    n = summary["test_images"]
    counts = ", ".join(f"'{name}' ({every[name]} of {n} test photos)" for name in names)
    one = len(names) == 1
    return (
        f"{counts} {'is' if one else 'are'} answered for (nearly) every photo at {'its' if one else 'their'} tuned "
        f"threshold, so {'that answer says' if one else 'those answers say'} little about a photo."
    )
