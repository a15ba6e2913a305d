"""`compare` for multi-label runs: each run's mAP, the mAP difference of each later run against the first with its
paired 95% interval and permutation test, the verdict in words, and the per-label AP table worst first (--json: every
figure). A multi-label run's test scores come from its stored evaluation (core.results.evaluation.multilabel)."""

from __future__ import annotations

import argparse

from core.cli.output import EXIT_OK, emit_json, fail, format_table
from core.results.evaluation import multilabel_compare as compare
from core.results.evaluation import multilabel_compare_words as words
from core.results.evaluation.multilabel import MultilabelEvaluationMissing


def compare_labels(args: argparse.Namespace, runs) -> int:
    try:
        sides = [compare.load_side(run) for run in runs]
    except MultilabelEvaluationMissing as e:
        return fail(f"{e}: train it again")
    try:
        out = compare.compare(sides)
    except compare.NotComparable as e:
        return fail(f"not comparable: {e}")
    if args.json:
        emit_json(out)
        return EXIT_OK
    if out["split_differs"]:
        print(
            f"{len(runs)} multi-label runs split differently, paired on the {out['test_images']} test photos they share"
        )
        print(out["split_differs"])
    else:
        print(f"{len(runs)} multi-label runs on the same {out['test_images']} test photos")
    for note in (out["same_split"], out["difference"], out["scope"]):
        if note:
            print(note)
    rows = [
        [run_id, _value(m["map"]), _value(m["map_micro"]), _value(m["random_map"])] for run_id, m in out["runs"].items()
    ]
    print(format_table(["run", "map", "micro map", "random scorer's map"], rows))
    for pair in out["pairs"]:
        a, b = pair["a"][:6], pair["b"][:6]
        print(f"\n{b} vs {a}: {pair['verdict']}")
        print(words.labels_words(pair, a, b))
        table = [
            [
                row["label"],
                _value(row["ap_a"]),
                _value(row["ap_b"]),
                words.signed(row["difference"]),
                words.interval_text(row["interval"]) if row["difference"] is not None else "no positive test photo",
                str(row["positives"]),
            ]
            for row in pair["per_label"]
        ]
        print(format_table(["label", f"ap {a}", f"ap {b}", "change", "paired interval", "photos"], table))
    return EXIT_OK


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
