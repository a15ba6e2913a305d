"""Answer only when sure: the same p-values and fixed-sequence test as MAPIE's risk control, a promise that holds
over many draws of a model as sure as it should be, the nearest level where a strict one has no threshold, and a
run's stored threshold."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from core.results.probabilities import learn_then_test as ltt
from core.results.probabilities import selective as sel
from core.runs.files import run_files

pytestmark = pytest.mark.backend_agnostic


def _draw(n: int, seed: int, low: float = 0.3, power: float = 2.0):
    """Confidences and whether each answer is right, drawn so that a photo at confidence c is right with chance
    c**power (the error falls as confidence rises, as for a useful model; below 1, a model surer than its figures)."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(low, 1.0, size=n)
    return confidence, rng.uniform(size=n) < confidence**power


def test_p_values_are_mapies_binary_bentkus_values_where_its_rounding_is_exact():
    methods = pytest.importorskip("mapie.risk_control.methods")
    confidence, correct = _draw(800, seed=1)
    grid = ltt.GRID[::7]
    answered, errors = ltt.counts(confidence, correct, grid)
    keep = answered > 0
    r_hat = errors[keep] / answered[keep]
    # MAPIE takes ceil(n * r_hat): where float rounding puts that above the count, its p-value is one error worse
    exact = np.ceil(answered[keep] * r_hat) == errors[keep]
    assert exact.mean() > 0.5
    for alpha in (0.05, 0.1, 0.2):
        ours = ltt.p_values(confidence, correct, grid, alpha)[keep]
        theirs = methods.compute_hoeffding_bentkus_p_value(r_hat, answered[keep].astype(float), alpha, binary=True)
        np.testing.assert_allclose(ours[exact], theirs[exact, 0], rtol=1e-9, atol=1e-12)
        assert np.all(theirs[~exact, 0] >= ours[~exact] - 1e-12)  # the rounding only ever makes MAPIE's stricter


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2])
def test_fixed_sequence_matches_mapies_fwer_control_and_its_controller(alpha):
    fwer = pytest.importorskip("mapie.risk_control.fwer_control")
    risk_control = pytest.importorskip("mapie.risk_control")
    confidence, correct = _draw(1500, seed=int(alpha * 100), low=0.5, power=0.5)
    val = _draw(400, seed=99, low=0.5, power=0.5)
    start = ltt.sequence_start(*val, len(confidence), alpha, ltt.GRID)
    tested = ltt.GRID[: start + 1][::-1]
    p = ltt.p_values(confidence, correct, tested, alpha)
    rejected = fwer.control_fwer(p, ltt.DELTA, fwer_method="fixed_sequence")
    ours = ltt.learn_then_test(confidence, correct, val, alpha)
    if len(rejected):
        assert ours == pytest.approx(tested[max(rejected)])
    else:
        assert ours is None
    # MAPIE's controller end to end on the same thresholds (precision of 'answered' = 1 - the error among answers)
    controller = risk_control.BinaryClassificationController(
        predict_function=lambda rows: np.c_[1 - confidence[rows[:, 0]], confidence[rows[:, 0]]],
        risk="precision",
        target_level=1 - alpha,
        confidence_level=1 - ltt.DELTA,
        list_predict_params=ltt.GRID[: start + 1],
        fwer_method="fixed_sequence",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its monotonicity check on a drawn (noisy) error curve
        controller.calibrate(np.arange(len(confidence))[:, None], correct.astype(int))
    theirs = controller.best_predict_param
    assert ours is not None  # 1,500 photos: every level has a threshold
    # its p-values round one error up at some thresholds (above), so it answers what ours does or a little less (and
    # among thresholds that answer the same photos it may name another)
    assert theirs is not None
    ours_answer, theirs_answer = (confidence >= ours).sum(), (confidence >= theirs).sum()
    assert 0.9 * ours_answer <= theirs_answer <= ours_answer


def test_the_promise_holds_over_many_draws():
    """With probability at least 90% the error among answers (counted on a large fresh sample) is at most the level;
    a draw without a threshold answers nothing, which breaks no promise."""
    alpha, broken, found = 0.1, 0, 0
    fresh_conf, fresh_correct = _draw(200_000, seed=12345, power=0.5)
    for seed in range(200):
        confidence, correct = _draw(300, seed=seed, power=0.5)
        threshold = ltt.learn_then_test(confidence, correct, _draw(200, seed=10_000 + seed, power=0.5), alpha)
        if threshold is None:
            continue
        found += 1
        answered = fresh_conf >= threshold
        broken += (~fresh_correct[answered]).mean() > alpha
    assert found > 80  # 150 calibration photos of a middling model: about half the draws find a threshold
    assert broken / 200 <= ltt.DELTA


def test_no_threshold_says_the_nearest_level_and_its_share():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, size=200)
    correct = rng.uniform(size=200) < 0.85  # 15% wrong whatever the confidence: no threshold gives 1%
    fitted = sel.fit(
        np.c_[confidence, 1 - confidence],
        np.where(correct, 0, 1),
        [f"p{i}.jpg" for i in range(200)],
        ["a", "b"],
        np.c_[confidence[:80], 1 - confidence[:80]],
        np.where(correct[:80], 0, 1),
        max_error=0.01,
        spread_splits=20,
    )
    assert fitted.threshold is None
    assert not any(photo["answered"] for photo in fitted.photos)
    near = fitted.nearest
    assert near is not None and near["max_error"] > 0.01 and near["max_error"] in ltt.LEVELS
    assert near["held_out"]["share_answered"] > 0
    # what it answered there is the held-out half's count, recounted from the photos as listed
    there = [p for p in fitted.photos if p["confidence"] >= near["threshold"]]
    assert near["held_out"]["answered"] == len(there) and near["held_out"]["photos"] == len(fitted.photos)
    assert near["held_out"]["errors"] == sum(p["label"] != p["prediction"] for p in there)
    # one answer wherever it is asked: a fit at another level, read back, gives the same nearest level and count
    other = sel.Selective.from_dict(
        sel.fit(
            np.c_[confidence, 1 - confidence],
            np.where(correct, 0, 1),
            [f"p{i}.jpg" for i in range(200)],
            ["a", "b"],
            np.c_[confidence[:80], 1 - confidence[:80]],
            np.where(correct[:80], 0, 1),
            max_error=0.5,
            spread_splits=0,
        ).to_dict()
    )
    assert other.nearest_at(0.01) == near
    answered, why = sel.decision(other, 0.99, 0.01)
    cannot, nearest = sel.no_threshold_words(0.01, near)
    assert not answered and why == f"{cannot}; {nearest}"
    assert "no threshold can promise at most 1% wrong on this run's photos, so at 1% every photo is held back" in why
    held = near["held_out"]
    assert (
        near["threshold"] > 0
        and (
            f"the nearest level it can promise is {near['max_error']:.0%} wrong: answering when the top probability is "
            f"{sel.threshold_text(near['threshold'])} or more, it answered {held['answered']} of {held['photos']} "
            f"held-out test photos ({held['share_answered']:.0%}), {held['errors']} of them wrong"
        )
        == nearest
    )
    everything = {**near, "threshold": 0.0}  # a threshold of 0 answers every photo, and is said so
    assert sel.no_threshold_words(0.01, everything)[1].startswith(
        f"the nearest level it can promise is {near['max_error']:.0%} wrong: answering every photo, it answered"
    )


