"""Feedback -> retrain -> compare -> promote.

`feedback_dataset` lays out the run's dataset plus its feedback photos as a new dataset folder
`<data>/<name>-feedback/`: the original photos as symbolic links under their own relative paths,
the feedback photos copied in, and a `flora.json` that fixes every original photo's split to the
one the run used (so the test split is the very same photos) and puts feedback photos in train or
val only. Its content differs, so its fingerprint, so the retrained run's id.

`compare_with_feedback` sets the two runs side by side on the same test photos (core.results.evaluation.compare, the one
comparison: McNemar's test says whether the difference could be chance) and on the feedback photos;
promoting is moving an alias (`core.serving.aliases`), which a running server follows.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.data.corrections import dataset_key
from core.data.datasets import META_FILE, SPLITS, scan_dataset
from core.errors import InvalidInput
from core.feedback import BASE_KEY, base_dataset, list_feedback
from core.fileio import read_json, write_json_atomic
from core.inference import Predictor
from core.paths import cache_dir
from core.results.evaluation.compare import NotComparable, compare, load_result
from core.runs.analysis import AnalysisMissing
from core.runs.files import run_files
from core.runs.record import LOCAL_OWNER, Run
from core.runs.split import DatasetChanged, run_split
from core.runs.store import RunStore
from core.settings.config import run_id_for
from core.train import jobs

FEEDBACK_PREFIX = "feedback-"  # a feedback photo's file name in a feedback dataset


class RetrainError(InvalidInput):
    """Retraining cannot start as asked; the message says why."""


def feedback_dataset(run: Run, data_root: str | os.PathLike) -> Path:
    """Write (or rewrite) `<data>/<base name>-feedback` for `run`; return its path.

    Every photo of the run's dataset keeps the split the run drew for it (core.runs.split; photos the run
    excluded are laid out too, and excluded again by the corrections the retrained run carries over).

    Raises:
        RetrainError: no feedback photos for the run's dataset, or the dataset is not the run's any more.
    """

    base = base_dataset(run.dataset_path).resolve()
    photos = list_feedback(data_root, base)
    if not photos:
        raise RetrainError(f"no feedback photos for {base.name} yet: correct some predictions first")
    try:
        data = run_split(run, cache_dir(data_root))
    except DatasetChanged as e:
        raise RetrainError(str(e)) from e
    index = data.index
    from_feedback_run = Path(run.dataset_path).resolve() != base  # its own feedback copies are laid out again below
    splits = {
        rel: name
        for name in SPLITS
        for rel in data.paths(getattr(data.drawn, name))
        if not (from_feedback_run and Path(rel).name.startswith(FEEDBACK_PREFIX))
    }
    # A corrected photo that is one of the test photos would leak the test split into training: skip it.
    hashes = {_sha256(base / rel): (rel, name) for rel, name in splits.items()}
    leaking = [photo for photo in photos if hashes.get(photo.sha256[:16], ("", ""))[1] == "test"]
    photos = [photo for photo in photos if photo not in leaking]
    # A corrected photo that is the same file as a training or validation photo relabels it in effect: say so.
    copies = [
        {"feedback": photo.path.name, "label": photo.label, "same_as": hashes[photo.sha256[:16]][0]}
        for photo in photos
        if photo.sha256[:16] in hashes
    ]
    if not photos:
        raise RetrainError("every feedback photo is one of the test photos; add photos from outside the test split")
    presplit = index.layout == "presplit"
    target = Path(data_root) / f"{base.name}-feedback"
    staging = Path(data_root) / f".{target.name}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    staging.mkdir(parents=True)
    try:
        for rel in splits:
            link = staging / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(base / rel)
        for photo in photos:
            rel = (
                f"{photo.split}/{photo.label}/{FEEDBACK_PREFIX}{photo.path.name}"
                if presplit
                else f"{photo.label}/{FEEDBACK_PREFIX}{photo.path.name}"
            )
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(photo.path, staging / rel)
            splits[rel] = photo.split
        meta: dict[str, Any] = {
            "name": f"{index.name} + feedback",
            "source": "feedback",
            BASE_KEY: str(base),
            "feedback_photos": len(photos),
            "feedback_skipped_test_photos": len(leaking),
            "feedback_copies": copies,
        }
        if not presplit:
            meta["splits"] = splits
        write_json_atomic(staging / META_FILE, meta)
        if target.exists():
            trash = target.with_name(f".{target.name}.{time.monotonic_ns()}.old")
            target.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _sha256(path: Path) -> str:
    """The first 16 hex digits of a file's sha256 (as feedback photos are named)."""
    import hashlib

    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return ""


