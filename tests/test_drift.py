"""Drift checks (core.serving.drift): each statistic fires on a shift planted in its own signal and stays quiet on
traffic drawn like the reference, so an alarm on the Monitor page means what it says."""

from __future__ import annotations

import time

import numpy as np
import pytest

from core.results.probabilities.reference import Reference
from core.serving import drift

pytestmark = pytest.mark.backend_agnostic

CLASSES = ["daisy", "rose", "tulip", "sunflower"]
CLASS_MIX, CONFIDENCE, INPUT = (
    "class mix (chi-square p)",
    "confidence drift (KS p)",
    "input drift (domain classifier AUC)",
)


def reference(val: int = 400, dims: int = 8, seed: int = 0) -> Reference:
    """A run's reference: an even training mix, validation confidences ~ Beta(8, 2), projections ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    return Reference(
        run_id="r",
        detector=None,  # the drift checks read the baselines only; the OOD detector has tests of its own
        val_confidence=rng.beta(8, 2, size=val).astype(np.float32),
        val_projection=rng.normal(size=(val, dims)).astype(np.float32),
        val_predicted=rng.integers(0, len(CLASSES), size=val),
        train_counts=np.array([100, 100, 100, 100]),
        created=time.time(),
    )


def traffic(n: int = 240, seed: int = 1, mix=None, confidence=(8, 2), shift: float = 0.0, dims: int = 8) -> list[dict]:
    """Logged predictions: labels from `mix` (default even), confidences ~ Beta(*confidence), features + shift."""
    # one random stream per signal: planting a shift in one leaves the others exactly as in quiet traffic
    labels_rng, confidence_rng, features_rng = (np.random.default_rng([seed, k]) for k in range(3))
    labels = labels_rng.choice(len(CLASSES), size=n, p=mix)
    confidences = confidence_rng.beta(*confidence, size=n)
    features = features_rng.normal(size=(n, dims)).astype(np.float32)
    features[:, :3] += shift  # a shift in a few directions of the reference's projection
    now = time.time()
    return [
        {
            "time": now - 60 * (n - i),
            "latency_ms": 30.0,
            "label": CLASSES[labels[i]],
            "max_probability": float(confidences[i]),
            "ood_flag": False,
            "features": features[i],
        }
        for i in range(n)
    ]


def checks(rows: list[dict], ref: Reference) -> dict[str, drift.Check]:
    """The report's checks by name ("confidence drift (KS)" when it has no verdict is found as CONFIDENCE too)."""
    found = {check.name: check for check in drift.report(rows, CLASSES, ref).checks}
    if "confidence drift (KS)" in found:
        found[CONFIDENCE] = found["confidence drift (KS)"]
    return found


def test_traffic_like_the_reference_raises_no_alarm():
    found = checks(traffic(), reference())
    assert {CLASS_MIX, CONFIDENCE, INPUT} <= set(found)
    for name in (CLASS_MIX, CONFIDENCE, INPUT):
        assert found[name].value is not None and not found[name].alarm, found[name]
    assert found[CLASS_MIX].value > drift.P_VALUE and found[INPUT].value < drift.DOMAIN_AUC


@pytest.mark.parametrize(
    ("planted", "fires"),
    [
        ({"mix": [0.7, 0.1, 0.1, 0.1]}, CLASS_MIX),  # one class over-predicted
        ({"confidence": (2, 2)}, CONFIDENCE),  # far less sure than on the validation photos
        ({"shift": 1.0}, INPUT),  # other photos coming in
    ],
)
def test_each_statistic_fires_on_its_own_planted_shift(planted, fires):
    found = checks(traffic(**planted), reference())
    assert found[fires].alarm, found[fires]
    assert [name for name in (CLASS_MIX, CONFIDENCE, INPUT) if found[name].alarm] == [fires]
    report = drift.report(traffic(**planted), CLASSES, reference())
    assert [alarm.name for alarm in report.alarms] == [fires]


def test_with_a_large_reference_the_ks_distance_decides_not_a_tiny_p_value():
    ref = reference(val=4000)
    found = {check.name: check for check in drift.report(traffic(n=600), CLASSES, ref).checks}
    quiet = found["confidence drift (KS distance)"]
    assert quiet.value < drift.KS_DISTANCE and not quiet.alarm
    shifted = drift.report(traffic(n=600, confidence=(4, 2)), CLASSES, ref).checks
    loud = next(c for c in shifted if c.name == "confidence drift (KS distance)")
    assert loud.value > drift.KS_DISTANCE and loud.alarm


def test_too_few_predictions_say_so_instead_of_a_verdict():
    found = checks(traffic(n=drift.MIN_ROWS - 1, mix=[1.0, 0, 0, 0], confidence=(1, 5), shift=3.0), reference())
    for name in (CLASS_MIX, CONFIDENCE, INPUT):
        assert found[name].value is None and not found[name].alarm and "needs 30+" in found[name].detail


def test_a_window_of_one_photo_sent_again_and_again_is_said_to_be_about_the_sender():
    """Issue 32: one photo sent 200 times raised three drift alarms. The report says the window is dominated by a
    few repeated inputs and what the tests say with each distinct input counted once."""
    rows = traffic(n=240)
    for i, row in enumerate(rows):
        row["image_sha256"], row["name"] = f"{i:064x}", f"photo{i}.jpg"
    assert drift.report(rows, CLASSES, reference()).repeats is None  # varied traffic: nothing to say
    same = dict(rows[0], label="rose", max_probability=0.2, features=np.full(8, 3.0, dtype=np.float32))
    same |= {"image_sha256": "ab" * 32, "name": "cat.jpg"}
    flooded = rows[:40] + [dict(same, time=rows[40 + k]["time"]) for k in range(200)]
    report = drift.report(flooded, CLASSES, reference())
    assert len(report.alarms) >= 2, "the repeated photo alone moves the tests"
    repeats = report.repeats
    assert repeats is not None and repeats.top[0] == ("ab" * 32, "cat.jpg", 200) and repeats.distinct == 41
    assert repeats.share == pytest.approx(202 / 240)  # the 3 most-sent: cat.jpg x200 and two once
    assert repeats.distinct_alarms == []  # the 41 distinct photos look like the reference
    assert "cat.jpg ×200" in repeats.text and "no test alarms" in repeats.text