def test_no_level_at_all_is_said_and_thresholds_are_written_as_exactly_as_they_are():
    assert sel.no_threshold_words(0.3, None)[1].startswith("no level up to 50% can be promised either")
    assert sel.threshold_text(0.612) == "0.612" and sel.threshold_text(0.9) == "0.900"
    fine = float(ltt.GRID[-3])  # one of the thresholds finer than a thousandth, near 1
    assert sel.threshold_text(fine) != f"{fine:.3f}" and abs(float(sel.threshold_text(fine)) - fine) < 1e-6
    assert ltt.LEVELS[0] == 0.01 and ltt.LEVELS[-1] == 0.5 and len(ltt.LEVELS) == 50 and 0.3 in ltt.LEVELS


def test_fit_reports_held_out_photos_that_recount():
    confidence, correct = _draw(600, seed=4, low=0.5, power=0.5)
    labels = np.zeros(600, dtype=int)
    probabilities = np.c_[confidence, 1 - confidence]
    labels[~correct] = 1  # the top class (0) is wrong exactly where the draw says
    paths = [f"{i}.jpg" for i in range(600)]
    fitted = sel.fit(probabilities, labels, paths, ["a", "b"], probabilities[:100], labels[:100], 0.2)
    rows = fitted.photos
    assert len(rows) == 300 and {"path", "label", "prediction", "answered"} <= set(rows[0])
    answered = [r for r in rows if r["answered"]]
    wrong = sum(r["label"] != r["prediction"] for r in answered)
    assert fitted.held_out.answered == len(answered) > 0 and fitted.held_out.errors == wrong
    assert wrong <= fitted.held_out.allowed_errors
    assert fitted.spread is not None and 0 < fitted.spread.share_mean <= 1
    again = sel.Selective.from_dict(fitted.to_dict())
    assert again.threshold == fitted.threshold and again.threshold_at(0.2) == fitted.threshold
    assert again.threshold_at(0.3) <= fitted.threshold  # a looser level answers at least as much