def retrain_with_feedback(
    store: RunStore, run: Run, data_root: str | os.PathLike, background: bool = True, owner: str = LOCAL_OWNER
):
    """Train the run's settings on its dataset + feedback: launched in the background (the app) or here.

    Returns the jobs.Submission (its run_id is the new run, never `run` itself).

    Raises:
        RetrainError: no feedback photos, or none the run has not trained on already.
    """

    dataset = feedback_dataset(run, data_root)
    # The run's label corrections carry over (the feedback dataset keeps every photo's path), with any made since.
    corrections = {**(run.corrections or {}), **(jobs.dataset_corrections(data_root, dataset, owner) or {})} or None
    # The run this would be: if it is the run itself, its data already held every feedback photo (before: "old
    # dc0d4a vs new dc0d4a", a run compared with itself, every change 0.000).
    would_be = run_id_for(run.train_config, dataset_key(scan_dataset(dataset).fingerprint, corrections))
    if would_be == run.run_id:
        photos = read_json(dataset / META_FILE, {}).get("feedback_photos")
        raise RetrainError(
            f"run {run.run_id} was already trained on every feedback photo kept for its dataset ({photos}): "
            "there is nothing new to retrain with. Correct more predictions first, or retrain the run they came from."
        )
    if background:
        submission = jobs.launch(dataset, run.train_config, store.root, data_root, corrections=corrections, owner=owner)
    else:
        submission = jobs.submit(store, dataset, run.train_config, corrections=corrections, owner=owner)
    meta = read_json(dataset / META_FILE, {})
    record = read_json(run_files(store.run_dir(submission.run_id)).retrain, default=None)
    if not record or record.get("from") != run.run_id:  # a cache hit keeps where it came from
        write_json_atomic(
            run_files(store.run_dir(submission.run_id)).retrain,
            {
                "from": run.run_id,
                "feedback_photos": meta.get("feedback_photos"),
                "copies": meta.get("feedback_copies", []),
            },
        )
    if run.name:
        store.set_label(submission.run_id, name=f"{run.name} + feedback"[:80])
    return submission


def retrained_from(run: Run) -> str | None:
    """The run this one was retrained from, if it was."""
    return retrain_record(run).get("from")


def retrain_record(run: Run) -> dict[str, Any]:
    """retrain.json of a retrained run: where it came from, its feedback photos, copies, its stored comparison."""
    record = read_json(run_files(run).retrain, default={})
    return record if isinstance(record, dict) else {}


def stored_comparison(old: Run, new: Run, data_root: str | os.PathLike) -> dict[str, Any]:
    """compare_with_feedback, kept in the new run's retrain.json (it belongs to the retrain run: a reload, another
    page or another person sees the same result), computed again only when either run's analysis changed."""
    stamp = [old.run_id, old.analysis_mtime, new.analysis_mtime]
    record = retrain_record(new)
    kept = record.get("comparison")
    if isinstance(kept, dict) and kept.get("stamp") == stamp:
        return kept["result"]
    result = compare_with_feedback(old, new, data_root)
    if record.get("from") == old.run_id:
        write_json_atomic(run_files(new).retrain, {**record, "comparison": {"stamp": stamp, "result": result}})
    return result


def promotion_advice(result: dict[str, Any]) -> list[str]:
    """Why promoting the new run may be a mistake (empty: it is better, and not by chance), in words."""
    old, new = result["runs"][result["old"]], result["runs"][result["new"]]
    reasons = []
    change = new["accuracy"] - old["accuracy"]
    if change < 0:
        reasons.append(f"the new run is {-change:.3f} less accurate on the shared test photos")
    pair = result["pairs"][0]
    p_value = pair["mcnemar"]["p_value"]
    if p_value >= 0.05:
        reasons.append(f"the difference could be chance (McNemar p = {p_value:.3f})")
    if result.get("difference"):
        reasons.append(result["difference"])
    return reasons


def compare_with_feedback(old: Run, new: Run, data_root: str | os.PathLike) -> dict[str, Any]:
    """Old vs new: core.results.evaluation.compare's paired comparison on their test photos (the very same ones), and
    how each does on the feedback photos.

    Returns:
        `compare`'s result (core.results.evaluation.compare) with "old", "new" (the run ids) and "feedback"
        ({photos, old, new}).

    Raises:
        RetrainError: the two cannot be compared (no stored analysis, other test photos or labels); says why.
    """

    try:
        result = compare([load_result(old), load_result(new)])
    except (NotComparable, AnalysisMissing) as e:
        raise RetrainError(f"old {old.run_id[:6]} and new {new.run_id[:6]} cannot be compared: {e}") from e
    return {**result, "old": old.run_id, "new": new.run_id, "feedback": _on_feedback(old, new, data_root)}


def old_vs_new_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The comparison as table rows {metric, old, new, change}: overall, per class F1, then the feedback photos."""
    old, new = result["runs"][result["old"]], result["runs"][result["new"]]
    names = {"accuracy": "accuracy", "macro_f1": "macro F1", "weighted_f1": "weighted F1", "nll_after": "NLL"}
    rows = [{"metric": label, "old": old[key], "new": new[key]} for key, label in names.items()]
    f1_old, f1_new = result["per_class_f1"][result["old"]], result["per_class_f1"][result["new"]]
    rows += [{"metric": f"F1 {name}", "old": f1_old[name], "new": f1_new[name]} for name in result["classes"]]
    feedback = result["feedback"]
    if feedback.get("photos"):
        rows.append(
            {
                "metric": f"accuracy on the {feedback['photos']} feedback photos",
                "old": feedback["old"]["accuracy"],
                "new": feedback["new"]["accuracy"],
            }
        )
    return [{**row, "change": row["new"] - row["old"]} for row in rows]


def _on_feedback(old: Run, new: Run, data_root: str | os.PathLike) -> dict[str, Any]:

    photos = list_feedback(data_root, base_dataset(old.dataset_path))
    if not photos:
        return {"photos": 0}
    out: dict[str, Any] = {"photos": len(photos)}
    for label, run in (("old", old), ("new", new)):
        results = Predictor(run).predict([str(p.path) for p in photos], top_k=1)
        right = [r.ok and r.label == p.label for r, p in zip(results, photos, strict=True)]
        out[label] = {"accuracy": float(np.mean(right)), "right": int(sum(right))}
    return out
