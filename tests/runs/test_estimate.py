"""How long a run will take, before it starts: priced from the runs that finished on the same device."""

from __future__ import annotations

import numpy as np
import pytest

from core.processes import JobState
from core.runs.curves import plan_of
from core.runs.estimate import estimate, weighted_cost, without_cached
from core.runs.store import RunStore
from core.settings.config import TrainConfig

CPU = "CPU: Test Xeon (tensorflow)"
OVERHEAD, PACE = 12.0, 0.8  # the device's truth in these tests: seconds = overhead + pace x cost


def _finished(store, run_id, config, images, device=CPU, seconds=None, reused=False, stages=None, start=1000.0):
    stages = plan_of(config, images) if stages is None else stages
    seconds = OVERHEAD + PACE * weighted_cost(stages, config.image_size) if seconds is None else seconds
    record = {
        "config": config.to_dict(),
        "classes": ["a", "b"],
        "dataset": {"path": "/data/ds", "name": "ds", "images": images, "fingerprint": "f1"},
    }
    if reused:
        record["reused_from"] = {"run_id": "0" * 12, "owner": "alice"}
    store.create(run_id, record)
    store.set_status(run_id, state=JobState.DONE, started_at=start, finished_at=start + seconds, device=device)
    return seconds


def test_the_estimate_follows_the_devices_own_pace_and_overhead(tmp_path):
    store = RunStore(tmp_path / "models")
    small = TrainConfig(image_size=64, epochs=3, weights="none")
    _finished(store, "a00000000001", small, 500)
    _finished(store, "a00000000002", small.replace(image_size=128), 2000)
    _finished(store, "a00000000003", small.replace(fine_tune_epochs=2), 1000)
    wanted = TrainConfig(image_size=96, epochs=5, fine_tune_epochs=1, weights="none")
    guess = estimate(wanted, 3000, store.list(), CPU, "another dataset")
    truth = OVERHEAD + PACE * weighted_cost(plan_of(wanted, 3000), 96)
    assert guess is not None and guess.runs == 3 and guess.seconds == pytest.approx(truth, rel=1e-3)
    assert guess.text.startswith("about ") and "the 3 runs that finished on this device" in guess.text
    # an independent least-squares fit of the same points gives the same overhead and pace
    costs = [weighted_cost(plan_of(r.train_config, r.dataset_images), r.train_config.image_size) for r in store.list()]
    seconds = [r.status.finished_at - r.status.started_at for r in store.list()]
    overhead, pace = np.linalg.lstsq(np.column_stack([np.ones(3), costs]), seconds, rcond=None)[0]
    assert (overhead, pace) == pytest.approx((OVERHEAD, PACE), rel=1e-6)


def test_other_devices_and_copies_do_not_price_it_and_none_before_a_run_finished(tmp_path):
    store = RunStore(tmp_path / "models")
    config = TrainConfig(image_size=64, epochs=3, weights="none")
    assert estimate(config, 500, store.list(), CPU) is None  # nothing finished yet: no guess
    _finished(store, "b00000000001", config, 500, device="GPU: NVIDIA H100 (jax)", seconds=5.0)
    _finished(store, "b00000000002", config, 500, seconds=9999.0, reused=True)  # a copy trained nothing
    assert estimate(config, 500, store.list(), CPU) is None
    one = _finished(store, "b00000000003", config, 500)
    guess = estimate(config.replace(epochs=6, seed=7), 500, store.list(), CPU)  # priced at its seconds per unit
    per_unit = one / weighted_cost(plan_of(config, 500), 64)
    assert guess.runs == 1 and guess.seconds == pytest.approx(
        per_unit * weighted_cost(plan_of(config.replace(epochs=6), 500), 64)
    )
    assert "the run that finished" in guess.text


def test_features_an_earlier_run_cached_are_not_counted_again(tmp_path):
    """The walk: a second run with another learning rate took 24 s where the first took 132 s (its features were
    cached). Its plan leaves decoding and extraction out, when estimated and when it prices later estimates."""
    store = RunStore(tmp_path / "models")
    cold = TrainConfig(image_size=64, epochs=3, weights="none", augmented_views=1, augment={"flip": True})
    _finished(store, "c00000000001", cold, 4000, start=1000.0)
    warm = cold.replace(learning_rate=3e-3)
    reduced, cached = without_cached(plan_of(warm, 4000), warm, "f1", store.list())
    assert cached and {s.name for s in reduced} == {
        "phase 1",
        "evaluating on the test split",
        "fitting the out-of-distribution reference",
    }
    _finished(store, "c00000000002", warm, 4000, stages=reduced, start=9000.0)
    again = cold.replace(learning_rate=1e-2)
    guess = estimate(again, 4000, store.list(), CPU, "f1")
    truth = OVERHEAD + PACE * weighted_cost(without_cached(plan_of(again, 4000), again, "f1", store.list())[0], 64)
    assert guess.features_cached and guess.seconds == pytest.approx(truth, rel=1e-3)
    assert "its features are cached by an earlier run" in guess.text
    bigger = cold.replace(image_size=96)  # another feature key: everything is extracted
    guess = estimate(bigger, 4000, store.list(), CPU, "f1")
    assert not guess.features_cached
    assert guess.seconds == pytest.approx(OVERHEAD + PACE * weighted_cost(plan_of(bigger, 4000), 96), rel=1e-3)