def test_levels_are_checked_and_percentages_read():
    assert sel.check_max_error(5) == 0.05 and sel.check_max_error(0.2) == 0.2
    with pytest.raises(sel.SelectiveError, match=r"0\.01-0\.50"):
        sel.check_max_error(0.001)
    assert ltt.fewest_answers(0.05) == math.ceil(math.log(0.1) / math.log(0.95)) == 45


def test_run_selective_is_stored_and_used(trained_run, tmp_path):
    from tests.conftest import copy_run

    run_dir = copy_run(trained_run["models_root"] / trained_run["run_id"], tmp_path / "run")
    fitted = sel.run_selective(run_dir)
    assert fitted is not None and run_files(run_dir).selective.exists()
    assert sel.load(run_dir).held_out == fitted.held_out
    answered, why = sel.decision(fitted, 0.0, 0.2)
    assert not answered and why


@pytest.mark.slow
def test_core_calibrate_max_error_answers_real_photos_within_the_level(flower_run, capsys):
    """Issue 42's done-check: on held-out real photos of two classes (random start, 64 px), `core calibrate --max-error
    0.2 --json` answers some photos, and the error among them, recounted from the per-photo rows, is at most 20%
    within the slack of a finite count (the errors a true rate of 20% stays under in 95% of counts this size).
    The command runs through the CLI's `main` in this process: the process boundary is not the subject."""
    import json

    from scipy.stats import binom

    from core.cli import main

    argv = ["calibrate", flower_run["run_id"], "--max-error", "0.2", "--json"]
    argv += ["--models-dir", str(flower_run["models_root"]), "--data-dir", str(flower_run["data_root"])]
    code = main(argv)
    printed = capsys.readouterr()
    assert code == 0, printed.err[-3000:]
    report = json.loads(printed.out)["selective"]
    photos = report["photos"]
    assert len(photos) >= 100 and {"path", "label", "prediction", "answered"} <= set(photos[0])
    answered = [p for p in photos if p["answered"]]
    wrong = sum(p["label"] != p["prediction"] for p in answered)
    assert report["held_out"]["answered"] == len(answered) and report["held_out"]["errors"] == wrong
    assert report["threshold"] is not None and len(answered) / len(photos) > 0, report.get("nearest")
    assert all(p["answered"] == (p["confidence"] >= report["threshold"]) for p in photos)
    # the slack the method states, recomputed here: a true error of 20% gives at most this many in 95% of counts
    slack = int(binom.ppf(0.95, len(answered), 0.2))
    assert report["held_out"]["allowed_errors"] == slack
    assert wrong <= slack, f"{wrong} wrong of {len(answered)} answered: above 20% beyond a finite count's slack"


def _fragile_fit(max_error: float, splits: int = 40):
    """A weak model's 54 test photos (as the walk's random start at 64 px): right with chance equal to confidence."""
    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.34, 1.0, size=54)
    correct = rng.uniform(size=54) < confidence
    labels = np.where(correct, 0, 1)
    probabilities = np.c_[confidence, 1 - confidence]
    paths = [f"{i}.jpg" for i in range(54)]
    return sel.fit(
        probabilities, labels, paths, ["a", "b"], probabilities[:30], labels[:30], max_error, spread_splits=splits
    )


