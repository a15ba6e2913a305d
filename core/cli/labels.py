"""`predict` for a multi-label run: each photo's labels (those at or above their thresholds) and every label's score.

The photos go through the serving engine (`core.serving.engine.ServedModel`), as the model server's and the Predict
page's do, so all three give the same label lists; "none of these" is the empty list (`none_of_these`). A
multi-label run has no prediction sets, no threshold for answering only when sure and no 'none of these' reference of
its own yet. `--csv` / `--parquet` write one row per file (`core.serving.batch_predict.label_rows`): path, labels
(joined by "|"; empty: none of these), none_of_these, one score column per label, a size warning, or the error.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from core.cli.output import EXIT_FAILED, EXIT_OK, emit_json, fail
from core.data.multilabel import NO_LABEL
from core.paths import data_dir
from core.results.evaluation import multilabel_words as words
from core.results.evaluation.multilabel import stored_summary

UNSUPPORTED = {  # options of `predict` that a multi-label run has no answer to yet, and why
    "max_error": "--max-error (a threshold per label is what decides here)",
    "log": "--log (the prediction log records one class a photo)",
    "ray": "--ray",
    "set_level": "--set-level (a multi-label run has no prediction sets: each label is read against its own threshold)",
}


def predict_labels(args: argparse.Namespace, run) -> int:
    """`core predict` on a multi-label run: JSON, a table file, or a line per photo."""
    from core.serving.batch_predict import csv_text, expand_sources, label_rows, predict_many  # heavy: sklearn
    from core.serving.engine import ServedModel  # heavy: keras

    given = [flag for name, flag in UNSUPPORTED.items() if getattr(args, name, None) not in (None, False)]
    if given:
        return fail(f"{', '.join(given)}: not available for multi-label run {run.run_id} yet")
    files = expand_sources(args.images)
    with contextlib.redirect_stdout(sys.stderr):
        model = ServedModel(run, data_dir(args.data_dir))
        items = predict_many(model, [(str(p), p) for p in files], args.top_k, source="cli")
    size = run.train_config.image_size
    rows = label_rows(items, model.classes, size)
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as f:
            f.write(csv_text(rows))
        print(f"{len(rows)} rows -> {args.csv}", file=sys.stderr)
    if args.parquet:
        import pandas as pd

        pd.DataFrame(rows).replace({"": None}).infer_objects().to_parquet(args.parquet, index=False)
        print(f"{len(rows)} rows -> {args.parquet}", file=sys.stderr)
    if args.json:
        results = []
        for item in items:
            if item.error:
                results.append({"image": item.name, "error": item.error})
            else:
                results.append({"image": item.name, **item.answer.to_dict(), "seconds": round(item.seconds, 4)})
        emit_json({"run_id": run.run_id, "task": "multilabel", "thresholds": model.thresholds, "results": results})
    elif not (args.csv or args.parquet):
        for item, row in zip(items, rows, strict=True):
            if item.error:
                print(f"{item.name}: error: {item.error}")
                continue
            found = ", ".join(
                f"{f['label']} {f['probability']:.3f} (threshold {words.threshold_text(model.thresholds[f['label']])})"
                for f in item.answer.found
            )
            warning = f"  (warning: {row['warning']})" if row.get("warning") else ""
            print(f"{item.name}: {found or NO_LABEL}{warning}")
        given = {name for item in items if item.answer is not None for name in item.answer.labels or []}
        note = words.every_photo_words(stored_summary(run.directory), [c for c in model.classes if c in given])
        if note:
            print(f"note: {note}")
    return EXIT_OK if all(not item.error for item in items) else EXIT_FAILED
