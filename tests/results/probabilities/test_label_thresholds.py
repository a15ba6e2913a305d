"""A multi-label run's threshold per label, tuned on validation: best F1, or the lowest reaching a precision."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score

from core.results.probabilities import label_thresholds
from core.runs.files import run_files

pytestmark = pytest.mark.backend_agnostic

NAMES = ["beach", "dog", "person", "road"]


def _validation(seed: int = 0, n: int = 120):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, 4)) < [0.3, 0.2, 0.5, 0.0]).astype(np.uint8)  # "road": no validation photo has it
    scores = np.clip(0.35 * targets + rng.normal(0.35, 0.2, size=targets.shape), 0, 1).round(2)  # ties, as in life
    return scores.astype(np.float32), targets


def test_each_label_gets_the_threshold_with_the_best_f1_and_a_label_without_positives_keeps_a_half():
    scores, targets = _validation()
    fitted = label_thresholds.fit(scores, targets, NAMES)
    for j, name in enumerate(NAMES[:3]):
        # every distinct score as a threshold, scored by scikit-learn: ours is as good as the best of them
        best = max(f1_score(targets[:, j], scores[:, j] >= t) for t in np.unique(scores[:, j]))
        chosen = fitted.by_label()[name]
        assert f1_score(targets[:, j], scores[:, j] >= chosen) == pytest.approx(best)
        assert fitted.per_label[name]["f1"] == pytest.approx(best)
        # halfway between two validation scores: the same answers, and no photo sits on the line
        assert not np.any(np.isclose(scores[:, j], chosen))
    assert fitted.by_label()["road"] == 0.5 and fitted.untuned == ["road"]
    assert "road" in " ".join(fitted.notes()) and fitted.rule == label_thresholds.BEST_F1


def test_a_precision_asked_for_gives_the_lowest_threshold_reaching_it():
    scores, targets = _validation(seed=1)
    fitted = label_thresholds.fit(scores, targets, NAMES, precision=0.8)
    for j, name in enumerate(NAMES[:3]):
        candidates = sorted(np.unique(scores[:, j]))
        reaching = [t for t in candidates if precision_score(targets[:, j], scores[:, j] >= t, zero_division=0) >= 0.8]
        chosen = fitted.by_label()[name]
        if name in fitted.unreached:
            assert not reaching
            continue
        lowest = min(reaching)
        assert np.array_equal(scores[:, j] >= chosen, scores[:, j] >= lowest)
        assert fitted.per_label[name]["precision"] >= 0.8
    # a "beach" photo scored above every beach photo: no threshold gives beach a precision of 1
    scores[np.flatnonzero(targets[:, 0] == 0)[0], 0] = 1.5
    impossible = label_thresholds.fit(scores, targets, NAMES, precision=1.0)
    assert "beach" in impossible.unreached and "beach" in " ".join(impossible.notes())
    best_f1 = label_thresholds.fit(scores, targets, NAMES)
    assert impossible.by_label()["beach"] == best_f1.by_label()["beach"]  # it keeps its best-F1 threshold


def test_thresholds_are_stored_in_the_run_folder_and_read_back(tmp_path):
    scores, targets = _validation()
    fitted = label_thresholds.fit(scores, targets, NAMES)
    label_thresholds.save(fitted, tmp_path)
    assert run_files(tmp_path).label_thresholds.exists()
    loaded = label_thresholds.load(tmp_path)
    assert loaded == pytest.approx(fitted.by_label())
    assert label_thresholds.stored(tmp_path)["untuned"] == ["road"]
    assert label_thresholds.load(tmp_path / "elsewhere") == {}
    present = label_thresholds.present(np.array([[0.99, 0.0, 0.99, 0.49], [0.0, 0.0, 0.0, 0.51]]), NAMES, loaded)
    assert present == [["beach", "person"], ["road"]]
