"""`evaluate` and `predict`: a run's test-split metrics, and its predictions for new photos."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from core.cli import add_runtime_option, store_of
from core.cli.output import EXIT_FAILED, EXIT_OK, emit_json, fail, format_table
from core.paths import data_dir
from core.processes import JobState
from core.serving.aliases import resolve
from core.serving.log import PredictionLog
from core.serving.ray import predict_on_ray

DEFAULT_SET_LEVEL = 0.9  # `predict --set-level` unless given (a multi-label run has no sets: given there, refused)


def register(sub, common: argparse.ArgumentParser) -> None:
    evaluate = sub.add_parser("evaluate", parents=[common], help="test-split metrics of a run")
    evaluate.add_argument("run_id", metavar="RUN_ID", help="a run id (a unique prefix is enough)")
    evaluate.add_argument(
        "--tta",
        action="store_true",
        help="also with test-time augmentation (each photo in 4 views, averaged): accuracy, macro F1, NLL with and "
        "without, McNemar's p-value, the cost per photo; the run then uses it only where it helped on validation",
    )
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=cmd_evaluate)

    predict = sub.add_parser("predict", parents=[common], help="classify images with a run's model")
    predict.add_argument("run_id", metavar="RUN_ID", help="a run id, a unique prefix or an alias")
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or folders (every file under them)")
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--json", action="store_true")
    predict.add_argument(
        "--csv",
        metavar="OUT.csv",
        help="write one row per file: top-k, out-of-distribution flag, or the error (a multi-label run: its labels, "
        "joined by |, and every label's score)",
    )
    predict.add_argument("--parquet", metavar="OUT.parquet", help="the same table as --csv, as Parquet")
    predict.add_argument("--log", action="store_true", help="also record each prediction in the prediction log")
    predict.add_argument(
        "--set-level",
        type=float,
        metavar="LEVEL",
        help="each photo's prediction set at this level (0.8-0.99; default 0.9), where the run has sets; 0: none. "
        "Not drawn at random: the same photo always gets the same set",
    )
    predict.add_argument(
        "--max-error",
        type=float,
        metavar="LEVEL",
        help="answer only when sure: hold back each photo under the run's threshold for at most this share wrong among "
        "the photos answered (0.05, or 5), promised with probability 90%%; photos that look like none of its classes "
        "are held back too. Without it, a class's threshold saved on Evaluate still holds back that class's answers "
        "under it (the reason says so)",
    )
    predict.add_argument(
        "--ray",
        metavar="ADDRESS",
        nargs="?",
        const="",
        help="classify on a Ray cluster (Ray Data, one model actor per GPU or CPU): its address, e.g. head:6379 "
        "(--ray alone: $FLORA_RAY_ADDRESS); the paths and Flora's folder must be the same on every node",
    )
    predict.add_argument(
        "--raw",
        action="store_true",
        help="the model's own probabilities (default: calibrated with the run's temperature, when it has one)",
    )
    add_runtime_option(predict)
    predict.set_defaults(handler=cmd_predict)


def not_evaluated_reason(run) -> str:
    """Why a run has no test evaluation yet, and what to do, by its state."""

    where = f"run {run.run_id}"
    if run.stopping:
        return f"{where} is stopping: it is saving its best weights and evaluating them; try again in a few seconds"
    if run.active:
        epochs = f" (epoch {run.status.epoch}/{run.status.epochs_total or '?'} in progress)" if run.status.epoch else ""
        return f"{where} is still {run.state}{epochs}: its test evaluation is written when it ends"
    if run.state is JobState.FAILED:
        return f"{where} failed, so it has no evaluation: {run.status.error or 'no error recorded'}"
    if run.state is JobState.STOPPED:
        return f"{where} was stopped before its first epoch finished: there is no model to evaluate"
    if run.multilabel and run.has_model:
        found = f"its test mAP is {run.status.map:.4f}" if run.status.map is not None else "it keeps no test mAP"
        return (
            f"{where} is multi-label: {found}; this reads single-label runs only so far: `python -m core evaluate "
            f"{run.run_id}` gives its AP, precision, recall and F1 per label, `python -m core predict {run.run_id} "
            "PHOTO` its labels and scores"
        )
    return f"{where} has no stored evaluation (state {run.state})"


def cmd_evaluate(args: argparse.Namespace) -> int:
    from core.results.evaluation.metrics import Evaluation  # heavy: sklearn

    store = store_of(args)
    run = store.refresh(store.find(args.run_id), persist=False)
    if run.multilabel and run.has_model:  # AP, precision, recall and F1 per label (core/cli/evaluate_labels.py)
        from core.cli.evaluate_labels import evaluate_labels  # heavy: pandas

        return evaluate_labels(args, run)
    if not run.has_evaluation:
        return fail(not_evaluated_reason(run))
    evaluation = Evaluation.load(run.directory)
    summary = evaluation.summary()
    report = None
    if args.tta:
        if not run.has_analysis:
            return fail(f"run {run.run_id} has no analysis arrays: run `python -m core analyse {run.run_id}` first")
        report = _measure_tta(args, run)
    if args.json:
        extra = {"tta": report.summary()} if report is not None else {}
        emit_json({"run_id": run.run_id, **summary, **extra})
        return EXIT_OK
    print(f"run {run.run_id}  ({run.dataset_name}, {len(run.classes)} classes, state {run.state})")
    print(f"accuracy      {summary['accuracy']:.4f}  on {summary['test_images']} test images")
    if "top5_accuracy" in summary:
        print(f"top-5         {summary['top5_accuracy']:.4f}")
    for average in ("macro", "weighted"):
        m = summary[average]
        print(f"{average:<13} precision {m['precision']:.4f}  recall {m['recall']:.4f}  f1 {m['f1']:.4f}")
    print()
    table = evaluation.per_class()
    rows = [
        [r["class"], f"{r.precision:.4f}", f"{r.recall:.4f}", f"{r.f1:.4f}", str(r.support)]
        for _, r in table.iterrows()
    ]
    print(format_table(["class", "precision", "recall", "f1", "support"], rows))
    print()
    matrix = evaluation.confusion_matrix()
    if len(run.classes) <= 20:
        print("confusion matrix (rows: true, columns: predicted)")
        names = [c[:10] for c in evaluation.classes]
        print(
            format_table(
                ["true \\ pred", *names],
                [[n, *map(str, row)] for n, row in zip(names, matrix, strict=True)],
            )
        )
    confused = evaluation.most_confused().head(10)
    if len(confused):
        print()
        print("most confused pairs")
        print(
            format_table(
                ["true", "predicted", "count"],
                [[r.true, r.predicted, str(r["count"])] for _, r in confused.iterrows()],
            )
        )
    if report is not None:
        print_tta(report)
    return EXIT_OK


def _measure_tta(args: argparse.Namespace, run):
    from core.results.probabilities import conformal, tta  # heavy: sklearn

    with contextlib.redirect_stdout(sys.stderr):
        last = [""]

        def progress(stage: str, done: int, total: int) -> None:
            if stage != last[0] or done >= total:
                last[0] = stage
                print(f"{stage}: {done}/{total}", file=sys.stderr)

        report = tta.measure(run, data_dir(args.data_dir), progress)
        conformal.run_sets(run.directory)  # the run's sets follow the probabilities its predictors now give
    return report


def print_tta(report) -> None:
    """With and without test-time augmentation, on test (and validation, which decides)."""
    from core.results.evaluation.compare import p_value_words  # heavy: pandas

    print(f"\ntest-time augmentation: {len(report.views)} views ({', '.join(report.views)}), averaged")
    rows = []
    for name, part in (("test", report.test), ("validation", report.validation)):
        rows += [
            [f"{name} accuracy", f"{part.accuracy_without:.4f}", f"{part.accuracy_with:.4f}"],
            [f"{name} macro F1", f"{part.macro_f1_without:.4f}", f"{part.macro_f1_with:.4f}"],
            [f"{name} NLL", f"{part.nll_without:.4f}", f"{part.nll_with:.4f}"],
        ]
    print(format_table(["", "without", "with"], rows))
    test = report.test
    p_text = f"p = {test.p_value:.3f}" if test.p_value >= 0.001 else "p < 0.001"
    print(
        f"test: better on {test.better} photo(s), worse on {test.worse}; McNemar {p_text}: "
        f"{p_value_words(test.p_value)}"
    )
    print(
        f"cost: {report.seconds_per_photo_without * 1000:.1f} ms a photo without, "
        f"{report.seconds_per_photo_with * 1000:.1f} ms with ({len(report.views)} forward passes)"
    )
    print(f"decision: {report.reason}")


def cmd_predict(args: argparse.Namespace) -> int:

    store = store_of(args)
    run = resolve(store, args.run_id).run
    if run.multilabel:  # its labels above their thresholds and every label's score (core/cli/labels.py)
        from core.cli.labels import predict_labels  # heavy: keras

        return predict_labels(args, run)
    if args.ray is not None:
        return _predict_on_ray(args, store, run)
    return _predict_batch(args, store, run)


def _file_results(items: list, model) -> list[dict]:
    """Photo by photo, as `core predict IMAGE... --json` gives them: the answer (top-k, entropy, its set, whether it
    looks like none of the run's classes, whether it is held back) with the file and its seconds, or the error.
    `ood_score` is also a field of its own, named as in a folder's rows and --csv (where `out_of_distribution` is
    the flag alone; here it is the object with the flag, score, method and why)."""
    out = []
    for item in items:
        if item.error:
            out.append({"image": item.name, "error": item.error})
            continue
        answer = item.answer.to_dict(model.ood_method)
        if "out_of_distribution" in answer:
            answer["ood_score"] = answer["out_of_distribution"]["score"]
        out.append({"image": item.name, **answer, "seconds": round(item.seconds, 4)})
    return out


def _predict_batch(args: argparse.Namespace, store, run) -> int:
    """The serving engine (with the 'none of these' check, prediction sets, answering only when sure): photo by
    photo for files, one flat row per file for folders and --csv / --parquet / --log."""
    from core.serving.batch_predict import expand_sources, predict_many, size_note, table_rows  # heavy: sklearn
    from core.serving.engine import ServedModel  # heavy: sklearn

    files = expand_sources(args.images)
    with contextlib.redirect_stdout(sys.stderr):
        model = ServedModel(run, data_dir(args.data_dir))
        if args.raw:
            if args.max_error is not None:
                return fail("--max-error needs the calibrated probabilities its threshold was fitted on: drop --raw")
            model.temperature = 1.0  # the model's own probabilities
            model.sets = None  # sets are fitted on the calibrated ones
            model.class_thresholds = {}  # and so are the class thresholds
        set_level = None
        asked = DEFAULT_SET_LEVEL if args.set_level is None else args.set_level
        if asked and model.sets is not None:
            set_level = model.check_set_level(asked)
        max_error = model.check_max_error(args.max_error)
        log = PredictionLog.of_store(store.root) if args.log else None
        named = [(str(p), p) for p in files]
        items = predict_many(model, named, args.top_k, log, "cli", args.run_id, set_level, max_error)
    tabled = args.csv or args.parquet or args.log or any(os.path.isdir(p) for p in args.images)
    if not tabled:
        return _print_files(args, run, model, items)
    rows = table_rows(items, max(1, min(args.top_k, len(run.classes))), run.train_config.image_size)
    _write_tables(args, rows)
    if args.json:
        emit_json(
            {"run_id": run.run_id, "temperature": model.temperature, "ood_method": model.ood_method, "results": rows}
        )
    elif not (args.csv or args.parquet):
        for item in items:
            if item.error:
                print(f"{item.name}: error: {item.error}")
            else:
                flag = _none_of_these(model) if item.answer.ood_flag else ""
                flag += f"  [held back: {item.answer.abstain_reason}]" if item.answer.abstained else ""
                if item.answer.prediction_set is not None:
                    trust = "" if item.answer.set_trusted else ", not to be trusted: it looks like none of the classes"
                    flag += f"  [set at {item.answer.set_level:.0%}: {' or '.join(item.answer.prediction_set)}{trust}]"
                small = size_note(item.decoded, run.train_config.image_size)
                flag += f"  (warning: {small})" if small else ""
                print(f"{item.name}: {', '.join(f'{label} {p:.3f}' for label, p in item.answer.top)}{flag}")
    return EXIT_OK if all(not i.error for i in items) else EXIT_FAILED


def _print_files(args: argparse.Namespace, run, model, items: list) -> int:
    results = _file_results(items, model)
    if args.json:
        emit_json(
            {"run_id": run.run_id, "temperature": model.temperature, "ood_method": model.ood_method, "results": results}
        )
    else:
        for result in results:
            if "error" in result:
                print(f"{result['image']}: error: {result['error']}")
                continue
            line = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in result["top"])
            if "prediction_set" in result:
                chosen = result["prediction_set"]
                trust = "" if chosen.get("trusted", True) else ", not to be trusted: it looks like none of the classes"
                line += f"  [set at {chosen['level']:.0%}: {' or '.join(chosen['classes'])}{trust}]"
            if (result.get("out_of_distribution") or {}).get("flag"):
                line += _none_of_these(model)
            if result.get("abstained"):
                line += f"  [held back: {result.get('reason')}]"
            print(f"{result['image']}: {line}")
    return EXIT_OK if all("error" not in r for r in results) else EXIT_FAILED


def _none_of_these(model) -> str:
    """The flag in a line of text, with how often the check wrongly flags the run's own photos."""
    rates = f"; {model.reference.detector.flag_words()}" if model.reference is not None else ""
    return f"  (none of these: it looks like no class the model knows{rates})"


