"""How a run holds up: its accuracy on its test photos under the 15 ImageNet-C corruptions at 5 severities
(`core.results.evaluation.corruptions`), kept with the run (`robustness.json`).

Figures, after Hendrycks & Dietterich (2019), with E the error (1 - accuracy):

  drop            clean accuracy minus the mean accuracy over a corruption's 5 severities
  CE (corruption error)  the mean error over its 5 severities; mCE the mean of CE over the 15 corruptions
  relative CE     CE minus the clean error: what the corruption adds (the paper's "relative" error, before it
                  divides by AlexNet's; Flora has no AlexNet)
  CE against a baseline  sum_s E(this run) / sum_s E(baseline run) per corruption, the paper's normalisation with
                  another run (say the same settings without augmentation) in AlexNet's place (`against`)

Each photo is corrupted as the model sees it (its image_size square) with a generator seeded by photo, corruption
and severity, so two runs of the same image size see the very same corrupted pictures. A large test split is
sampled (MAX_PHOTOS, stratified by class, seeded), and it costs 1 + 75 forward passes a photo: `estimate` says how
long before it starts. Accuracy is the single view's (test-time augmentation left out).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from core.data.imaging import center_crop
from core.data.ingest import find_cache
from core.device import describe
from core.errors import Cancelled, InvalidInput
from core.fileio import read_versioned, write_json_atomic
from core.network.layer_names import PROBABILITIES
from core.paths import cache_dir
from core.progress import StageCallback
from core.results.evaluation import robustness_spread as spread
from core.results.evaluation.chance import chance_words, no_better_than_chance
from core.results.evaluation.corruptions import CORRUPTIONS, FAMILIES, SEVERITIES, corrupt
from core.runs.analysis import AnalysisMissing, RunAnalysis
from core.runs.curves import format_duration
from core.runs.files import run_files
from core.runs.record import Run
from core.runs.split import run_split
from core.runtimes.choice import accelerated

ROBUSTNESS_VERSION = 1
MAX_PHOTOS = 200  # test photos measured (a stratified sample of more): 76 passes each
BATCH = 64
# Seconds per photo and pass (corrupting it, then a forward pass of ResNet-50) on these 2 cores, idle: about 0.013 s
# at 64 px (7 ms corrupting, 6 ms forward) and 0.074 s at 224 px (41 + 33 ms), so a + b x (size / 224)^2
# (docs/PERFORMANCE.md). Used before any measurement on the device, and to carry one to another size.
PACE_FIXED, PACE_AREA = 0.0073, 0.0667
REFERENCE_SIZE = 224
# Before the first pass: reading the test photos from the decoded cache and loading the model (TensorFlow's first
# graph with it). About 25 s in the walk of issue 42 on these 2 busy cores, which the first guess left out.
SETUP_GUESS = 25.0
# Decoding a photo into the cache when the dataset is not decoded at the run's size yet: 267 flower photos in 0.8 s
# on these 2 cores (simplejpeg, several processes); rounded up for larger photos.
DECODE_PACE = 0.005
# Said with the estimate before anything was measured here: the pace is the idle machine's, and walk 42 took twice
# the estimate while other work shared these 2 cores.
FIRST_GUESS = (
    "a first guess from an idle machine, nothing measured on this device yet: other work on the same cores, a training "
    "or tests, can make it twice as long or more; the progress line then shows the time left as measured"
)
FROST_NOTE = (
    "frost blends a generated ice texture, not the reference's frost photographs: not comparable with published "
    "ImageNet-C frost figures"
)


class NotComparable(InvalidInput):
    """Two reports measured on other test photos or at another size: their errors cannot be divided."""


class RobustnessStopped(Cancelled):
    """The measurement was stopped on request."""


@dataclass
class RobustnessReport:
    """A run's accuracy under every corruption and severity on the same test photos."""

    run_id: str
    classes: list[str]
    image_size: int
    photos: int
    test_photos: int  # in the run's test split (photos <= this: a sample)
    photos_digest: str  # which photos: two runs are compared only on the same ones
    clean_accuracy: float
    accuracy: dict[str, list[float]]  # corruption -> accuracy at severities 1..5
    seconds: float
    seconds_per_pass: float  # per photo and pass: corrupting it and classifying it
    device: str
    created: float
    notes: list[str] = field(default_factory=list)
    setup_seconds: float | None = None  # before the first pass: decoding or reading the photos, loading the model
    # each photo's answers, 1 right, 0 wrong (core.results.evaluation.robustness_spread): "clean" a string, each
    # corruption a string per severity; None in reports measured before they were kept (no interval then)
    right: dict[str, Any] | None = None
    version: int = ROBUSTNESS_VERSION

    def mean_accuracy(self, corruption: str) -> float:
        return float(np.mean(self.accuracy[corruption]))

    def drop(self, corruption: str) -> float:
        return self.clean_accuracy - self.mean_accuracy(corruption)

    def corruption_error(self, corruption: str) -> float:
        return 1.0 - self.mean_accuracy(corruption)

    def relative_error(self, corruption: str) -> float:
        return self.corruption_error(corruption) - (1.0 - self.clean_accuracy)

    @property
    def mce(self) -> float:
        return float(np.mean([self.corruption_error(c) for c in CORRUPTIONS]))

    @property
    def relative_mce(self) -> float:
        return float(np.mean([self.relative_error(c) for c in CORRUPTIONS]))

    def drop_interval(self, corruption: str | None = None) -> tuple[float, float] | None:
        """The 95% paired-bootstrap interval of the accuracy lost to `corruption` (over its 5 severities), or to all
        15 (None); None where the report kept no answers per photo."""
        if not self.right:
            return None
        clean = spread.decode(self.right["clean"])
        names = [corruption] if corruption else list(CORRUPTIONS)
        corrupted = np.stack([spread.decode(text) for c in names for text in self.right[c]], axis=1)
        return spread.drop_interval(clean, corrupted)

    def against(self, baseline: RobustnessReport) -> dict[str, Any]:
        """CE normalised by `baseline`'s per corruption (sum of errors over severities, divided), and their mean.

        Raises:
            NotComparable: the two were not measured on the same photos at the same size.
        """
        if (baseline.photos_digest, baseline.image_size) != (self.photos_digest, self.image_size):
            raise NotComparable(
                f"runs {self.run_id} and {baseline.run_id} were not measured on the same test photos at the same "
                "size: their corruption errors cannot be divided"
            )
        ratios = {}
        for c in CORRUPTIONS:
            ours, theirs = sum(1 - a for a in self.accuracy[c]), sum(1 - a for a in baseline.accuracy[c])
            ratios[c] = ours / theirs if theirs > 0 else None
        shown = [r for r in ratios.values() if r is not None]
        return {"baseline": baseline.run_id, "ce": ratios, "mce": float(np.mean(shown)) if shown else None}

    def rows(self) -> list[dict[str, Any]]:
        """One row per corruption: its family, accuracy per severity, mean, drop, CE and relative CE."""
        family_of = {c: family for family, members in FAMILIES.items() for c in members}
        return [
            {
                "corruption": c,
                "family": family_of[c],
                **{f"severity {s}": self.accuracy[c][s - 1] for s in SEVERITIES},
                "mean accuracy": self.mean_accuracy(c),
                "drop": self.drop(c),
                "CE": self.corruption_error(c),
                "relative CE": self.relative_error(c),
                **dict(zip(("drop low", "drop high"), self.drop_interval(c) or (None, None), strict=True)),
            }
            for c in CORRUPTIONS
        ]

    @property
    def near_chance(self) -> bool:
        """Whether the clean accuracy's 95% interval includes chance (1 / classes): then no figure here shows
        robustness."""
        return no_better_than_chance(self.clean_accuracy, self.photos, len(self.classes))

    def words(self) -> str:
        """The result in a sentence or two (the direction by its sign), the worst corruptions named; first, where the
        clean accuracy cannot be told from chance, that these figures cannot show robustness."""
        worst = sorted(CORRUPTIONS, key=self.mean_accuracy)[:3]
        named = ", ".join(f"{c.replace('_', ' ')} ({self.mean_accuracy(c):.2f})" for c in worst)
        where = (
            f"On its {self.photos} test photos"
            if self.photos == self.test_photos
            else f"On {self.photos} of its {self.test_photos} test photos (a sample keeping each class's share)"
        )
        corrupted = 1 - self.mce
        points = round((corrupted - self.clean_accuracy) * 100)
        moves = "stays at about" if points == 0 else "rises to" if points > 0 else "falls to"
        interval = self.drop_interval()
        chance = interval is not None and interval[0] <= 0 <= interval[1]
        said = (
            f"{where}, accuracy {self.clean_accuracy:.2f} clean {moves} {corrupted:.2f} on average under the 15 "
            f"corruptions (mean corruption error {self.mce:.0%}, {_points(self.relative_mce)} the clean error"
            + (f"; accuracy lost: {spread.interval_words(*interval)}" if interval is not None else "")
            + ")."
            + ("" if self.near_chance or chance else f" Hardest: {named}.")  # a guess's 'hardest' is noise (walk 41)
        )
        if self.near_chance:
            said = (
                f"This model is no better than chance on these photos: its "
                f"{chance_words(self.clean_accuracy, self.photos, len(self.classes))}. These figures cannot show "
                f"robustness: a model that guesses has nothing to lose, and any change is within what chance moves. "
                f"{said}"
            )
        return said

    def summary(self) -> dict[str, Any]:
        """What `core robustness --json` prints."""
        return {
            **{k: v for k, v in asdict(self).items() if k not in ("accuracy", "right")},  # right: per photo, large
            "corruptions": list(CORRUPTIONS),
            "severities": list(SEVERITIES),
            "accuracy": self.accuracy,
            "mce": self.mce,
            "relative_mce": self.relative_mce,
            "drop_interval": self.drop_interval(),
            "by_corruption": self.rows(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RobustnessReport:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def _points(difference: float) -> str:
    """'7 points above', '1 point below', 'about the same as': a weak model can do better on corrupted photos."""
    points = round(difference * 100)
    if points == 0:
        return "about the same as"
    unit = "point" if abs(points) == 1 else "points"
    return f"{abs(points)} {unit} {'above' if points > 0 else 'below'}"


def save(report: RobustnessReport, run_dir: str | os.PathLike) -> None:
    write_json_atomic(run_files(run_dir).robustness, asdict(report))


def load(run_dir: str | os.PathLike) -> RobustnessReport | None:
    return read_versioned(run_files(run_dir).robustness, ROBUSTNESS_VERSION, RobustnessReport.from_dict)


def sample(labels: np.ndarray, limit: int = MAX_PHOTOS, seed: int = 0) -> np.ndarray:
    """Row numbers of at most `limit` photos, each class keeping its share (at least one photo), sorted."""
    labels = np.asarray(labels)
    if len(labels) <= limit:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        take = max(1, round(limit * len(rows) / len(labels)))
        chosen.append(rng.choice(rows, min(take, len(rows)), replace=False))
    return np.sort(np.concatenate(chosen))[:limit] if chosen else np.arange(0)


@dataclass(frozen=True)
class Cost:
    """What a measurement will cost, said before it starts."""

    photos: int
    passes: int  # photo passes: (1 clean + 75 corrupted) x photos
    seconds: float
    how: str  # where the pace comes from
    setup: float = 0.0  # seconds before the first pass (reading the photos, loading the model), in `seconds`
    decoding: int = 0  # photos to decode first (the dataset is not decoded at the run's size yet), in `setup`

    @property
    def text(self) -> str:
        first = f"decode the dataset's {self.decoding:,} photos, " if self.decoding else ""
        return (
            f"{self.photos} test photos x 76 passes (clean, and 15 corruptions at 5 severities): about "
            f"{format_duration(self.seconds)}, of which about {format_duration(self.setup)} to {first}read the "
            f"photos and load the model first ({self.how})"
        )


def estimate(
    run: Run,
    others: list[Run] | None = None,
    limit: int = MAX_PHOTOS,
    data_root: str | os.PathLike | None = None,
    device: str | None = None,
) -> Cost:
    """How long `measure` will take for `run`, priced at the pace of earlier measurements on this device (scaled by
    the input's area), else at this project's measured default; with the time before the first pass (earlier
    measurements' own, else SETUP_GUESS), and, with `data_root`, decoding the dataset where it is not decoded at the
    run's size yet. `device`: the device's label where the caller knows it (`describe` imports the framework)."""
    device = device or describe().label
    size = run.train_config.image_size
    test = _test_size(run)
    photos = min(test, limit) if test else limit
    paces, setups = [], []  # earlier measurements on this device: pace against the idle default, seconds to start
    for other in others or []:
        found = load(other.directory)
        if found is not None and found.device == device and found.seconds_per_pass > 0:
            paces.append(found.seconds_per_pass / default_pace(found.image_size))
            if found.setup_seconds is not None:
                setups.append(found.setup_seconds)
    if paces:
        pace, how = float(np.median(paces)) * default_pace(size), f"from {len(paces)} earlier measurement(s) here"
    else:
        pace, how = default_pace(size), FIRST_GUESS
    setup = float(np.median(setups)) if setups else SETUP_GUESS
    decoding = 0
    if (
        data_root is not None
        and find_cache(cache_dir(data_root), run.dataset_fingerprint, run.train_config.cache_size) is None
    ):
        decoding = run.dataset_images or photos
        setup += decoding * DECODE_PACE
    passes = photos * (1 + len(CORRUPTIONS) * len(SEVERITIES))
    return Cost(photos, passes, passes * pace + setup, how, setup, decoding)


def time_left(since: float, done: int, total: int) -> str:
    """' · about 1 min 10 s left', from the pace of the `done` steps measured since `since` (nothing before the
    first step ends: the estimate before the start is a guess, this is what the device does now, busy or not)."""
    if done <= 0:
        return ""
    left = (time.perf_counter() - since) / done * (total - done)
    return f" · about {format_duration(left)} left"


def default_pace(image_size: int) -> float:
    """Seconds per photo and pass at `image_size` on the idle machine this was measured on."""
    return PACE_FIXED + PACE_AREA * (image_size / REFERENCE_SIZE) ** 2


def _test_size(run: Run) -> int:

    try:
        return len(RunAnalysis.load(run.directory).test.labels)
    except AnalysisMissing:
        return 0


def measure(
    run: Run,
    data_root: str | os.PathLike,
    progress: StageCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    limit: int = MAX_PHOTOS,
) -> RobustnessReport:
    """Classify the run's test photos (a sample of at most `limit`) clean and under every corruption and severity;
    store and return the report.

    Raises:
        AnalysisMissing: the run has no analysis arrays (its test photos' positions).
        RobustnessStopped: `should_stop` said so.
    """
    from core.network.graph import inference_model  # heavy: keras
    from core.network.model import load_classifier  # heavy: keras

    started = time.perf_counter()
    analysis = RunAnalysis.load(run.directory)
    decoding = (lambda d, t: progress("decoding images", d, t)) if progress else None
    data = run_split(run, cache_dir(data_root), progress=decoding)
    if progress:
        progress("loading the model", 0, 1)
    rows = sample(analysis.test.labels, limit)
    labels = np.asarray(analysis.test.labels)[rows]
    size = run.train_config.image_size
    pixels = np.ascontiguousarray(center_crop(data.cache.read(np.asarray(analysis.test.positions)[rows]), size))
    # 75 corrupted copies of the test photos: the frozen forward pass through the runtime chosen here (core.runtimes)
    graph = inference_model(load_classifier(run_files(run).model), outputs=(PROBABILITIES,), share_backbone=True)
    model = accelerated(graph, cache_root=cache_dir(data_root), sample=pixels[:4], batch=BATCH)
    paths = [analysis.test.paths[i] for i in rows]

    answers: dict[str, Any] = {}

    def accuracy(images: np.ndarray, name: str) -> float:
        right = []
        for start in range(0, len(images), BATCH):
            out = np.asarray(model.predict_on_batch(images[start : start + BATCH].astype(np.float32)))
            right.append(out.argmax(axis=1) == labels[start : start + BATCH])
        right = np.concatenate(right) if right else np.zeros(0, dtype=bool)
        if name == "clean":
            answers[name] = spread.encode(right)
        else:
            answers.setdefault(name, []).append(spread.encode(right))
        return float(right.mean()) if len(right) else 0.0

    total = len(CORRUPTIONS) * len(SEVERITIES)
    clean = accuracy(pixels, "clean")  # its first batch builds the model's graph: setup, not a pass's pace
    passes_started = time.perf_counter()
    grid: dict[str, list[float]] = {}
    for k, name in enumerate(CORRUPTIONS):
        grid[name] = []
        for severity in SEVERITIES:
            if should_stop and should_stop():
                raise RobustnessStopped("stopped on request")
            if progress:
                step = k * len(SEVERITIES) + severity - 1
                progress(
                    f"{name.replace('_', ' ')}, severity {severity}{time_left(passes_started, step, total)}",
                    step,
                    total,
                )
            corrupted = np.stack(
                [
                    corrupt(image, name, severity, np.random.default_rng([int(rows[i]), k, severity]))
                    for i, image in enumerate(pixels)
                ]
            )
            grid[name].append(accuracy(corrupted, name))
    if progress:
        progress("done", total, total)
    seconds = time.perf_counter() - started
    report = RobustnessReport(
        run_id=run.run_id,
        classes=list(run.classes),
        image_size=size,
        photos=len(rows),
        test_photos=len(analysis.test.labels),
        photos_digest=hashlib.sha256("\n".join(paths).encode()).hexdigest()[:16],
        clean_accuracy=clean,
        accuracy=grid,
        seconds=seconds,
        seconds_per_pass=(time.perf_counter() - passes_started) / max(1, len(rows) * total),
        device=describe().label,
        created=time.time(),
        notes=[FROST_NOTE],
        setup_seconds=passes_started - started,
        right=answers,
    )
    save(report, run.directory)
    return report
