"""Does Flora's label-next strategy beat labelling at random on *this* data? Measured, not promised.

The labels of an already-labelled pool (a run's training split) are hidden; each seed starts from START_PER_CLASS
photos per class drawn at random (the same start for every strategy), and labels batch by batch, once with each
strategy, the head (core.results.feature_head) retrained on the labelled rows after each batch and scored on the
validation split. Every strategy labels on the same schedule (a batch, growing by a fifth of what is labelled once
that is larger, so a big pool takes tens of steps, not thousands), so the curves share their x values.

The target is TARGET_FRACTION of the accuracy the head reaches with every label of the pool; a strategy's
`labels_to_target` is the median over seeds of the first count at which it reached the target (None: never, within
the pool). The saving is random's median minus Flora's, and it is called measurable only when every seed of the
better strategy needed fewer labels than every seed of the other (with 3 seeds, the ranges do not overlap). When
random does better, the verdict says so; it also says how many validation photos wide the target band is.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from core.errors import Cancelled, InvalidInput
from core.results.label_next.picking import RANDOM, STRATEGIES, STRATEGY, pick

TARGET_FRACTION = 0.95
START_PER_CLASS = 2
SEEDS = 3
MAX_STEPS = 40


class SimulationStopped(Cancelled):
    """The simulation was stopped on request."""


def schedule(start: int, pool: int, batch: int) -> list[int]:
    """The label counts each strategy is measured at: start, then a batch more (or a fifth more, when larger)."""
    counts = [start]
    while counts[-1] < pool and len(counts) < MAX_STEPS:
        counts.append(min(pool, counts[-1] + max(batch, counts[-1] // 5)))
    return counts


def starting_rows(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """`per_class` random rows of each class present (fewer where a class has fewer)."""
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        chosen.append(rng.choice(members, min(per_class, len(members)), replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def simulate(
    pool_x: np.ndarray,
    pool_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    num_classes: int,
    seeds: int = SEEDS,
    batch: int | None = None,
    start_per_class: int = START_PER_CLASS,
    target_fraction: float = TARGET_FRACTION,
    strategies: tuple[str, ...] = STRATEGIES,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Label curves per strategy over `seeds` seeds on reduced features (see the module). Returns the JSON object
    `label-next --simulate --json` prints."""
    from core.results.feature_head import accuracy_and_macro_f1, fit_head  # heavy: sklearn

    started = time.perf_counter()
    pool_y = np.asarray(pool_y, dtype=np.int64)
    val_y = np.asarray(val_y, dtype=np.int64)
    if not len(val_y):
        raise InvalidInput("the simulation needs labelled validation photos to measure accuracy on")
    if len(np.unique(pool_y)) < 2:
        raise InvalidInput("the simulation needs labelled photos of at least two classes")
    batch = batch or max(10, min(num_classes, 100))

    def scored(rows: np.ndarray, seed: int, warm=None):
        """The head on `rows` (started from `warm`'s weights) and its validation accuracy."""
        head = fit_head(pool_x[rows], pool_y[rows], num_classes, seed=seed, warm=warm)
        return head, accuracy_and_macro_f1(val_y, head.predict(val_x), num_classes)[0]

    full = scored(np.arange(len(pool_y)), 0)[1]
    target = target_fraction * full
    start = len(starting_rows(pool_y, start_per_class, np.random.default_rng(0)))
    counts = schedule(start, len(pool_y), batch)
    # Seeds and strategies advance in lockstep, so the curves share their x values; the schedule ends one step
    # after every seed of every strategy reached the target (what follows would only repeat it).
    states = []
    for seed in range(seeds):
        first = starting_rows(pool_y, start_per_class, np.random.default_rng(seed))
        for strategy in strategies:
            labelled = np.zeros(len(pool_y), dtype=bool)
            labelled[first] = True
            states.append(
                {"seed": seed, "strategy": strategy, "labelled": labelled, "curve": [], "hit": None, "head": None}
            )
    done_steps = 0
    for step, count in enumerate(counts):
        for state in states:
            if should_stop and should_stop():
                raise SimulationStopped("the simulation was stopped")
            labelled, seed, strategy = state["labelled"], state["seed"], state["strategy"]
            need = count - int(labelled.sum())
            if need > 0:
                pending = np.flatnonzero(~labelled)
                probabilities = None
                if strategy != RANDOM:  # the head scored at the last step is the one that picks the next batch
                    probabilities = state["head"].probabilities(pool_x[pending])
                chosen = pick(strategy, pool_x[pending], probabilities, need, seed * 1000 + step)
                labelled[pending[chosen]] = True
            state["head"], value = scored(np.flatnonzero(labelled), seed, warm=state["head"])
            state["curve"].append(value)
            if state["hit"] is None and value >= target:
                state["hit"] = int(labelled.sum())
        if progress:
            progress(step + 1, len(counts))
        if all(state["hit"] is not None for state in states):
            done_steps += 1
            if done_steps > 1:
                break
    counts = counts[: len(states[0]["curve"])]
    curves = {s: [st["curve"] for st in states if st["strategy"] == s] for s in strategies}
    reached = {s: [st["hit"] for st in states if st["strategy"] == s] for s in strategies}
    return summarise(
        counts, curves, reached, full, target, seeds, batch, start_per_class, len(pool_y), started, len(val_y)
    )