def _write_tables(args: argparse.Namespace, rows: list[dict]) -> None:
    from core.serving.batch_predict import csv_text  # heavy: sklearn

    unreadable = sum(1 for row in rows if row.get("error"))
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as f:
            f.write(csv_text(rows))
        print(f"{len(rows)} rows ({unreadable} unreadable) -> {args.csv}", file=sys.stderr)
    if args.parquet:
        import pandas as pd

        # typed columns: an empty cell (an unreadable file's probabilities) is a missing value, not ""
        frame = pd.DataFrame(rows).replace({"": None}).infer_objects()
        frame.to_parquet(args.parquet, index=False)
        print(f"{len(rows)} rows ({unreadable} unreadable) -> {args.parquet}", file=sys.stderr)


def _predict_on_ray(args: argparse.Namespace, store, run) -> int:
    """`--ray`: the batch path's table, made by model actors on a Ray cluster (core/serving/ray.py)."""
    from core.serving.batch_predict import expand_sources  # heavy: sklearn

    if args.log:
        return fail("--log is not available with --ray (the cluster's actors do not write this machine's log)")
    files = expand_sources(args.images)
    rows, where = predict_on_ray(
        args.ray, store.root, run.run_id, data_dir(args.data_dir), files, args.top_k, raw=args.raw
    )
    resource = f"{where['num_gpus']} GPU" if "num_gpus" in where else f"{where['num_cpus']} CPU"
    print(
        f"Ray at {where['address']}: {len(rows)} photos by {where['actors']} model actor(s) ({resource} each) on "
        f"{where['nodes']} node(s) in {where['seconds']:.1f} s",
        file=sys.stderr,
    )
    _write_tables(args, rows)
    if args.json:
        emit_json({"run_id": run.run_id, "ray": where, "results": rows})
    elif not (args.csv or args.parquet):
        for row in rows:
            if row["error"]:
                print(f"{row['path']}: error: {row['error']}")
            else:
                print(f"{row['path']}: {row['label_1']} {row['probability_1']:.3f}")
    return EXIT_OK if not any(row["error"] for row in rows) else EXIT_FAILED
