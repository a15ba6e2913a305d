"""Comparing multi-label runs: AP per label and mAP differences on the same photos, a paired bootstrap interval and a
paired permutation test, each checked against scipy's own (`permutation_test` with paired samples, `bootstrap`) on
the same data; the verdict in words claims a difference only where interval and test both show one."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score

from core.results.evaluation import multilabel_compare as mc
from core.results.evaluation import multilabel_compare_words as words
from core.results.evaluation.compare import NotComparable
from core.results.evaluation.multilabel import MultilabelEvaluation
from core.train.average_precision import average_precisions, mean_average_precision

pytestmark = pytest.mark.backend_agnostic

LABELS = ["cat", "dog", "sky", "tree"]


def scored(n: int, c: int = 4, strength_a: float = 0.3, strength_b: float = 0.6, seed: int = 0):
    """0/1 targets and two runs' scores: each run's score is `strength` x truth plus noise (B the stronger)."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, c)) < 0.45).astype(np.uint8)
    targets[0] = 1  # every label has a photo
    return targets, strength_a * targets + rng.random((n, c)), strength_b * targets + rng.random((n, c))


def side(run_id: str, targets, scores, paths=None, labels=LABELS, split_hash="s") -> mc.MultilabelSide:
    paths = paths or [f"images/m{i:03d}.png" for i in range(len(targets))]
    evaluation = MultilabelEvaluation(scores, targets, list(labels), list(paths), np.full(len(labels), 0.5))
    return mc.MultilabelSide(run_id, evaluation, split_hash=split_hash)


# ----------------------------------------------------------------------------- the numbers


def test_row_average_precision_is_scikit_learns_with_ties_and_ranks_keep_it():
    targets, a, b = scored(50)
    a, b = a.round(1), b.round(1)  # many ties
    for j in range(4):
        rows = mc.row_average_precisions(targets[:, j], np.vstack([a[:, j], b[:, j], mc.ranks(a)[:, j]]))
        expected = average_precision_score(targets[:, j], a[:, j])
        assert rows == pytest.approx([expected, average_precision_score(targets[:, j], b[:, j]), expected], abs=1e-12)
    assert np.isnan(mc.row_average_precisions(np.zeros(5), np.random.default_rng(0).random((2, 5)))).all()


def _scipy_permutation(targets, a, b, resamples, seed=None):
    """scipy's paired permutation test of the same statistic: each photo's pair (A's ranks, B's ranks) swapped."""
    stacked = np.concatenate([mc.ranks(a), mc.ranks(b)])
    n = len(targets)

    def statistic(x, y):
        return mean_average_precision(targets, stacked[y.astype(int)]) - mean_average_precision(
            targets, stacked[x.astype(int)]
        )

    return stats.permutation_test(
        (np.arange(n), np.arange(n) + n),
        statistic,
        permutation_type="samples",
        vectorized=False,
        n_resamples=resamples,
        alternative="two-sided",
        rng=seed,
    )


def test_permutation_test_on_few_photos_is_exact_and_scipys():
    targets, a, b = scored(10, c=3, seed=5)
    ours = mc.permutation_test(targets, a, b)
    theirs = _scipy_permutation(targets, a, b, resamples=5000)  # 2^10 <= 5000: scipy enumerates them all too
    assert ours["exact"] and ours["permutations"] == 2**10
    assert ours["difference"] == pytest.approx(theirs.statistic, abs=1e-12)
    assert ours["difference"] == pytest.approx(
        mean_average_precision(targets, b) - mean_average_precision(targets, a), abs=1e-12
    )
    assert ours["p_value"] == pytest.approx(theirs.pvalue, abs=1e-12)
    assert 0.01 < ours["p_value"] < 1  # a case where the p-value is neither floor nor ceiling


def test_permutation_test_on_many_photos_draws_and_agrees_with_scipy():
    targets, a, b = scored(40, strength_a=0.5, strength_b=0.55, seed=8)
    ours = mc.permutation_test(targets, a, b, permutations=3000, seed=1)
    theirs = _scipy_permutation(targets, a, b, resamples=3000, seed=2)
    assert not ours["exact"] and ours["permutations"] == 3000
    assert 0.005 < theirs.pvalue < 0.5
    assert ours["p_value"] == pytest.approx(theirs.pvalue, abs=0.04)  # two Monte Carlo draws of the same p


def test_identical_runs_have_p_one_and_a_zero_interval():
    targets, a, _ = scored(30)
    test = mc.permutation_test(targets, a, a.copy())
    assert test["difference"] == 0 and test["p_value"] == 1.0
    spread = mc.paired_bootstrap(targets, a, a.copy())
    assert spread["map"] == (0.0, 0.0) and np.all(spread["ap"] == 0)


