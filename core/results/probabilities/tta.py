"""Test-time augmentation, used only where it measurably helps: validation decides, McNemar says if the gain is real.

A photo is classified in a few fixed views (itself, mirrored, and two zoomed corners, the kinds of change
the run's own augmentation and the decoded cache's crop margin make) and the views' calibrated probabilities
are averaged. That costs one forward pass per view, and it does not always help: a random-start network or a
model that never saw mirrored flowers can get worse. So `measure` evaluates the validation and test splits with
and without, reports accuracy, macro F1 and NLL, McNemar's exact test between the two (photos one gets right
and the other wrong) and the time per photo, and the run remembers whether it helped **on validation**
(higher accuracy, McNemar p < 0.05). Predict and the model server average the views only for such a run, and
say so; the test split's figures say how that choice holds on photos it did not see.

`tta.json` holds the report, `tta.npz` the averaged probabilities of each split (prediction sets fitted on a
run that uses the views are fitted on those).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from core.data.imaging import center_crop
from core.errors import Cancelled
from core.fileio import atomic_path, read_versioned, write_json_atomic
from core.inference import ModelMissing
from core.paths import cache_dir
from core.progress import StageCallback
from core.results.evaluation.compare import mcnemar
from core.results.probabilities.calibration import nll, run_temperature, stored_temperature
from core.runs.analysis import RunAnalysis, softmax
from core.runs.files import run_files
from core.runs.record import Run
from core.runs.split import run_split
from core.runtimes.choice import accelerated

VIEWS = ("as it is", "mirrored", "zoomed top-left", "zoomed bottom-right")
ZOOM = 7 / 8  # a zoomed view keeps this share of the side, resized back to the input size
HELPS_P = 0.05  # the validation gain must be this unlikely under 'no difference' (McNemar, two-sided)
BATCH = 32
TTA_VERSION = 1


class MeasureStopped(Cancelled):
    """`measure` was asked to stop (what it had measured is dropped)."""


def views_of(batch: np.ndarray) -> list[np.ndarray]:
    """The fixed views of an (N, S, S, 3) batch, each (N, S, S, 3) float32; the first is the batch itself."""
    import keras  # heavy: keras

    batch = np.asarray(batch, dtype=np.float32)
    size = batch.shape[1]
    keep = max(1, round(size * ZOOM))
    corners = (batch[:, :keep, :keep], batch[:, size - keep :, size - keep :])
    zoomed = [
        keras.ops.convert_to_numpy(keras.ops.image.resize(corner, (size, size), interpolation="bilinear"))
        for corner in corners
    ]
    return [batch, batch[:, :, ::-1], *[np.asarray(z, dtype=np.float32) for z in zoomed]]


def averaged(view_logits: list[np.ndarray], temperature: float) -> np.ndarray:
    """The mean over views of each view's calibrated probabilities."""
    return np.mean([softmax(z, temperature) for z in view_logits], axis=0).astype(np.float32)


@dataclass
class SplitFigures:
    """One split with and without the views."""

    photos: int
    accuracy_without: float
    accuracy_with: float
    macro_f1_without: float
    macro_f1_with: float
    nll_without: float
    nll_with: float
    better: int  # photos right with the views and wrong without
    worse: int  # the reverse
    p_value: float  # McNemar's exact test

    @classmethod
    def of(cls, single: np.ndarray, views: np.ndarray, labels: np.ndarray) -> SplitFigures:
        from sklearn.metrics import f1_score  # heavy: sklearn

        labels = np.asarray(labels, dtype=np.int64)
        a, b = single.argmax(axis=1), views.argmax(axis=1)
        test = mcnemar(a == labels, b == labels)
        f1 = lambda p: float(f1_score(labels, p, average="macro", zero_division=0))  # noqa: E731
        return cls(
            photos=len(labels),
            accuracy_without=float((a == labels).mean()) if len(labels) else 0.0,
            accuracy_with=float((b == labels).mean()) if len(labels) else 0.0,
            macro_f1_without=f1(a),
            macro_f1_with=f1(b),
            nll_without=nll(single, labels),
            nll_with=nll(views, labels),
            better=test["c"],
            worse=test["b"],
            p_value=test["p_value"],
        )

    @property
    def gain(self) -> float:
        return self.accuracy_with - self.accuracy_without