def test_a_promise_found_in_few_halvings_is_said_fragile_with_its_counts():
    near = _fragile_fit(0.05).nearest
    assert near is not None
    fitted = _fragile_fit(near["max_error"])
    s = fitted.spread
    # the spread recounts from the stored photos: the same figures at that level from a fit at another level
    again = sel.Selective.from_dict(_fragile_fit(0.05).to_dict()).spread_at(near["max_error"], 40)
    assert again == s
    missing = sum(
        ltt.learn_then_test(*_halves(fitted, seed_perm), fitted.validation, fitted.max_error) is None
        for seed_perm in _perms(fitted, 40)
    )
    assert s.without_threshold == missing
    found = s.splits - s.without_threshold
    words = sel.fragile_words(s)
    assert s.fragile and s.without_threshold > 0.1 * s.splits  # this weak model's nearest level is luck of the draw
    assert words.startswith(
        f"on other random halvings of the same test photos, each fitting its own threshold, no threshold could be "
        f"promised in {s.without_threshold} of {s.splits}"
    )
    assert f"({s.share_mean * s.splits / found:.0%} in the {found} where one was found)" in words
    line = sel.halvings_words(s, fitted.max_error)
    assert "each fitting its own threshold" in line and "error among answered photos" in line
    assert f"leave out the {s.without_threshold} where no threshold was found" in line
    # the words follow the counts, not the model: a made-up spread on each side of a tenth
    base = dict(s.__dict__)
    assert sel.fragile_words(sel.SelectiveSpread(**{**base, "splits": 200, "without_threshold": 20})) is None
    few = sel.SelectiveSpread(**{**base, "splits": 200, "without_threshold": 155, "share_mean": 0.22})
    assert sel.fragile_words(few).endswith(
        "no threshold could be promised in 155 of 200, so over all 200 it answered 22% of photos on average "
        "(98% in the 45 where one was found)"
    )


def _perms(fitted, splits):
    rng = np.random.default_rng(1)
    n = len(fitted.calibration_confidence) + len(fitted.photos)
    return [rng.permutation(n) for _ in range(splits)]


def _halves(fitted, perm):
    confidence = np.r_[fitted.calibration_confidence, [p["confidence"] for p in fitted.photos]]
    correct = np.r_[fitted.calibration_correct, [p["label"] == p["prediction"] for p in fitted.photos]].astype(bool)
    cal = perm[: len(perm) // 2]
    return confidence[cal], correct[cal]


def test_core_calibrate_prints_the_halvings_line_and_a_promise_found_in_few_halvings(capsys):
    from core.cli.selective import print_selective

    near = _fragile_fit(0.05).nearest
    fitted = _fragile_fit(near["max_error"])
    print_selective(fitted)
    out = capsys.readouterr().out
    assert sel.halvings_words(fitted.spread, fitted.max_error) + "\n" in out
    assert f"many halvings find no threshold here: {sel.fragile_words(fitted.spread)}\n" in out


def test_no_level_at_all_still_says_how_often_other_halvings_found_one():
    """Walk 52: 'no level up to 50% can be promised' while 30 of 200 halvings found a threshold at 50%, and the JSON
    listed only the held-out half, so the sentence could not be recounted."""

    def weak(seed: int):  # 40 photos right half the time whatever the confidence
        rng = np.random.default_rng(seed)
        confidence = rng.uniform(0.34, 0.7, size=40)
        labels = np.where(rng.uniform(size=40) < 0.55, 0, 1)
        p = np.c_[confidence, 1 - confidence]
        return sel.fit(p, labels, [f"{i}.jpg" for i in range(40)], ["a", "b"], p, labels, 0.05)

    lucky, never = weak(1), weak(0)
    for fitted in (lucky, never):
        assert fitted.nearest is None  # no level up to 50% on the photos drawn
        summary = fitted.summary()
        assert [p["confidence"] for p in summary["calibration"]] == sorted(fitted.calibration_confidence, reverse=True)
        assert len(summary["calibration"]) == summary["calibration_photos"]
    top = lucky.spread_at(ltt.LEVELS[-1])
    assert 0 < top.found < top.splits
    assert lucky.no_level_words().startswith(
        f"on other random halvings of the same test photos, each fitting its own, a threshold at 50% was found in "
        f"{top.found} of {top.splits}"
    )
    assert never.spread_at(ltt.LEVELS[-1]).found == 0 and never.no_level_words() is None


def test_halvings_whose_thresholds_failed_on_their_other_halves_are_no_support():
    """Walk 53: halvings that found a threshold at 50% were wrong 67% of the time on their answers, said as support."""
    from types import SimpleNamespace

    from core.results.probabilities.selective_words import other_halvings_words

    failed = SimpleNamespace(found=30, splits=200, error_mean=0.67)
    said = other_halvings_words(failed, 0.5)
    assert "found in 30 of 200, but on their other halves the error among the photos answered was 67%" in said
    assert said.endswith("so they are no support")
    held = other_halvings_words(SimpleNamespace(found=30, splits=200, error_mean=0.41), 0.5)
    assert "(the error among the photos they answered 41% on average)" in held and "no support" not in held
