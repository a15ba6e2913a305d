"""Batches of photos, for the CLI (`predict RUN FOLDER --csv OUT.csv`) and the Predict page (many
uploads or a zip): one row per file with the top-k labels and probabilities and the
out-of-distribution flag; a file that cannot be read gets a row with the reason, never a crash.
A multi-label run's rows (`label_rows`) hold each photo's labels instead, and every label's score.
"""

from __future__ import annotations

import csv
import io
import os
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.data.imaging import ImageError
from core.data.multilabel import text_of
from core.errors import InvalidInput
from core.results.probabilities.label_thresholds import figure
from core.serving.engine import Answer, Decoded, ServedModel
from core.serving.log import LogRecord, PredictionLog

MAX_ZIP_FILES = 5000
MAX_ZIP_BYTES = 1_000_000_000  # uncompressed; more is refused as a probable zip bomb
CHUNK = 32


@dataclass
class BatchItem:
    name: str
    answer: Answer | None = None
    decoded: Decoded | None = None
    error: str | None = None
    log_id: int | None = None
    seconds: float = 0.0  # decode + forward, this photo's share of its chunk


def expand_sources(sources: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, and every visible file under each folder (sorted): a non-image gets its own error row."""
    out: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            out += sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        else:
            out.append(path)
    return out


def zip_members(data: bytes) -> list[tuple[str, bytes]]:
    """The files in a zip (images and others alike, folders skipped), refusing archives too big to open safely.

    Raises:
        InvalidInput: not a zip, or over MAX_ZIP_FILES files / MAX_ZIP_BYTES uncompressed.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise InvalidInput("not a zip archive") from None
    infos = [i for i in archive.infolist() if not i.is_dir() and not Path(i.filename).name.startswith(".")]
    infos = [i for i in infos if "__MACOSX" not in i.filename]
    if len(infos) > MAX_ZIP_FILES:
        raise InvalidInput(f"the zip holds {len(infos)} files; at most {MAX_ZIP_FILES} are classified at once")
    total = sum(i.file_size for i in infos)
    if total > MAX_ZIP_BYTES:
        raise InvalidInput(f"the zip unpacks to {total / 1e6:.0f} MB, over the {MAX_ZIP_BYTES / 1e6:.0f} MB limit")
    return [(i.filename, archive.read(i)) for i in infos]


def predict_many(
    model: ServedModel,
    files: list[tuple[str, bytes | Path]],
    top_k: int = 3,
    log: PredictionLog | None = None,
    source: str = "cli",
    model_name: str | None = None,
    set_level: float | None = None,
    max_error: float | None = None,
) -> list[BatchItem]:
    """Classify files in chunks; unreadable ones get their reason. Logs each prediction when `log` is given.

    `set_level` (a level the run's prediction sets offer): each answer carries its conformal set too; `max_error`
    (checked by `ServedModel.check_max_error`): each answer says whether it is held back, and why."""
    items = []
    for start in range(0, len(files), CHUNK):
        started = time.perf_counter()
        chunk = []
        for name, data in files[start : start + CHUNK]:
            try:
                raw = data.read_bytes() if isinstance(data, Path) else data
                chunk.append(BatchItem(name, decoded=model.decode(raw, name)))
            except (ImageError, OSError) as e:
                reason = str(e) if isinstance(e, ImageError) else f"cannot read the file ({e.strerror or e})"
                chunk.append(BatchItem(name, error=reason))
        good = [item for item in chunk if item.decoded is not None]
        if good:
            pixels = np.stack([item.decoded.pixels for item in good])
            answers = model.predict_pixels(pixels, top_k, set_level, max_error)
            for item, answer in zip(good, answers, strict=True):
                item.answer = answer
            each = (time.perf_counter() - started) / len(chunk)
            for item in good:
                item.seconds = each
            if log is not None and not model.multilabel:  # the log keeps one class a photo
                latency = each * 1000
                ids = log.record(record_for(model, item, source, latency, model_name) for item in good)
                for item, row_id in zip(good, ids, strict=True):
                    item.log_id = row_id
        items += chunk
    return items


def record_for(
    model: ServedModel, item: BatchItem, source: str, latency_ms: float, name: str | None = None
) -> LogRecord:
    answer, decoded = item.answer, item.decoded
    assert answer is not None and decoded is not None
    return LogRecord.of_answer(name or model.run_id, model.run_id, source, answer, decoded, latency_ms)


SMALL_SHARE = 0.5  # a photo whose shorter side is under half the model's input is enlarged beyond recognition


def size_note(decoded: Decoded | None, image_size: int) -> str | None:
    """A warning for a photo far smaller than the model's input (a 1-pixel image got 'bees (70.5%)'), else None."""
    if decoded is None or decoded.width is None or decoded.height is None:
        return None
    shorter = min(decoded.width, decoded.height)
    if shorter >= SMALL_SHARE * image_size:
        return None
    return (
        f"only {decoded.width}x{decoded.height} px, far below the {image_size} px the model looks at: it was "
        "enlarged to fit, so the answer says little about what is in it"
    )


SET_SEPARATOR = " | "  # between the class names of a prediction set in a table cell


def table_rows(items: list[BatchItem], top_k: int, image_size: int | None = None) -> list[dict[str, Any]]:
    """One flat row per file: path, label_i / probability_i for i in 1..k, the prediction set and its level (when
    asked for, and whether its promise reaches the photo), answered and why not (when a maximum error was asked or
    the run has class thresholds), ood flag and score, a size warning (with `image_size`), error."""
    rows = []
    with_sets = any(item.answer is not None and item.answer.prediction_set is not None for item in items)
    held = any(item.answer is not None and item.answer.abstained is not None for item in items)
    for item in items:
        row: dict[str, Any] = {"path": item.name}
        top = item.answer.top if item.answer else []
        for i in range(top_k):
            row[f"label_{i + 1}"] = top[i][0] if i < len(top) else ""
            row[f"probability_{i + 1}"] = round(top[i][1], 6) if i < len(top) else ""
        answer = item.answer
        if with_sets:
            chosen = None if answer is None else answer.prediction_set
            row["prediction_set"] = "" if chosen is None else SET_SEPARATOR.join(chosen)
            row["set_size"] = "" if chosen is None else len(chosen)
            row["set_level"] = "" if chosen is None else answer.set_level
            # False: the photo looks like none of the classes, the set's promise does not reach it
            row["set_trusted"] = "" if chosen is None else answer.set_trusted
        if held:  # answer only when sure, or a class's saved threshold: given or held back, and why
            row["answered"] = "" if answer is None or answer.abstained is None else not answer.abstained
            row["held_back_because"] = (answer.abstain_reason or "") if answer is not None else ""
        row["out_of_distribution"] = "" if answer is None or answer.ood_flag is None else bool(answer.ood_flag)
        row["ood_score"] = "" if answer is None or answer.ood_score is None else round(answer.ood_score, 4)
        if image_size is not None:
            row["warning"] = size_note(item.decoded, image_size) or ""
        row["error"] = item.error or ""
        rows.append(row)
    return rows


def label_rows(items: list[BatchItem], classes: list[str], image_size: int | None = None) -> list[dict[str, Any]]:
    """A multi-label run's flat row per file: path, labels (those at or above their thresholds joined by "|"; empty:
    none of these), none_of_these, score_<label> for every label, a size warning (with `image_size`), error."""
    rows = []
    for item in items:
        answer = item.answer
        scores = answer.scores if answer is not None else {}
        row: dict[str, Any] = {
            "path": item.name,
            "labels": "" if answer is None else text_of(answer.labels or []),
            "none_of_these": "" if answer is None else not answer.labels,
            **{f"score_{name}": figure(scores[name]) if answer is not None else "" for name in classes},
        }
        if image_size is not None:
            row["warning"] = size_note(item.decoded, image_size) or ""
        row["error"] = item.error or ""
        rows.append(row)
    return rows


def csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()
