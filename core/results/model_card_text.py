"""The Markdown sections of a run's model card, after Hugging Face's model card template: details, uses,
limitations, how to start, training, evaluation with intervals, calibration, prediction sets, answering only when
sure, "none of these", robustness, label health and weak groups, how to reproduce. Words say what each figure covers
and no more; a part the run has not computed says so and names the command."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from core.results.evaluation.chance import chance_level, no_better_than_chance
from core.results.probabilities.promise import promise_words
from core.settings.options import describe_config, run_command

_SPECIAL = re.compile(r"([\\`*_\[\]<>|])")


def md(text: Any) -> str:
    """A person's text (a class name, a dataset name) as literal Markdown."""
    return _SPECIAL.sub(r"\\\1", str(text))


def body(found: dict[str, Any], version: str, now: float) -> str:
    run = found["run"]
    parts = [
        f"# Model card: flora-{run.run_id}",
        _intro(found),
        _details(found, version, now),
        _uses(found),
        _limitations(found),
        _start(found),
        _training(found),
        _evaluation(found),
        _calibration(found),
        _sets(found),
        _selective(found),
        _none_of_these(found),
        _robustness(found),
        _data_health(found),
        _reproduce(found),
        "## References\n\nFlora's methods: temperature scaling (Guo et al. 2017); prediction sets, APS/RAPS (Romano "
        "et al. 2020; Angelopoulos et al. 2021); Learn then Test (Angelopoulos, Bates, Candes, Jordan & Lei 2021); "
        "energy score (Liu et al. 2020); Mahalanobis distance (Lee et al. 2018); deep nearest neighbours (Sun et al. "
        "2022); ImageNet-C corruptions (Hendrycks & Dietterich 2019); model cards (Mitchell et al. 2019).",
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def _classes(run) -> str:
    names = [md(c) for c in run.classes]
    return ", ".join(names) if len(names) <= 30 else ", ".join(names[:30]) + f" and {len(names) - 30} more"


def _near_chance(found) -> bool:
    """Whether the test accuracy's 95% interval includes chance (1 / classes)."""
    summary = found["summary"]
    return no_better_than_chance(summary["accuracy"], summary["test_images"], len(found["run"].classes))


def _chance(found) -> str:
    """'no better than chance on its test photos (...)', said wherever the card names its accuracy."""
    acc = found["intervals"].get("accuracy")
    within = f"its 95% interval {acc[0]:.3f}-{acc[1]:.3f} includes" if acc else "its interval includes"
    k = len(found["run"].classes)
    return f"no better than chance on its test photos ({within} {chance_level(k):.2f}, a guess among {k} classes)"


def _intro(found) -> str:
    run, summary = found["run"], found["summary"]
    start = "a random start (no pretrained weights)" if run.train_config.weights == "none" else "pretrained weights"
    weak = f": {_chance(found)}" if _near_chance(found) else ""
    return (
        f"An image classifier of {len(run.classes)} classes ({_classes(run)}) trained with Flora on the dataset "
        f"*{md(run.dataset_name)}* from {start}. Test accuracy {summary['accuracy']:.3f} on "
        f"{summary['test_images']} photos{weak}."
    )


def _details(found, version: str, now: float) -> str:
    run, config, record = found["run"], found["config"], found["record"]
    versions = record.get("versions", {})
    device = (found["status"].device if found["status"] else None) or "?"
    created = dt.datetime.fromtimestamp(run.created or now, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Model details",
        "",
        f"- **Run**: `{run.run_id}` (owner {md(run.owner)}), trained {created}",
        f"- **Architecture**: {config.backbone} backbone, a head of {list(config.head)} units (dropout "
        f"{config.dropout}), softmax over {len(run.classes)} classes; input {config.image_size} x "
        f"{config.image_size} RGB pixels (0-255; the preprocessing is inside the model)",
        f"- **Settings**: {md(describe_config(config))}",
        f"- **Software**: Flora {versions.get('flora', version)}, Keras {versions.get('keras', '?')} on "
        f"{versions.get('backend', '?')}; trained on {md(device)}",
        "- **Files**: `model.keras` in the run folder; exports (SavedModel, ONNX, TFLite) carry this card as README.md",
    ]
    return "\n".join(lines)


def _promises(found) -> str:
    """What the run's probabilities, sets and selective threshold promise, each only where the run has it."""
    said = []
    if found["calibration"] is not None:  # no more than the figures hold: Evaluate's and Predict's caveats, in short
        said.append(found.get("calibration_promise") or "its probabilities are calibrated on the validation split")
    sets, chosen = found["sets"], found["selective"]
    if sets is not None:
        said.append(f"its prediction sets at {sets.level:.0%} carry a promise about photos like the test photos taken "
                    "together (not each photo)")  # fmt: skip
    if chosen is not None and chosen.threshold is not None:
        said.append(f"its answer-only-when-sure threshold promises at most {chosen.max_error:.0%} wrong among the "
                    "photos it answers, for photos like the test photos")  # fmt: skip
    elif chosen is not None:
        said.append(f"no answer-only-when-sure threshold can promise at most {chosen.max_error:.0%} wrong on it")
    if not said:
        return ""
    text = "; ".join(said)
    return " " + text[0].upper() + text[1:] + "."


def _uses(found) -> str:
    run = found["run"]
    weak = (
        f" It is {_chance(found)}: it cannot be used to name photos yet, only to try Flora's steps on."
        if _near_chance(found)
        else ""
    )
    return (
        "## Uses\n\n"
        f"**Intended use**: naming which of {_classes(run)} a photo shows, for photos like the dataset's "
        f"(*{md(run.dataset_name)}*).{weak}{_promises(found)}\n\n"
        "**Out of scope**: photos of anything else. A classifier always answers with one of its classes; the "
        "'none of these' check below catches some foreign pictures, not all. No decision about people should rest "
        "on it."
    )


def _limitations(found) -> str:
    run, summary = found["run"], found["summary"]
    notes = []
    if _near_chance(found):
        notes.append(f"It is {_chance(found)}: its other figures (robustness, calibration, sets) describe a model "
                     "that guesses.")  # fmt: skip
    if run.train_config.weights == "none":
        notes.append(
            "It started from random weights: its features know only this dataset, so it is weaker than a pretrained "
            "model and its figures move more from one run to the next."
        )
    if summary["test_images"] < 100:
        notes.append(
            f"Its test split has {summary['test_images']} photos: every figure here is uncertain by several points "
            "(see the intervals)."
        )
    per_class = summary["per_class"]
    worst = sorted((row["f1"], name) for name, row in per_class.items() if row["support"])[:3]
    if worst:
        notes.append("Weakest classes by F1: " + ", ".join(f"{md(name)} ({f1:.2f})" for f1, name in worst) + ".")
    groups = found["groups"] or []
    if groups:
        notes.append(
            "Groups of photos it does worse on (clusters of its features): "
            + "; ".join(md(g.get("title") or g.get("description") or f"{g['photos']} photos") for g in groups[:3])
            + "."
        )
    elif found["groups"] is None:
        notes.append(
            "Weak groups and label health were not computed (Explore's data issues, or `python -m core data-issues "
            f"{run.run_id}`)."
        )
    return "## Bias, risks and limitations\n\n" + "\n".join(f"- {n}" for n in notes)


def _start(found) -> str:
    run = found["run"]
    return (
        "## How to get started\n\n"
        f"```\npython -m core predict {run.run_id} photo.jpg --json            # top classes, 'none of these' flag\n"
        f"python -m core predict {run.run_id} photo.jpg --max-error 0.05   # answer only when sure\n"
        f"python -m core serve {run.run_id}                                # REST, KServe v2 and TF Serving\n```"
    )


def _training(found) -> str:
    run, config, record = found["run"], found["config"], found["record"]
    status = found["status"]
    split = (status.split if status else None) or {}
    counts = record.get("dataset", {}).get("class_counts") or {}
    rows = ["| setting | value |", "| --- | --- |"]
    for key, value in config.to_dict().items():
        rows.append(f"| {md(key)} | {md(value)} |")
    data = (
        f"*{md(run.dataset_name)}*: {record.get('dataset', {}).get('images', '?')} photos, fingerprint "
        f"`{run.dataset_fingerprint}`; split {split.get('train', '?')} train, {split.get('val', '?')} validation, "
        f"{split.get('test', '?')} test ({md(split.get('source', 'random, stratified by class'))}, "
        f"seed {config.split_draw_seed})."
    )
    if counts:
        data += " Photos per class: " + ", ".join(f"{md(k)} {v}" for k, v in counts.items()) + "."
    return (
        "## Training details\n\n### Training data\n\n"
        + data
        + "\n\n### Training procedure\n\nTwo phases (head on a frozen backbone, then optionally fine-tuning with "
        "BatchNorm frozen), Adam, early stopping on validation loss, the best epoch's weights kept"
        + (f" (epoch {status.best_epoch})" if status and status.best_epoch else "")
        + ".\n\n"
        + "\n".join(rows)
    )


def _evaluation(found) -> str:
    summary, ci = found["summary"], found["intervals"]
    acc = ci.get("accuracy")
    f1 = ci.get("macro_f1")
    lines = [
        "## Evaluation",
        "",
        f"On the test split ({summary['test_images']} photos, never used in training or for any choice):",
        "",
        f"- accuracy **{summary['accuracy']:.4f}**"
        + (f" (95% interval {acc[0]:.3f}-{acc[1]:.3f}, Wilson)" if acc else "")
        + (f": {_chance(found)}" if _near_chance(found) else ""),
        f"- macro F1 **{summary['macro']['f1']:.4f}**"
        + (f" (95% interval {f1[0]:.3f}-{f1[1]:.3f}, bootstrap)" if f1 else ""),
        f"- macro precision {summary['macro']['precision']:.4f}, macro recall {summary['macro']['recall']:.4f}; "
        f"weighted F1 {summary['weighted']['f1']:.4f}",
    ]
    if "top5_accuracy" in summary:
        lines.append(f"- top-5 accuracy {summary['top5_accuracy']:.4f}")
    lines += ["", "| class | precision | recall | F1 | photos |", "| --- | --- | --- | --- | --- |"]
    for name, row in summary["per_class"].items():
        lines.append(
            f"| {md(name)} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['support']} |"
        )
    return "\n".join(lines)


def _calibration(found) -> str:
    c = found["calibration"]
    if c is None:
        return f"## Calibration\n\nNot fitted yet: `python -m core calibrate {found['run'].run_id}`."
    low, high = c["ece_interval_after"]
    bound = f" {found['calibration_words']}" if found.get("calibration_words") else ""
    return (
        "## Calibration\n\n"
        f"Temperature {c['temperature']:.3f} fitted on {c['val_images']} validation photos. On the test split the "
        f"expected calibration error goes from {c['ece_before']:.3f} to {c['ece_after']:.3f} (95% interval "
        f"{low:.3f}-{high:.3f}), NLL from {c['nll_before']:.3f} to {c['nll_after']:.3f}.{bound} Predict, "
        "Explore, `core predict`, the model server and the exports give the calibrated probabilities (Predict "
        "can show the raw ones, and says which); Evaluate's figures and its confusion-matrix photos show the model's "
        "own softmax, before calibration, and say so."
        + ("" if c.get("near_uniform_after") else " Calibration changes no ranking, so no accuracy.")
    )


def _sets(found) -> str:
    sets = found["sets"]
    run = found["run"]
    if sets is None:
        return f"## Prediction sets\n\nNot fitted yet: `python -m core calibrate {run.run_id} --conformal 0.9`."
    held, spread = sets.held_out, sets.spread
    text = (
        f"## Prediction sets\n\n{sets.method.upper()} sets at {sets.level:.0%}, "
        f"{'a threshold per class' if sets.by_class else 'one threshold'}, fitted on half the test split: on the "
        f"other {held.photos} photos they held the right class {held.coverage:.1%} of the time with "
        f"{held.mean_size:.2f} classes on average"
    )
    if spread is not None:
        text += f"; over {spread.splits} random halvings {spread.coverage_mean:.1%} +/- {spread.coverage_sd:.1%}"
    covers = promise_words(sets.level, sets.by_class, sets.few_photos())
    return text + f". What the promise covers: {covers}."


def _selective(found) -> str:
    from core.results.probabilities.selective import (  # heavy: scipy
        fragile_words,
        halvings_words,
        no_threshold_words,
        threshold_text,
    )

    chosen, run = found["selective"], found["run"]
    thresholds = found["class_thresholds"]
    extra = ""
    if thresholds:
        extra = "\n\nSaved per-class thresholds (answers under them are held back): " + ", ".join(
            f"{md(k)} {v:.2f}" if abs(round(v, 2) - v) < 1e-9 else f"{md(k)} {v:.3f}" for k, v in thresholds.items()
        )
    if chosen is None:
        return (
            "## Answering only when sure\n\nNot calibrated yet: "
            f"`python -m core calibrate {run.run_id} --max-error 0.05`." + extra
        )
    held, level = chosen.held_out, chosen.max_error
    intro = _selective_level(chosen, run, found.get("selective_saved_at"))
    if chosen.threshold is None:
        # the words and figures Predict, Evaluate and `core calibrate` give at this level
        cannot, nearest = no_threshold_words(level, chosen.nearest)
        text = cannot[0].upper() + cannot[1:] + "; " + nearest
        return "## Answering only when sure\n\n" + intro + text + "." + extra
    error = "-" if held.error is None else f"{held.error:.1%}"
    text = (
        f"At most {level:.0%} wrong among the photos answered, promised with probability {1 - chosen.delta:.0%} "
        f"(Learn then Test on half the test split): answer when the top probability is "
        f"{threshold_text(chosen.threshold)} or more. On the other half it answered {held.answered} of "
        f"{held.photos} ({held.share_answered:.0%}), {held.errors} wrong ({error})"
    )
    if chosen.spread is not None:
        s = chosen.spread
        text += ". " + halvings_words(s, level)
        fragile = fragile_words(s)
        if fragile:
            text += (
                f". **Many halvings find no threshold here**: {fragile}. The promise holds over the draw of the "
                "photos it calibrated on; whether a threshold is found at all, and what it answers, depends on that "
                "draw"
            )
    return "## Answering only when sure\n\n" + intro + text + "." + extra


def _selective_level(chosen, run, saved_at: str | None = None) -> str:
    """Which level the section reports: the one last fitted and stored with the run (by `core calibrate`, or the app's
    default when it was never run), when, with the command, beside the app's default."""
    from core.results.probabilities.selective import DEFAULT_MAX_ERROR  # heavy: scipy

    level = chosen.max_error
    when = f", stored {saved_at}" if saved_at else ""
    text = (
        f"This section reports the level last fitted and stored with the run, at most {level:.0%} wrong{when} "
        f"(`python -m core calibrate {run.run_id} --max-error {level:g}`; the app's default when that was never run). "
        "The levels looked at on Evaluate or used on Predict are not stored and do not change it. "
    )
    if abs(level - DEFAULT_MAX_ERROR) > 1e-9:
        default = chosen.threshold_at(DEFAULT_MAX_ERROR)
        at_default = (
            f"answers when the top probability is {default:.3f} or more"
            if default is not None
            else "no threshold can promise it on this run's test photos"
        )
        text += (
            f"Predict's \"Answer only when sure\" starts at the app's default, {DEFAULT_MAX_ERROR:.0%}, where "
            f"{at_default}; any level can be asked for (Predict's slider, the server's `max_error`). "
        )
    else:
        text += "It is also the app's default for Predict's \"Answer only when sure\". "
    return text


def _none_of_these(found) -> str:
    from core.results.probabilities.ood import FOREIGN_NAMES, METHOD_NAMES, THRESHOLD_IN_USE  # heavy: scikit-learn

    detector = found["ood"]
    if detector is None:
        return "## 'None of these'\n\nNo out-of-distribution reference is stored for this run."
    chosen = detector.evidence.get(detector.method, {})
    in_use = ", ".join(f"{FOREIGN_NAMES.get(k, k)} {v:.0%}" for k, v in chosen.get("foreign_flagged", {}).items())
    lines = [
        "## 'None of these'",
        "",
        f"Method: {METHOD_NAMES.get(detector.method, detector.method)}, picked among "
        f"{len(detector.evidence)} on one set of foreign images and reported on another. At {THRESHOLD_IN_USE} it "
        f"flags {chosen.get('test_flagged', 0):.0%} of the test photos (its false alarms)"
        + (
            f" and catches {chosen.get('foreign_flagged_all') or 0:.0%} of the foreign images it was tried on "
            f"({in_use}): the figures Predict and Serve show."
            if in_use
            else "."
        ),
    ]
    kinds = list(chosen.get("caught_at_5_percent_test_alarms", {}))
    if kinds:
        lines += [
            "",
            "To compare the methods at one false-alarm rate, each is also measured at the threshold that flags 5% of "
            "the test photos (where the threshold in use flags more than 5% of them, this one is stricter and catches "
            "less; where it flags fewer, the other way round). Share of foreign images caught at 5% false alarms on "
            "the test photos:",
            "",
        ]
        lines.append("| method | " + " | ".join(FOREIGN_NAMES.get(k, k) for k in kinds) + " |")
        lines.append("| --- |" + " --- |" * len(kinds))
        for method, figures in detector.evidence.items():
            caught = figures.get("caught_at_5_percent_test_alarms", {})
            mark = " (used)" if method == detector.method else ""
            lines.append(f"| {method}{mark} | " + " | ".join(f"{caught.get(k, 0):.0%}" for k in kinds) + " |")
    return "\n".join(lines)


def _robustness(found) -> str:
    report, run = found["robustness"], found["run"]
    if report is None:
        return f"## Robustness\n\nNot measured yet: `python -m core robustness {run.run_id}`."
    lines = [
        "## Robustness",
        "",
        report.words(),
        "",
        "| corruption | mean accuracy | drop | CE |",
        "| --- | --- | --- | --- |",
    ]
    for row in report.rows():
        lines.append(f"| {row['corruption']} | {row['mean accuracy']:.3f} | {row['drop']:+.3f} | {row['CE']:.3f} |")
    lines += ["", "Note: " + "; ".join(report.notes)]
    return "\n".join(lines)


def _data_health(found) -> str:
    lines = found["data_issues"]
    if lines is None:
        return ""  # said under limitations
    rows = [
        "## Label health and data issues",
        "",
        "| issue | photos | score (1 = clean) | what |",
        "| --- | --- | --- | --- |",
    ]
    for line in lines:
        rows.append(f"| {md(line['kind'])} | {line['photos']} | {line['score']:.3f} | {md(line['title'])} |")
    return "\n".join(rows)


def _reproduce(found) -> str:
    run = found["run"]
    return (
        "## How to reproduce\n\nThe same settings and data find the same run (its id is a hash of both):\n\n"
        f"```\n{run_command(run, dataset=run.dataset_name)}\n```"
    )
