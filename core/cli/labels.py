"""`predict` for a multi-label run: each photo's labels (those at or above their thresholds) and every label's score.

A multi-label run has no softmax to hold back, sets or a 'none of these' reference of its own yet, so its photos go
through `core.inference.Predictor` (the run's model, its thresholds tuned on validation) rather than the serving
engine; "none of these" is the empty list. `--csv` / `--parquet` write one row per file: path, labels (joined by
"|"), one score column per label, or the error.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import sys

from core.cli.output import EXIT_FAILED, EXIT_OK, emit_json, fail
from core.data.multilabel import NO_LABEL, text_of
from core.paths import cache_dir

UNSUPPORTED = {  # options of `predict` that a multi-label run has no answer to yet, and why
    "max_error": "--max-error (a threshold per label is what decides here)",
    "log": "--log (the prediction log records one class a photo)",
    "ray": "--ray",
}


def predict_labels(args: argparse.Namespace, run) -> int:
    """`core predict` on a multi-label run: JSON, a table file, or a line per photo."""
    from core.inference import Predictor  # heavy: keras
    from core.serving.batch_predict import expand_sources  # heavy: sklearn

    given = [flag for name, flag in UNSUPPORTED.items() if getattr(args, name, None) not in (None, False)]
    if given:
        return fail(f"{', '.join(given)}: not available for multi-label run {run.run_id} yet")
    files = expand_sources(args.images)
    with contextlib.redirect_stdout(sys.stderr):
        predictor = Predictor(run, runtime=getattr(args, "runtime", None), cache_root=cache_dir(args.data_dir))
        predictions = predictor.predict([str(p) for p in files], top_k=args.top_k)
    rows = [_row(p, predictor.classes) for p in predictions]
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as f:
            f.write(csv_text(rows, predictor.classes))
        print(f"{len(rows)} rows -> {args.csv}", file=sys.stderr)
    if args.parquet:
        import pandas as pd

        pd.DataFrame(rows).to_parquet(args.parquet, index=False)
        print(f"{len(rows)} rows -> {args.parquet}", file=sys.stderr)
    if args.json:
        emit_json(
            {
                "run_id": run.run_id,
                "task": "multilabel",
                "thresholds": {name: predictor.thresholds.get(name) for name in predictor.classes},
                "results": [p.to_dict() for p in predictions],
            }
        )
    elif not (args.csv or args.parquet):
        for p in predictions:
            if p.error:
                print(f"{p.source}: error: {p.error}")
                continue
            found = ", ".join(f"{label} {p.scores[label]:.3f}" for label in p.labels) or NO_LABEL
            print(f"{p.source}: {found}")
    return EXIT_OK if all(p.ok for p in predictions) else EXIT_FAILED


def _row(prediction, classes: list[str]) -> dict:
    if prediction.error:
        return {
            "path": prediction.source,
            "labels": "",
            **{f"score_{c}": None for c in classes},
            "error": prediction.error,
        }
    scores = {f"score_{c}": round(prediction.scores[c], 6) for c in classes}
    return {"path": prediction.source, "labels": text_of(prediction.labels), **scores, "error": ""}


def csv_text(rows: list[dict], classes: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=["path", "labels", *(f"score_{c}" for c in classes), "error"], lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()