@dataclass
class TTAReport:
    """What test-time augmentation did for a run, and whether its predictors use it."""

    views: list[str]
    validation: SplitFigures
    test: SplitFigures
    helped: bool  # on validation: higher accuracy and McNemar p < HELPS_P
    reason: str
    seconds_per_photo_without: float
    seconds_per_photo_with: float
    temperature: float
    split_hash: str
    version: int = TTA_VERSION

    def summary(self) -> dict[str, Any]:
        """`core evaluate --tta --json`: the test split's figures at the top, validation's beside them."""

        def figures(part: SplitFigures) -> dict[str, Any]:
            return {
                "photos": part.photos,
                "accuracy": {"without": part.accuracy_without, "with": part.accuracy_with},
                "macro_f1": {"without": part.macro_f1_without, "with": part.macro_f1_with},
                "nll": {"without": part.nll_without, "with": part.nll_with},
                "mcnemar": {"better": part.better, "worse": part.worse, "p_value": part.p_value},
                "p_value": part.p_value,
            }

        return {
            "views": self.views,
            **figures(self.test),
            "validation": figures(self.validation),
            "helped_on_validation": self.helped,
            "used_by_predict": self.helped,
            "reason": self.reason,
            "seconds_per_photo": {"without": self.seconds_per_photo_without, "with": self.seconds_per_photo_with},
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TTAReport:
        data = dict(data)
        data["validation"] = SplitFigures(**data["validation"])
        data["test"] = SplitFigures(**data["test"])
        return cls(**data)


def decide(validation: SplitFigures) -> tuple[bool, str]:
    """Whether the run's predictors average the views: only when validation shows a gain chance hardly explains."""
    gain, p = validation.gain, validation.p_value
    p_text = f"p = {p:.3f}" if p >= 0.001 else "p < 0.001"
    if gain > 0 and p < HELPS_P:
        return True, (
            f"on validation the views raised accuracy by {gain * 100:.1f} points ({validation.better} photos better, "
            f"{validation.worse} worse; McNemar {p_text}): Predict and the server use them"
        )
    if gain > 0:
        return False, (
            f"on validation the views raised accuracy by {gain * 100:.1f} points, but {validation.better} photos "
            f"better and {validation.worse} worse is within chance (McNemar {p_text}): not used, it would cost "
            f"{len(VIEWS)} forward passes a photo for a gain not shown"
        )
    if gain == 0:
        return False, "on validation the views changed no photo's answer for the better overall: not used"
    return False, f"on validation the views lowered accuracy by {-gain * 100:.1f} points: not used"


def measure(
    run: Run,
    data_root: str | os.PathLike,
    progress: StageCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TTAReport:
    """Evaluate the run's validation and test photos with and without the views; store and return the report."""
    from core.network.graph import features_and_logits_model  # heavy: keras
    from core.network.model import load_classifier  # heavy: keras

    if not run.has_model:
        raise ModelMissing(run.run_id, run.state)
    analysis = RunAnalysis.load(run.directory)
    decoding = (lambda d, t: progress("decoding images", d, t)) if progress else None
    data = run_split(run, cache_dir(data_root), progress=decoding)
    model = accelerated(
        features_and_logits_model(load_classifier(run_files(run).model)), cache_root=cache_dir(data_root)
    )
    size, temperature = run.train_config.image_size, run_temperature(run)
    parts = {"val": analysis.val, "test": analysis.test}
    probabilities: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    single_seconds = views_seconds = 0.0
    total = sum(len(p.positions) for p in parts.values())
    done = 0
    for name, part in parts.items():
        singles, views = [], []
        for start in range(0, len(part.positions), BATCH):
            if should_stop and should_stop():
                raise MeasureStopped("stopped on request")
            chosen = part.positions[start : start + BATCH]
            batch = np.ascontiguousarray(center_crop(data.cache.read(chosen), size))
            logits = []
            for v, view in enumerate(views_of(batch)):
                began = time.perf_counter()
                _, z = model.predict_on_batch(view)
                took = time.perf_counter() - began
                single_seconds += took if v == 0 else 0.0
                views_seconds += took
                logits.append(np.asarray(z, dtype=np.float32))
            singles.append(softmax(logits[0], temperature))
            views.append(averaged(logits, temperature))
            done += len(chosen)
            if progress:
                progress("classifying each photo in 4 views", done, total)
        empty = np.zeros((0, len(analysis.classes)), dtype=np.float32)
        probabilities[name] = (
            np.concatenate(singles) if singles else empty,
            np.concatenate(views) if views else empty,
        )
    validation = SplitFigures.of(*probabilities["val"], analysis.val.labels)
    test = SplitFigures.of(*probabilities["test"], analysis.test.labels)
    helped, reason = decide(validation)
    report = TTAReport(
        views=list(VIEWS),
        validation=validation,
        test=test,
        helped=helped,
        reason=reason,
        seconds_per_photo_without=single_seconds / max(1, total),
        seconds_per_photo_with=views_seconds / max(1, total),
        temperature=temperature,
        split_hash=analysis.split_hash,
    )
    save(report, {name: pair[1] for name, pair in probabilities.items()}, run.directory)
    return report


def save(report: TTAReport, averaged_probabilities: dict[str, np.ndarray], run_dir: str | os.PathLike) -> None:
    with atomic_path(run_files(run_dir).tta_arrays) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{f"{name}_probabilities": value for name, value in averaged_probabilities.items()})
    write_json_atomic(run_files(run_dir).tta, report.to_dict())


def load(run_dir: str | os.PathLike) -> TTAReport | None:
    """The run's stored report, or None (never measured, or from another version)."""
    return read_versioned(run_files(run_dir).tta, TTA_VERSION, TTAReport.from_dict)


def used_by(run_dir: str | os.PathLike) -> TTAReport | None:
    """The report when the run's predictors average the views (it helped on validation), else None."""
    report = load(run_dir)
    return report if report is not None and report.helped else None


def served_probabilities(run_dir: str | os.PathLike, analysis: RunAnalysis) -> tuple[np.ndarray, np.ndarray, int]:
    """(validation, test) probabilities as the run's predictors make them, and how many views they average.

    The views' averages where the run uses them (and they were measured on these very splits), else the
    calibrated softmax of the stored logits.
    """
    report = used_by(run_dir)
    path = run_files(run_dir).tta_arrays
    if report is not None and report.split_hash == analysis.split_hash and path.exists():
        with np.load(path, allow_pickle=False) as data:
            return data["val_probabilities"], data["test_probabilities"], len(report.views)
    temperature = stored_temperature(run_dir) or 1.0
    return softmax(analysis.val.logits, temperature), softmax(analysis.test.logits, temperature), 1