def test_paired_bootstrap_intervals_agree_with_scipys_paired_bootstrap():
    targets, a, b = scored(40, strength_a=0.5, strength_b=0.7, seed=5)
    ours = mc.paired_bootstrap(targets, a, b, resamples=3000, seed=0)

    def statistic(rows):  # each label's AP difference and the mAP difference on the same resampled photos
        rows = rows.astype(int)
        ap_a, ap_b = average_precisions(targets[rows], a[rows]), average_precisions(targets[rows], b[rows])
        return np.r_[ap_b - ap_a, np.nanmean(ap_b) - np.nanmean(ap_a)]

    theirs = stats.bootstrap(
        (np.arange(len(targets)),), statistic, vectorized=False, n_resamples=3000, method="percentile", rng=3
    ).confidence_interval
    assert ours["resamples"] == 3000
    assert ours["ap"][:, 0] == pytest.approx(theirs.low[:4], abs=0.02)
    assert ours["ap"][:, 1] == pytest.approx(theirs.high[:4], abs=0.02)
    assert ours["map"] == pytest.approx((theirs.low[4], theirs.high[4]), abs=0.02)


# ----------------------------------------------------------------------------- the comparison and its words


def test_a_clearly_better_run_on_many_photos_is_said_better():
    targets, a, b = scored(200, strength_a=0.2, strength_b=0.9, seed=1)
    out = mc.compare([side("aaaaaa1", targets, a), side("bbbbbb2", targets, b)])
    pair = out["pairs"][0]
    assert pair["map_difference"] == pytest.approx(
        mean_average_precision(targets, b) - mean_average_precision(targets, a)
    )
    assert out["runs"]["aaaaaa1"]["map"] == pytest.approx(mean_average_precision(targets, a))
    low, high = pair["map_interval"]
    assert 0 < low < pair["map_difference"] < high and pair["p_value"] < 0.001 and pair["shown"]
    assert pair["verdict"].startswith("bbbbbb ranks better than aaaaaa on these 200 test photos, by mAP")
    assert "No real difference" not in pair["verdict"]
    differences = [row["difference"] for row in pair["per_label"]]
    assert differences == sorted(differences)  # worst first: where B loses most
    for row in pair["per_label"]:
        j = LABELS.index(row["label"])
        assert row["ap_a"] == pytest.approx(average_precision_score(targets[:, j], a[:, j]))
        assert row["interval"][0] <= row["difference"] <= row["interval"][1]


def test_few_photos_show_no_real_difference_whatever_the_sign():
    targets, a, b = scored(8, strength_a=0.3, strength_b=0.5, seed=2)
    out = mc.compare([side("aaaaaa1", targets, a), side("bbbbbb2", targets, b)])
    pair = out["pairs"][0]
    assert pair["map_difference"] != 0 and not pair["shown"]
    assert pair["exact"] and pair["permutations"] == 2**8
    assert pair["verdict"].startswith("No real difference shown between aaaaaa and bbbbbb on these 8 test photos")
    assert "better" not in pair["verdict"] and "worse" not in pair["verdict"]


def test_runs_ranking_every_label_alike_are_said_to_score_alike_not_to_differ_by_chance():
    """A walk: two runs differing only in corrections of validation photos gave '+0.000 (95% interval +0.000 to
    +0.000) ... the sign of the difference may be chance's'; their scores differed by 2.2e-6 at most (float32's last
    digits), in the same order. Same order for every label: said so, nothing to test."""
    targets, a, _ = scored(30)
    noisy = (a + 2e-6 * np.random.default_rng(1).standard_normal(a.shape)).astype(np.float64)
    assert np.array_equal(mc.ranks(a), mc.ranks(noisy)), "the noise keeps the order (the walk's case)"
    pair = mc.compare([side("aaaaaa1", targets, a), side("bbbbbb2", targets, noisy)])["pairs"][0]
    assert pair["identical"] and pair["map_difference"] == pytest.approx(0, abs=1e-12)
    assert pair["verdict"].startswith("aaaaaa and bbbbbb rank these 30 test photos in the same order for every label")
    assert "chance" not in pair["verdict"]
    swapped = a.copy()
    first, second = np.argsort(a[:, 0])[:2]  # the two lowest photos of the first label change places
    swapped[[first, second], 0] = swapped[[second, first], 0]
    pair = mc.compare([side("aaaaaa1", targets, a), side("bbbbbb2", targets, swapped)])["pairs"][0]
    assert not pair["identical"] and pair["verdict"].startswith("No real difference shown")


def test_an_interval_clear_of_zero_with_p_above_005_is_not_called_a_difference():
    assert mc.shown([0.01, 0.2], 0.01) and mc.shown([-0.2, -0.01], 0.049)
    assert not mc.shown([0.01, 0.2], 0.06) and not mc.shown([-0.01, 0.2], 0.001) and not mc.shown([None, None], 0.001)
    pair = {"map_difference": 0.1, "map_interval": [0.01, 0.2], "p_value": 0.06}
    pair["shown"] = mc.shown(pair["map_interval"], pair["p_value"])
    said = words.verdict(pair, 40, "A", "B")
    assert said.startswith("No real difference shown between A and B on these 40 test photos: mAP +0.100 for B")
    assert "p = 0.060" in said and "the test cannot tell it from chance" in said
    untested = {"map_difference": 0.1, "map_interval": [None, None], "p_value": None, "shown": False}
    assert "untested: the split is too large to resample" in words.verdict(untested, 90_000, "A", "B")


