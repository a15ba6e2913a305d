"""`evaluate` for a multi-label run: mAP against a random scorer, the per-label table worst AP first, and with
--json every figure, its interval and each test photo's labels, the labels at the thresholds and every score;
`suspected_label_errors` lists the validation and test photos whose label lists the model doubts
(core.results.labels.multilabel_issues).

The run's stored evaluation (core.results.evaluation.multilabel), or, for a run trained before it was kept, one made
now from its analysis arrays and thresholds (not written: reads never write).
"""

from __future__ import annotations

import argparse

from core.cli.output import EXIT_OK, emit_json, fail, format_table
from core.results.evaluation import multilabel_words as words
from core.results.evaluation.multilabel import MultilabelEvaluation, MultilabelEvaluationMissing
from core.results.labels import multilabel_issues
from core.runs.analysis import AnalysisMissing, RunAnalysis


def evaluate_labels(args: argparse.Namespace, run) -> int:
    if getattr(args, "tta", False):
        return fail(f"--tta: not available for multi-label run {run.run_id} yet")
    try:
        evaluation = MultilabelEvaluation.of_run(run.directory)
    except MultilabelEvaluationMissing:
        return fail(
            f"run {run.run_id} is multi-label and keeps no test scores or thresholds to evaluate (a run that ended "
            "before they were stored): train it again"
        )
    summary = evaluation.summary()
    issues = _label_issues(run)
    if args.json:
        suspected = None if issues is None else issues.table.to_dict(orient="records")
        emit_json({"run_id": run.run_id, **summary, "photos": evaluation.photos(), "suspected_label_errors": suspected})
        return EXIT_OK
    print(f"run {run.run_id}  ({run.dataset_name}, {len(evaluation.classes)} labels, multi-label, state {run.state})")
    print(words.headline(summary))
    micro = summary["map_micro"]
    if micro is not None:
        print(
            f"micro mAP     {micro:.4f}  {_interval(summary['map_micro_interval'])}  "
            f"(a random scorer: {summary['random_map_micro']:.4f})"
        )
    print(f"exact match   {summary['exact_match']:.4f}  {_interval(summary['exact_match_interval'])}")
    print(f"Hamming loss  {summary['hamming_loss']:.4f}  {_interval(summary['hamming_loss_interval'])}")
    said = words.thresholds_words(summary)
    if said:
        print(said)
    if summary["photos_without_label"]:
        print(f"{summary['photos_without_label']} of {summary['test_images']} test photos have no label.")
    print()
    every = words.every_photo_labels(summary)
    rows = [
        [
            row.label,
            _value(row.ap),
            _interval((row.ap_low, row.ap_high)),
            _value(row.random_ap),
            f"{row.frequency:.3f}",
            words.threshold_text(row.threshold),
            f"{row.precision:.3f}",
            f"{row.recall:.3f}",
            f"{row.f1:.3f}",
            str(row.positives),
            _value(row.ece),
            f"answered for {every[row.label]} of {summary['test_images']}" if row.label in every else "",
        ]
        for row in evaluation.per_label().itertuples()
    ]
    headers = [
        "label",
        "ap",
        "95% interval",
        "random ap",
        "frequency",
        "threshold",
        "precision",
        "recall",
        "f1",
        "photos",
        "ece",
        "note",
    ]
    print(format_table(headers, rows))
    notes = [words.every_photo_note(summary, name) for name in every]
    untested = words.untested_words(summary)
    for note in [*notes, untested]:
        if note:
            print(f"\n{note[0].upper()}{note[1:]}")
    if issues is not None:
        print(
            f"\n{issues.suspected} of {issues.photos} validation and test photos have a label list the model doubts "
            "(confident learning one label at a time, as cleanlab's; Evaluate and Explore show them, to relabel, "
            "exclude or mark fine): photos to look at, not errors found"
        )
        weak_model = multilabel_issues.weak_model_words(issues, summary)
        if weak_model:
            print(weak_model.replace("**", ""))
    resampled = summary["bootstrap"]
    if resampled["resamples"]:
        print(
            f"\nintervals: {resampled['resamples']} bootstrap resamples of the test photos (seed {resampled['seed']})"
        )
    else:
        print("\nintervals: none (the test split is too large to resample here)")
    return EXIT_OK


def _label_issues(run):
    """The photos whose label lists the model doubts (None without the run's analysis arrays)."""
    try:
        return multilabel_issues.of_analysis(RunAnalysis.load(run.directory))
    except AnalysisMissing:
        return None


def _value(value) -> str:
    return "-" if value is None or value != value else f"{value:.3f}"


def _interval(pair) -> str:
    low, high = pair
    return "-" if low is None or high is None or low != low else f"{low:.3f}-{high:.3f}"
