"""How long a run will take, said before it starts: its plan's stages weighed by cost, priced at the pace of the
runs that finished on the same device.

A plan's stages and their relative costs are `core.runs.curves.plan_of`'s (a forward pass through the backbone is
the unit, a training step three, an epoch of the head on cached features a hundredth, decoding a twentieth),
scaled here by the input's area: a photo at 224 px costs (224/64)^2, about 12 times, one at 64 px through the
network. Each finished run gives (its weighted cost, its seconds from start to finish); the newest ones on this
device fit seconds = overhead + pace x cost (non-negative least squares: the overhead is the process start, the
model build and the reference fitted at the end, which a small run is mostly made of); with one run, or runs of
one cost, the pace is their median seconds per unit. Early stopping can end a run sooner.

A run whose backbone features an earlier run cached (same dataset, size, weights, seed and backbone: the feature
cache's key) skips decoding and extraction: in the walk, a second run with another learning rate took 24 s where
the first took 132 s. Such stages are left out of its plan, for the run being estimated and for the finished runs
that price it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from core.processes import JobState
from core.runs.curves import EXTRACTING, format_duration, plan, plan_of
from core.runs.record import Run
from core.settings.config import TrainConfig

RECENT_RUNS = 12  # the newest finished runs on the device that price an estimate
REFERENCE_SIZE = 224  # the input size whose forward pass is one unit of cost
DECODING = "decoding images"


@dataclass(frozen=True)
class Estimate:
    """A run's expected duration on a device, and what it was priced from."""

    seconds: float
    runs: int  # finished runs on the device it is priced from
    device: str
    features_cached: bool = False  # an earlier run cached its features: no decoding or extraction counted

    @property
    def text(self) -> str:
        """'about 4 min (from the pace of the 5 runs that finished on this device)'."""
        runs = "the run" if self.runs == 1 else f"the {self.runs} runs"
        cached = "; its features are cached by an earlier run, so none are extracted" if self.features_cached else ""
        return f"about {format_duration(self.seconds)} (from the pace of {runs} that finished on this device{cached})"


def weighted_cost(stages, image_size: int) -> float:
    """A plan's cost in forward passes at 224 px: the network's stages scale with the input's area."""
    area = (int(image_size) / REFERENCE_SIZE) ** 2
    return float(sum(stage.cost * (1.0 if stage.name == DECODING else area) for stage in stages))


def run_seconds(run: Run) -> float | None:
    """Seconds from start to finish of a run trained to its end here (a copy of another's run trained nothing)."""
    status = run.status
    if run.state is not JobState.DONE or run.reused_from or not status.started_at or not status.finished_at:
        return None
    seconds = float(status.finished_at) - float(status.started_at)
    return seconds if seconds > 0 else None


def feature_key(config: TrainConfig, fingerprint: str) -> tuple:
    """What names a run's cached backbone features: the dataset, the input, the backbone and its start."""
    return (fingerprint, config.image_size, config.cache_size, config.weights, config.seed, config.backbone)


def without_cached(stages, config: TrainConfig, fingerprint: str, earlier: list[Run]):
    """`stages` less decoding and the feature views a finished earlier run already cached (the same feature key)."""
    same = [
        run
        for run in earlier
        if run.state is JobState.DONE
        and run.train_config.feature_cache
        and feature_key(run.train_config, run.dataset_fingerprint) == feature_key(config, fingerprint)
    ]
    if not config.feature_cache or not fingerprint or not same:
        return list(stages), False
    views = max(run.train_config.augmented_views if run.train_config.augment == config.augment else 0 for run in same)
    kept = []
    for stage in stages:
        view = stage.name.rsplit("augmented view ", 1)[-1].rstrip(")") if "augmented view" in stage.name else None
        if stage.name in (DECODING, EXTRACTING) or (view is not None and int(view) <= views):
            continue
        kept.append(stage)
    return kept, True


def estimate(config: TrainConfig, images: int, runs: list[Run], device: str, fingerprint: str = "") -> Estimate | None:
    """How long a run of `config` on `images` photos (of the dataset with `fingerprint`) will take on `device` (a
    DeviceInfo label), priced from the newest runs that finished on it; None before any has."""
    finished = [run for run in runs if run.status.device == device and run_seconds(run)]
    finished.sort(key=lambda run: run.status.finished_at or 0.0, reverse=True)
    finished = finished[:RECENT_RUNS]
    if not finished or images <= 0:
        return None

    def before(run: Run) -> list[Run]:  # the runs that had finished when `run` started
        return [r for r in runs if (r.status.finished_at or float("inf")) <= (run.status.started_at or 0.0)]

    costs = np.array(
        [
            weighted_cost(
                without_cached(plan(run), run.train_config, run.dataset_fingerprint, before(run))[0],
                run.train_config.image_size,
            )
            for run in finished
        ]
    )
    seconds = np.array([run_seconds(run) for run in finished])
    keep = costs > 0
    if not keep.any():
        return None
    costs, seconds = costs[keep], seconds[keep]
    overhead, pace = _fit(costs, seconds)
    stages, cached = without_cached(plan_of(config, images), config, fingerprint, runs)
    return Estimate(overhead + pace * weighted_cost(stages, config.image_size), len(costs), device, cached)


def _fit(costs: np.ndarray, seconds: np.ndarray) -> tuple[float, float]:
    """(overhead s, s per unit of cost): least squares with both >= 0 where the runs' costs differ enough."""
    from scipy.optimize import nnls  # heavy: scipy

    if len(costs) >= 2 and costs.max() > 1.5 * costs.min():
        (overhead, pace), _ = nnls(np.column_stack([np.ones_like(costs), costs]), seconds)
        if pace > 0:
            return float(overhead), float(pace)
    return 0.0, float(statistics.median(seconds / costs))