def test_a_split_too_large_to_resample_gets_no_interval_and_no_test(monkeypatch):
    monkeypatch.setattr(mc.bootstrap, "MAX_CELLS", 100)
    targets, a, b = scored(30)  # 120 cells
    assert mc.permutation_test(targets, a, b)["p_value"] is None
    assert mc.paired_bootstrap(targets, a, b)["resamples"] == 0
    pair = mc.compare([side("aaaaaa1", targets, a), side("bbbbbb2", targets, b)])["pairs"][0]
    assert pair["map_interval"] == [None, None] and not pair["shown"] and "untested" in pair["verdict"]


def test_a_label_without_a_positive_test_photo_has_no_ap_and_is_said_left_out():
    targets, a, b = scored(30, seed=3)
    targets[:, 2] = 0  # no test photo is 'sky'
    out = mc.compare([side("aaaaaa1", targets, a), side("bbbbbb2", targets, b)])
    assert out["labels_without_positive"] == ["sky"]
    assert out["runs"]["aaaaaa1"]["ap"]["sky"] is None
    row = next(r for r in out["pairs"][0]["per_label"] if r["label"] == "sky")
    assert row["difference"] is None and out["pairs"][0]["per_label"][-1] is row  # untested last
    assert out["runs"]["aaaaaa1"]["map"] == pytest.approx(
        np.mean([average_precision_score(targets[:, j], a[:, j]) for j in (0, 1, 3)])
    )
    assert "mean AP over the 3 label(s)" in out["scope"] and "'sky' no test photo has" in out["scope"]
    assert "On these 30 test photos alone" in out["scope"]


def test_photos_one_run_lacks_or_labelled_otherwise_are_left_out_and_said():
    targets, a, b = scored(30, seed=4)
    paths = [f"images/m{i:03d}.png" for i in range(30)]
    other = targets.copy()
    other[5] = 1 - other[5]  # a correction changed photo 5's labels in B's run
    sides = [side("aaaaaa1", targets, a, paths), side("bbbbbb2", other[1:], b[1:], paths[1:])]
    out = mc.compare(sides)
    assert out["test_images"] == 28
    assert out["left_out"] == {"only_in": {"aaaaaa1": 1, "bbbbbb2": 0}, "relabelled": 1}
    assert "1 test photo(s) only aaaaaa has" in out["difference"]
    keep = [i for i in range(30) if i not in (0, 5)]
    assert out["runs"]["bbbbbb2"]["map"] == pytest.approx(mean_average_precision(targets[keep], b[keep]))


def test_other_labels_or_no_shared_photo_are_refused_with_the_reason():
    targets, a, b = scored(20)
    with pytest.raises(NotComparable, match="different labels"):
        mc.compare([side("aaaaaa1", targets, a), side("bbbbbb2", targets, b, labels=["cat", "dog", "sky", "sea"])])
    elsewhere = [f"other/{i}.png" for i in range(20)]
    with pytest.raises(NotComparable, match=r"none in common.*their AP are not paired"):
        mc.compare([side("aaaaaa1", targets, a), side("bbbbbb2", targets, b, elsewhere)])
    with pytest.raises(NotComparable, match="compare 2 to 5 runs"):
        mc.compare([side("aaaaaa1", targets, a)])


def test_three_runs_each_against_the_first():
    targets, a, b = scored(40, seed=6)
    out = mc.compare([side("aaaaaa1", targets, a), side("bbbbbb2", targets, b), side("cccccc3", targets, a.copy())])
    assert [(p["a"], p["b"]) for p in out["pairs"]] == [("aaaaaa1", "bbbbbb2"), ("aaaaaa1", "cccccc3")]
    assert out["pairs"][1]["map_difference"] == 0 and out["pairs"][1]["p_value"] == 1.0


def test_mixing_single_and_multi_label_runs_is_refused():
    runs = [SimpleNamespace(run_id="aaaaaa1", multilabel=True), SimpleNamespace(run_id="bbbbbb2", multilabel=False)]
    with pytest.raises(NotComparable, match=r"aaaaaa is multi-label .* bbbbbb single-label"):
        mc.check_kinds(runs)
    mc.check_kinds(runs[:1] * 2)  # one kind: nothing to say


def test_label_words_name_the_labels_whose_interval_leaves_out_zero():
    pair = {
        "per_label": [
            {"label": "dog", "difference": -0.3, "clear_of_zero": True},
            {"label": "cat", "difference": 0.05, "clear_of_zero": False},
            {"label": "sky", "difference": 0.4, "clear_of_zero": True},
            {"label": "sea", "difference": None, "clear_of_zero": False},
        ]
    }
    said = words.labels_words(pair, "A", "B")
    assert "B higher on 1 ('sky')" in said and "B lower on 1 ('dog')" in said and "the other 1" in said
    for row in pair["per_label"]:
        row["clear_of_zero"] = False
    assert words.labels_words(pair) == "No label's AP difference has an interval clear of 0 (3 label(s) with an AP)."
