"""Prediction sets: the same thresholds and sets as MAPIE on the same scores (its randomised ones given its draws,
its non-randomised rule given the same threshold), coverage that holds on held-out halves, by set size too, sets
that grow where the model is unsure and never differ for the same photo, and a run's stored sets."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from core.results.probabilities import conformal as cf
from core.results.probabilities import conformal_scores as sc
from core.runs.analysis import softmax

pytestmark = pytest.mark.backend_agnostic


def _draw(n: int, classes: int, seed: int, sharpness: float = 2.0):
    """Probabilities and labels drawn from them: a model exactly as sure as it should be."""
    rng = np.random.default_rng(seed)
    p = softmax(rng.normal(size=(n, classes)) * sharpness).astype(np.float64)
    p /= p.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(classes, p=row) for row in p])
    return p, labels


class _Lookup:
    """A prefit scikit-learn classifier whose 'features' are row numbers into a table of probabilities."""

    @staticmethod
    def make(table):
        from sklearn.base import BaseEstimator, ClassifierMixin

        class Lookup(ClassifierMixin, BaseEstimator):
            def __init__(self, table=None):
                self.table = table

            def fit(self, X, y):
                self.classes_ = np.arange(self.table.shape[1])
                return self

            def predict_proba(self, X):
                return self.table[np.asarray(X)[:, 0].astype(int)]

            def predict(self, X):
                return self.predict_proba(X).argmax(axis=1)

        return Lookup(table)


@pytest.mark.parametrize("level", [0.8, 0.9, 0.95])
def test_aps_threshold_and_sets_match_mapie_on_the_same_scores(level):
    mapie = pytest.importorskip("mapie.classification")
    p, y = _draw(900, 6, seed=int(level * 100))
    calibrate, test = np.arange(450), np.arange(450, 900)
    estimator = _Lookup.make(p).fit(np.arange(900)[:, None], y)
    reference = mapie.SplitConformalClassifier(
        estimator, confidence_level=level, conformity_score="aps", prefit=True, random_state=7
    )
    reference.conformalize(calibrate[:, None], y[calibrate])
    _, their_sets = reference.predict_set(test[:, None], conformity_score_params={"include_last_label": "randomized"})
    their_threshold = float(reference._mapie_classifier.conformity_score_function_.quantiles_[0])
    # MAPIE draws each photo's u from RandomState(random_state): the same draws, given to Flora's score
    u_calibrate = np.random.RandomState(7).uniform(size=len(calibrate))
    u_test = np.random.RandomState(7).uniform(size=len(test))
    ours = sc.threshold(sc.true_scores(sc.class_scores(p[calibrate], u_calibrate), y[calibrate]), level)
    assert ours == pytest.approx(their_threshold, abs=1e-12)
    our_sets = sc.class_scores(p[test], u_test) <= ours + 1e-9
    assert (our_sets == their_sets[:, :, 0]).all(axis=1).mean() == 1.0
    # Flora then gives an empty set its top class (never an empty answer): only ever a superset
    filled = sc.set_masks(sc.class_scores(p[test], u_test), ours, p[test])
    assert (filled >= our_sets).all() and filled.any(axis=1).all()


@pytest.mark.parametrize("level", [0.8, 0.9, 0.95])
def test_flora_sets_are_mapies_non_randomised_sets_at_the_same_threshold(level):
    pytest.importorskip("mapie")
    from mapie.conformity_scores.sets.aps import APSConformityScore

    p, y = _draw(900, 6, seed=int(level * 100) + 1)
    calibrate, test = np.arange(450), np.arange(450, 900)
    ours = sc.threshold(sc.true_scores(sc.class_scores(p[calibrate]), y[calibrate]), level)
    # MAPIE calibrates on randomised scores only; its "include the last label" rule (a class is in while the
    # classes above it hold less than the threshold) is Flora's set rule: at Flora's threshold, the same sets
    reference = APSConformityScore()
    reference.quantiles_ = np.array([ours])
    their_sets = reference.get_prediction_sets(p[test][:, :, None], None, np.array([1 - level]), "prefit", True)
    our_sets = sc.set_masks(sc.class_scores(p[test]), ours, p[test])
    assert (our_sets == their_sets[:, :, 0]).all()
    assert our_sets.sum(axis=1).max() > 2 and our_sets.sum(axis=1).min() == 1  # sizes vary: a real comparison


def test_raps_regularised_scores_match_mapie():
    pytest.importorskip("mapie")
    from mapie.conformity_scores.sets.aps import APSConformityScore
    from mapie.conformity_scores.sets.raps import RAPSConformityScore

    p, y = _draw(500, 10, seed=3, sharpness=1.0)
    cumsum, rank = APSConformityScore.get_true_label_cumsum_proba(y, p, np.arange(10))
    # MAPIE's randomised draws, and u = 1 (Flora's own sets: none of the class's own probability counts)
    for u in (np.random.default_rng(1).uniform(size=len(y)), np.ones(len(y))):
        aps = cumsum - u[:, None] * p[np.arange(len(y)), y][:, None]
        for lam, k_reg in [(0.0, 1), (0.01, 2), (0.2, 3)]:
            theirs = RAPSConformityScore._regularize_conformity_score(np.array([k_reg]), lam, aps.copy(), rank)
            ours = sc.true_scores(sc.class_scores(p, u, lam, k_reg), y)
            assert np.allclose(ours, theirs[:, 0, 0], atol=1e-12)
    assert np.array_equal(sc.class_scores(p), sc.class_scores(p, np.ones(len(y))))  # Flora's default


def test_threshold_is_the_finite_sample_order_statistic():
    scores = np.arange(1, 20) / 20.0  # 19 scores
    assert sc.threshold(scores, 0.9) == pytest.approx(18 / 20)  # ceil(20 * 0.9) = 18th smallest
    assert sc.threshold(scores[:8], 0.9) == np.inf  # ceil(9 * 0.9) = 9 > 8: every class
    assert sc.min_photos(0.9) == 9 and sc.min_photos(0.99) == 99


@pytest.mark.parametrize("method", cf.METHODS)
def test_held_out_coverage_is_near_the_level_over_many_draws(method):
    coverages = []
    for seed in range(20):
        p, y = _draw(800, 5, seed=seed)
        fitted = cf.fit(
            p, y, [f"{i}.jpg" for i in range(800)], list("abcde"), p[:200], y[:200], 0.9, method, spread_splits=0
        )
        coverages.append(fitted.held_out.coverage)
    # the guarantee: at least 0.9 on average; not randomised, the sets cover a little more, not much
    assert 0.89 <= np.mean(coverages) <= 0.93


def test_a_threshold_per_class_covers_a_hard_class_that_one_threshold_leaves_short():
    rng = np.random.default_rng(4)
    p, y = _draw(3000, 4, seed=4)
    p = p.copy()
    for i in np.flatnonzero(y == 3):  # the model is lost on class 3: its probabilities there are shuffled
        p[i] = rng.permutation(p[i])
    paths = [str(i) for i in range(len(y))]
    one = cf.fit(p, y, paths, list("abcd"), p, y, 0.9, "aps", spread_splits=0, by_class=False)
    each = cf.fit(p, y, paths, list("abcd"), p, y, 0.9, "aps", spread_splits=0)
    assert each.by_class and not one.by_class
    worst_one = min(c.coverage for c in one.held_out.by_class)
    worst_each = min(c.coverage for c in each.held_out.by_class)
    assert worst_one < 0.87 and worst_each >= 0.87
    assert one.held_out.under_covered  # named
    assert all(len(s) for s in each.sets(p[:50]))


def test_sets_grow_where_the_model_is_unsure():
    sure, y_sure = _draw(600, 8, seed=1, sharpness=4.0)
    unsure, y_unsure = _draw(600, 8, seed=2, sharpness=0.5)
    p, y = np.concatenate([sure, unsure]), np.concatenate([y_sure, y_unsure])
    fitted = cf.fit(
        p, y, [f"{i}" for i in range(len(y))], list("abcdefgh"), p[::3], y[::3], 0.9, "aps", spread_splits=0
    )
    sizes = np.array([len(s) for s in fitted.sets(p)])
    assert sizes[:600].mean() < sizes[600:].mean() - 1


@pytest.mark.parametrize("by_class", [True, False])
def test_a_higher_level_never_gives_a_smaller_set(by_class):
    # 400 test photos, 6 classes: about 33 calibration photos a class, too few for a threshold of their own
    # from 97% on (the walk found 4 classes at 99% after 5 at 98% when those fell back to the overall one)
    p, y = _draw(400, 6, seed=5)
    fitted = cf.fit(p, y, [str(i) for i in range(400)], list("abcdef"), p, y, 0.9, spread_splits=0, by_class=by_class)
    levels = [percent / 100 for percent in range(80, 100)]
    per_level = [fitted.sets(p, level) for level in levels]
    for lower, higher in itertools.pairwise(per_level):
        for low, high in zip(lower, higher, strict=True):
            assert set(low) <= set(high)
    sizes = [fitted.at_level(level)["mean_size"] for level in levels]
    assert sizes == sorted(sizes) and len(fitted.by_level) == 20


def test_the_report_recounts_from_its_own_photos_and_names_under_covered_classes():
    p, y = _draw(600, 4, seed=8)
    y_shifted = y.copy()
    # class 3's test photos are labelled at random: the model cannot cover them the way it covers the rest
    rng = np.random.default_rng(0)
    y_shifted[y == 3] = rng.choice(4, size=(y == 3).sum())
    fitted = cf.fit(p, y_shifted, [f"{i}.jpg" for i in range(600)], list("abcd"), p, y_shifted, 0.9, spread_splits=50)
    recount = np.mean([photo["label"] in photo["set"] for photo in fitted.photos])
    assert recount == pytest.approx(fitted.held_out.coverage)
    assert len(fitted.photos) == 300 and all(photo["set"] for photo in fitted.photos)
    summary = json.loads(json.dumps(fitted.summary()))  # JSON-safe
    assert summary["alpha"] == pytest.approx(0.1)
    spread = summary["spread"]
    assert spread["coverage_low"] <= spread["coverage_mean"] <= spread["coverage_high"]
    assert set(spread["class_coverage_low"]) == {"a", "b", "c", "d"}


def test_level_or_alpha_and_too_few_photos():
    assert sc.level_of(0.9) == 0.9 and sc.level_of(0.1) == pytest.approx(0.9)
    with pytest.raises(sc.ConformalError, match="between 0 and 1"):
        sc.level_of(1.5)
    p, y = _draw(30, 3, seed=1)
    with pytest.raises(sc.ConformalError, match="too few"):
        cf.fit(p, y, [str(i) for i in range(30)], list("abc"), p, y, 0.99)


def test_the_same_photo_always_gets_the_same_set_and_a_surer_one_never_a_larger_one():
    p, y = _draw(600, 2, seed=6, sharpness=0.8)
    fitted = cf.fit(p, y, [str(i) for i in range(600)], ["cats", "dogs"], p, y, 0.9, "aps", spread_splits=0)
    assert fitted.sets(p) == fitted.sets(p.copy())
    assert fitted.sets(p) == fitted.sets(p.astype(np.float32).astype(np.float64)), "float noise moves no set"
    # the analyst's two photos: at 50.7% and 56%; the old per-photo draw gave the first one class and the second two
    photos = np.array([[0.507, 0.493], [0.56, 0.44]])
    sizes = [len(s) for s in fitted.sets(photos, 0.9)]
    assert sizes[0] >= sizes[1]
    sure = np.sort(p.max(axis=1))
    ladder = np.stack([sure, 1 - sure], axis=1)
    for level in (0.8, 0.9, 0.95):
        sized = [len(s) for s in fitted.sets(ladder, level)]
        assert sized == sorted(sized, reverse=True), "a surer photo never gets a larger set"


def test_the_held_out_half_is_counted_by_set_size_and_short_sizes_are_named():
    # a weak, overconfident model: its one-class sets are right far less often than 9 in 10
    rng = np.random.default_rng(9)
    y = rng.integers(2, size=800)
    top = rng.uniform(0.5, 0.75, size=800)
    right = rng.random(800) < 0.6
    winner = np.where(right, y, 1 - y)
    p = np.zeros((800, 2))
    p[np.arange(800), winner] = top
    p[np.arange(800), 1 - winner] = 1 - top
    fitted = cf.fit(p, y, [str(i) for i in range(800)], ["cats", "dogs"], p, y, 0.9, "aps", spread_splits=0)
    counted = fitted.held_out.by_size
    assert sum(n for _, n in counted.values()) == fitted.held_out.photos == 400
    recount = {}
    for photo in fitted.photos:
        size = str(len(photo["set"]))
        recount.setdefault(size, [0, 0])
        recount[size][0] += photo["label"] in photo["set"]
        recount[size][1] += 1
    assert recount == counted
    one = fitted.size_record(1)
    assert one is not None and one[0] / one[1] < 0.9 and (1, *one) in fitted.short_sizes()
    assert fitted.at_level(0.9)["by_size"] == counted
    words = cf.set_words(["dogs"], 2, 0.9, one)
    assert f"one-class sets were right only {one[0]} of {one[1]} times" in words
    assert "not for each photo" in words and "best guess, not a sure answer" in words
    summary = json.loads(json.dumps(fitted.summary()))
    assert summary["held_out"]["by_size"] == counted


def test_set_words():
    one = cf.set_words(["rose"], 5, 0.9)
    assert one.startswith("rose, one class at this level. On average over many photos like the calibration ones")
    assert "sets at 90% hold the right class 9 times in 10, all classes taken together" in one
    assert "not for each photo or each class." in one
    assert "at least" not in one  # a finite sample can fall below the level: the promise is an average
    assert "not for each photo;" not in one and "not for each photo." in cf.set_words(["rose"], 5, 0.9, by_class=True)
    assert "for daisy the promise holds only with" in cf.set_words(["rose"], 5, 0.9, by_class=True, shared=["daisy"])
    assert cf.set_words(["rose", "tulip"], 5, 0.95).startswith("rose or tulip. On average over many photos")
    assert "a wide set (4 of 5 classes)" in cf.set_words(list("abcd"), 5, 0.99)
    assert "cannot narrow" in cf.set_words(list("abcde"), 5, 0.9)
    held = cf.set_words(["rose", "tulip"], 5, 0.9, (40, 41))
    assert held.endswith("two-class sets were right 40 of 41 times.") and "only" not in held
    short = cf.set_words(["dogs"], 2, 0.9, (11, 18))
    assert "one-class sets were right only 11 of 18 times (61%), less often than that" in short


def test_a_run_stores_its_sets_and_fits_them_when_missing(trained_run, tmp_path):
    from tests.conftest import copy_run

    run_dir = copy_run(trained_run["store"].run_dir(trained_run["run_id"]), tmp_path / "run")
    (run_dir / "conformal.json").unlink(missing_ok=True)
    sets = cf.run_sets(run_dir)
    # 56 photos, 15% test: too few test photos for a 90% set with a calibration half: said, not invented
    if sets is None:
        with pytest.raises(sc.ConformalError, match="too few"):
            cf.fit_run(run_dir)
        fitted = cf.fit_run(run_dir, level=0.8)
    else:
        fitted = sets
    again = cf.load(run_dir)
    assert again is not None and again.calibration_scores == fitted.calibration_scores
    assert again.views == 1 and again.classes == ["blue", "crimson", "green", "red"]


def test_calibrate_conformal_on_the_command_line_carries_every_held_out_photo(trained_run, tmp_path):
    import contextlib
    import io

    from core.cli import main as cli
    from tests.conftest import copy_run

    store_root = copy_run(trained_run["models_root"], tmp_path / "models")
    run_id = trained_run["run_id"]
    common = ["--models-dir", str(store_root), "--data-dir", str(trained_run["data_root"])]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli(["calibrate", run_id[:6], "--conformal", "0.2", "--method", "aps", "--json", *common]) == 0
    result = json.loads(out.getvalue())["conformal"]
    assert result["level"] == pytest.approx(0.8) and result["method"] == "aps"
    photos = result["photos"]
    assert photos and all({"path", "label", "set"} <= set(p) for p in photos)
    recount = np.mean([p["label"] in p["set"] for p in photos])
    assert recount == pytest.approx(result["held_out"]["coverage"])
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert cli(["calibrate", run_id, "--conformal", "0.99", *common]) != 0
    assert "too few" in err.getvalue()


@pytest.mark.slow
def test_core_predict_gives_the_same_photo_the_same_set_every_time(trained_run, tmp_path, monkeypatch, capsys):
    """`core predict` in a process of its own (no model built in it before) and in this one (other models built
    before it) gives each photo the same set; the folder form (the serving engine) too."""
    import os
    import shutil

    from core.cli import main
    from core.serving.batch_predict import SET_SEPARATOR
    from tests.conftest import copy_run
    from tests.core_process import run_core

    store_root = copy_run(trained_run["models_root"], tmp_path / "models")
    run_id = trained_run["run_id"]
    cf.fit_run(store_root / run_id, level=0.8, method="aps")
    photos = tmp_path / "photos"
    photos.mkdir()
    for cls in ("blue", "crimson", "green", "red"):
        for source in sorted((trained_run["dataset"] / cls).iterdir())[:2]:
            shutil.copy(source, photos / f"{cls}-{source.name}")
    first = sorted(photos.iterdir())[0]
    shutil.copy(first, photos / "same-photo-another-name.png")
    where = {"FLORA_MODELS_DIR": str(store_root), "FLORA_DATA_DIR": str(trained_run["data_root"])}
    for name, value in where.items():
        monkeypatch.setenv(name, value)

    def predict(*sources, fresh: bool = False):
        argv = ["predict", run_id, *map(str, sources), "--set-level", "0.8", "--json"]
        if not fresh:
            assert main(argv) == 0
            return json.loads(capsys.readouterr().out)["results"]
        done = run_core(*argv, env={**os.environ, **where}, timeout=600)  # forked from the worker's warm launcher
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)["results"]

    files = sorted(photos.iterdir())
    runs = [predict(*files, fresh=True), predict(*files)]  # a fresh process, then this one
    sets = [{r["image"]: r["prediction_set"]["classes"] for r in results} for results in runs]
    assert sets[0] == sets[1] and len(sets[0]) == len(files)
    assert sets[0][str(first)] == sets[0][str(photos / "same-photo-another-name.png")]
    assert all(r["prediction_set"]["level"] == 0.8 and r["prediction_set"]["classes"][0] == r["top"][0]["label"]
               for r in runs[0])  # fmt: skip
    # the folder form (the serving engine, as Predict and the server) gives each photo the same set
    rows = predict(photos)
    by_name = {Path(row["path"]).name: row["prediction_set"].split(SET_SEPARATOR) for row in rows}
    assert by_name == {Path(image).name: chosen for image, chosen in sets[0].items()}