def _median(values: list[int | None], never: int) -> float | None:
    """The median over seeds, a seed that never reached the target counted as `never` (None when most never did)."""
    filled = [never + 1 if v is None else v for v in values]
    median = float(np.median(filled))
    if median > never:
        return None
    return int(median) if median.is_integer() else median


def summarise(
    counts, curves, reached, full, target, seeds, batch, start_per_class, pool, started, validation_photos
) -> dict:
    strategies = {}
    for name, runs in curves.items():
        mean = np.mean(np.asarray(runs), axis=0)
        hits = reached[name]
        known = [h for h in hits if h is not None]
        strategies[name] = {
            "labels_to_target": _median(hits, pool),
            "labels_to_target_by_seed": hits,
            "spread": [min(known), max(known)] if known else None,
            "curve": [[int(c), round(float(a), 4)] for c, a in zip(counts, mean, strict=True)],
            "curves_by_seed": [[round(float(a), 4) for a in run] for run in runs],
        }
    out = {
        "validation_photos": validation_photos,
        "target_band_photos": band_photos(full, target, validation_photos),
        "target_accuracy": round(float(target), 4),
        "full_accuracy": round(float(full), 4),
        "target_fraction": TARGET_FRACTION,
        "seeds": seeds,
        "pool": pool,
        "batch": batch,
        "start_per_class": start_per_class,
        "strategy": STRATEGY,
        "strategies": strategies,
        "seconds": round(time.perf_counter() - started, 2),
    }
    out.update(saving(strategies, out["target_band_photos"]))
    return out


def band_photos(full: float, target: float, validation_photos: int) -> float:
    """How many validation photos lie between the target and the accuracy with every label: the band a strategy
    must enter, counted in photos (4 photos wide means a few photos' luck decides when it gets there)."""
    return round(max(0.0, full - target) * validation_photos, 1)


def _seeds(hits: list[int | None]) -> str:
    return ", ".join("never" if h is None else str(h) for h in hits)


def saving(strategies: dict, band: float | None = None) -> dict:
    """What Flora's strategy saved against random, and whether the seeds make it measurable, in numbers and words.

    `band`: the target band's width in validation photos (band_photos), said in the verdict when known. `better`
    names the strategy that needed fewer labels in the middle of the seeds (None: a tie or nothing to compare);
    `measurable` is True when every seed agrees on it."""
    out = _saving(strategies)
    if band is not None and STRATEGY in strategies and RANDOM in strategies:
        out["verdict"] += (
            f". The target band was about {band:.0f} validation photo{'s' if round(band) != 1 else ''} wide (the "
            "target sits that many photos below the accuracy with every label), so a few photos' luck moves when a "
            "strategy gets there"
        )
    return out


def _saving(strategies: dict) -> dict:
    ours, theirs = strategies.get(STRATEGY), strategies.get(RANDOM)
    if not ours or not theirs:
        return {"saved_labels": None, "measurable": False, "better": None, "verdict": "only one strategy was measured"}
    a, b = ours["labels_to_target"], theirs["labels_to_target"]
    hits_a = ours["labels_to_target_by_seed"]
    hits_b = theirs["labels_to_target_by_seed"]
    if a is None and b is None:
        return {
            "saved_labels": None,
            "measurable": False,
            "better": None,
            "verdict": "neither strategy reached the target within the labelled photos: nothing to compare here",
        }
    if b is None:
        return {
            "saved_labels": None,
            "measurable": all(h is not None for h in hits_a),
            "better": STRATEGY,
            "verdict": f"Flora's picking reached the target with {a:.0f} labels; random picking did not reach it "
            "with every label of the pool",
        }
    if a is None:
        return {
            "saved_labels": None,
            "measurable": all(h is not None for h in hits_b),
            "better": RANDOM,
            "verdict": f"random picking did better: it reached the target with {b:.0f} labels and Flora's picking "
            "did not reach it with every label of the pool",
        }
    saved = b - a
    middle = f"(the middle of the seeds; by seed, Flora's {_seeds(hits_a)}, random's {_seeds(hits_b)})"
    if saved > 0:
        measurable = max(hits_a) < min(hits_b)
        if measurable:
            verdict = (
                f"Flora's picking reached the target with {a:.0f} labels, random picking with {b:.0f} {middle}: it "
                f"saved about {saved:.0f} labels ({saved / b:.0%}) on this data, in every seed"
            )
        else:
            verdict = (
                f"Flora's picking reached the target with {a:.0f} labels, random picking with {b:.0f} {middle}; the "
                f"seeds overlap, so the saving of about {saved:.0f} labels is not measurable here"
            )
        better = STRATEGY
    elif saved < 0:
        measurable = max(hits_b) < min(hits_a)
        verdict = (
            f"random picking did better: it reached the target with {b:.0f} labels, Flora's picking needed {a:.0f} "
            f"{middle}, about {-saved:.0f} more labels"
            + (" in every seed" if measurable else "; the seeds overlap, so the difference is not measurable here")
        )
        better = RANDOM
    else:
        measurable, better = False, None
        verdict = f"Flora's picking and random picking both needed {a:.0f} labels {middle}: no saving on this data"
    return {
        "saved_labels": round(float(saved), 1),
        "measurable": bool(measurable),
        "better": better,
        "verdict": verdict,
    }
