"""Out-of-sample probabilities: Gaussian classes with a shared, shrunk covariance fitted from sufficient
statistics (checked against scikit-learn's LDA), the temperature and noise chosen by held-out log loss, the folds
fitted once each, and the flagged set against cleanlab's on the same probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from core.results.labels import issues as label_issues
from core.results.labels import out_of_sample
from core.results.labels.out_of_sample import Fit, FoldStatistics, assign_folds

pytestmark = pytest.mark.backend_agnostic


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _gaussian_classes(n_per_class, classes, width, spread, seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (classes, width)) * spread
    mixing = rng.normal(0, 1, (width, width)) / np.sqrt(width) + np.eye(width)  # a shared, correlated covariance
    y = np.repeat(np.arange(classes), n_per_class)
    x = (centres[y] + rng.normal(0, 1, (len(y), width)) @ mixing).astype(np.float32)
    return x, y


@pytest.mark.parametrize("shrinkage", [0.01, 0.3, 0.7])
def test_a_folds_model_is_scikit_learns_shrinkage_lda_fitted_on_the_other_folds(shrinkage):
    """The fold's model comes from the whole set's statistics minus the fold's own; scikit-learn fits the same model
    on the other folds' rows directly (solver lsqr, the same shrinkage towards the mean variance)."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    x, y = _gaussian_classes(30, 4, 6, 1.5, seed=3)
    y = np.concatenate([y, [3] * 7])  # unequal classes: the priors matter
    x = np.concatenate([x, x[-7:] + 0.1]).astype(np.float32)
    fold_of = assign_folds(y, 4, 3, seed=0)
    stats = FoldStatistics(x, y, 4, fold_of, 3)
    for fold in range(3):
        train, held = fold_of != fold, fold_of == fold
        weights, bias = stats.discriminant(fold, shrinkage)
        ours = _softmax((x[held] @ weights + bias).astype(np.float64))
        theirs = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=shrinkage).fit(x[train], y[train])
        assert np.allclose(ours, theirs.predict_proba(x[held]), atol=1e-4)


def test_the_temperature_and_the_share_of_random_labels_are_recovered():
    """Labels drawn from the model itself (Gaussian classes, one shared covariance), 10% of them then replaced by
    a class drawn at random: the noise model finds about that share, and the temperature keeps the probabilities
    honest (their mean on the rows' true classes near the accuracy of the top class)."""
    x, y = _gaussian_classes(150, 5, 8, 0.9, seed=5)
    rng = np.random.default_rng(6)
    noisy = y.copy()
    replaced = rng.random(len(y)) < 0.10
    noisy[replaced] = rng.integers(0, 5, replaced.sum())
    scored = out_of_sample.out_of_sample(x, noisy, 5, reduced=True)
    assert scored.fit is not None and scored.fit.shrinkage in out_of_sample.SHRINKAGE_GRID
    assert 0.04 <= scored.fit.noise <= 0.16, scored.fit  # a draw at random keeps its label a fifth of the time
    p = scored.probabilities
    confidence, correct = p.max(axis=1), p.argmax(axis=1) == y
    assert abs(confidence.mean() - correct.mean()) < 0.06  # calibrated against the truth, not the noisy labels


def test_each_fold_is_fitted_once_from_the_statistics(monkeypatch):
    """The folds cost one pass over the rows: the statistics are gathered once, each fold's model is one solve."""
    x, y = _gaussian_classes(20, 10, 8, 1.0, seed=1)
    made = []
    real = FoldStatistics.discriminant

    def counting(self, fold, shrinkage):
        made.append(fold)
        return real(self, fold, shrinkage)

    monkeypatch.setattr(FoldStatistics, "discriminant", counting)
    out_of_sample.out_of_sample(x, y, 10, fit=Fit(0.1, 1.0, 0.0), reduced=True)
    assert sorted(made) == [0, 1, 2, 3, 4]


def test_the_flagged_set_is_cleanlabs_confident_learning_filter_and_the_ranking_leads_with_its_suspects():
    """cleanlab 2.9 on the same out-of-sample probabilities: `filter_by="confident_learning"` flags exactly Flora's
    set (the off-diagonals of the confident joint, less those predicted as given); Flora ranks by log odds,
    cleanlab by self-confidence: on these 8 classes the first 40 share nearly all their photos (measured 39-40 over
    three draws)."""
    from cleanlab.filter import find_label_issues

    x, y = _gaussian_classes(100, 8, 12, 0.55, seed=2)
    rng = np.random.default_rng(3)
    flips = rng.choice(len(y), 64, replace=False)
    given = y.copy()
    given[flips] = (y[flips] + rng.integers(1, 8, 64)) % 8
    p = out_of_sample.out_of_sample(x, given, 8, reduced=True).probabilities.astype(np.float64)
    p /= p.sum(axis=1, keepdims=True)
    flagged, _ = label_issues.find_label_issues(p, given)
    theirs = find_label_issues(given, p, filter_by="confident_learning")
    assert flagged.sum() > 40 and np.array_equal(flagged, theirs)
    ours = [int(i) for i in np.argsort(-label_issues.log_odds(p, given), kind="stable") if flagged[i]]
    ranked = find_label_issues(given, p, filter_by="confident_learning", return_indices_ranked_by="self_confidence")
    assert len(set(ours[:40]) & set(ranked[:40].tolist())) >= 34
    assert np.isin(ours[:20], flips).mean() >= 0.8  # and the top is the planted flips (measured 1.0)


def test_a_class_missing_from_a_fold_gets_no_probability_and_nothing_breaks():
    rng = np.random.default_rng(0)
    y = np.array([0] * 12 + [1] * 12 + [2])  # class 2: one photo, so its own fold's model never saw it
    x = (rng.normal(size=(25, 5)) + y[:, None] * 2).astype(np.float32)
    scored = out_of_sample.out_of_sample(x, y, 3, reduced=True)
    assert np.isfinite(scored.probabilities).all() and np.allclose(scored.probabilities.sum(axis=1), 1, atol=1e-5)
    assert scored.probabilities[24, 2] == 0.0
