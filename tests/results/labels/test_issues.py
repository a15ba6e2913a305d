"""Suspected label errors: the confident-learning rule, cross-validated probabilities, and a dataset
with labels flipped on purpose."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from core.results.labels import issues as label_issues
from core.results.labels import out_of_sample, power
from core.results.labels import self_test as label_self_test
from tests.conftest import make_image_dataset


@pytest.mark.backend_agnostic
def test_the_rule_flags_confidently_other_images_and_ranks_them_by_self_confidence():
    p = np.array(
        [
            [0.9, 0.1, 0.0],  # labelled 0, clearly 0
            [0.8, 0.2, 0.0],  # labelled 0, clearly 0
            [0.1, 0.9, 0.0],  # labelled 0, clearly 1: flagged
            [0.2, 0.7, 0.1],  # labelled 1
            [0.1, 0.8, 0.1],  # labelled 1
            [0.0, 0.1, 0.9],  # labelled 2
            [0.65, 0.05, 0.3],  # labelled 2, but 0 reaches class 0's threshold and 2 does not: flagged
            [0.45, 0.1, 0.45],  # labelled 2, ambiguous: the top guess ties with the given label
        ]
    )
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    thresholds = label_issues.confident_thresholds(p, y, 3)
    assert thresholds == pytest.approx([(0.9 + 0.8 + 0.1) / 3, 0.75, (0.9 + 0.3 + 0.45) / 3])
    flagged, confident = label_issues.find_label_issues(p, y)
    assert np.flatnonzero(flagged).tolist() == [2, 6]
    assert confident[2] == 1 and confident[6] == 0
    issues = label_issues.rank(p, y, ["a", "b", "c"], [f"{i}.png" for i in range(8)], ["train"] * 8)
    assert [(i.path, i.given, i.suggested) for i in issues] == [("2.png", "a", "b"), ("6.png", "c", "a")]
    assert issues[0].score == pytest.approx(0.1) and issues[1].score == pytest.approx(0.3)


@pytest.mark.backend_agnostic
def test_cross_validation_scores_each_row_with_a_model_that_did_not_see_it():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, size=(3, 16)) * 4
    y = np.repeat(np.arange(3), 30)
    x = centres[y] + rng.normal(0, 1, size=(90, 16))
    flip = np.array([5, 40, 70])
    noisy = y.copy()
    noisy[flip] = (y[flip] + 1) % 3
    p = out_of_sample.out_of_sample(x, noisy, 3).probabilities
    assert p.shape == (90, 3) and np.allclose(p.sum(axis=1), 1)
    # a memorising model would give the flipped rows their (wrong) given label; out of sample they get the truth
    assert (p[flip].argmax(axis=1) == y[flip]).all()
    flagged, _ = label_issues.find_label_issues(p, noisy)
    # the rule is conservative: a flip is flagged only if its true class's probability reaches that
    # class's (here high, ~0.87) threshold; no clean row is ever flagged on well-separated data
    assert set(np.flatnonzero(flagged)) <= set(flip.tolist()) and flagged.sum() >= 2


@pytest.mark.backend_agnostic
def test_tiny_classes_do_not_break_the_folds():
    rng = np.random.default_rng(1)
    y = np.array([0] * 20 + [1] * 20 + [2])  # one class with a single image
    x = rng.normal(size=(41, 8)) + y[:, None] * 3
    p = out_of_sample.out_of_sample(x, y, 3).probabilities
    assert np.isfinite(p).all() and p.shape == (41, 3)


def test_flipped_labels_in_separable_photos_are_found(tmp_path):
    """Four colour classes (separable even through a random ResNet-50), 8 % of photos moved to a wrong
    folder. Thresholds: precision >= 0.7 and recall >= 0.8. The classes are separable, so a correct
    model sees every flipped photo as its true colour (recall should be near 1; 0.8 leaves room for a
    fold that draws several flips); a clean photo is flagged only when its own class's probability is
    unusually low, which a few borderline noisy photos can cause (precision 0.7 allows ~4 of them)."""
    from core.results.dataset_features import DatasetSource
    from core.results.tasks import dataset_label_issues

    classes = {"red": 40, "green": 40, "blue": 40, "yellow": 40}
    root = make_image_dataset(tmp_path / "colours", classes, size=(40, 40), seed=11)
    rng = np.random.default_rng(2)
    names = list(classes)
    flipped = set()
    for k, name in enumerate(names):
        files = sorted((root / name).iterdir())
        for photo in rng.choice(files, size=3, replace=False):  # 12 of 160 = 7.5 %
            target = names[(k + 1 + rng.integers(0, 3)) % 4]
            moved = root / target / f"moved_{name}_{photo.name}"
            shutil.move(photo, moved)
            flipped.add(moved.relative_to(root).as_posix())
    review = dataset_label_issues(DatasetSource(root, tmp_path / "data", image_size=32, weights="none"))
    found = {issue.path for issue in review.issues}
    hits = found & flipped
    precision = len(hits) / max(1, len(found))
    recall = len(hits) / len(flipped)
    assert recall >= 0.8, (recall, sorted(flipped - found))
    assert precision >= 0.7, (precision, sorted(found - flipped))
    by_path = {issue.path: issue for issue in review.issues}
    for path in hits:  # and the suggestion is the photo's real colour
        assert by_path[path].suggested == path.split("moved_")[1].split("_")[0]


@pytest.mark.slow
def test_planted_flips_in_real_photos_lead_the_ranking(tmp_path):
    """The shared flowers (200 a class), 10 % of the labels flipped on purpose, features of a random-start
    ResNet-50 at 64 px through the feature cache (weak features, as in the analyst's walk): the first 50
    suspects hold planted flips far above the 10 % base rate. The old unregularised fit ranked 0.38 there, the
    regularised logistic regression ~0.45, the Gaussian classes 0.48 (measured while building each); the test
    asks for 0.3, three times the base rate. Its self-test: lift 4.8, supported depth 188 of 1,000 photos."""
    import keras

    from core.data.datasets import scan_dataset
    from core.data.ingest import ingest
    from core.network.model import backbone_of, build_classifier
    from core.train.features import FeatureCache, build_extractor, weights_hash
    from tests.conftest import link_subset, require_flowers

    dataset = link_subset(require_flowers(), tmp_path / "flowers", per_class=200)
    cache = ingest(scan_dataset(dataset), 73, tmp_path / "cache", workers=1)
    keras.utils.set_random_seed(0)
    model = build_classifier(5, 64, "none", head=(8,), seed=0, backbone="resnet50")
    store = FeatureCache(tmp_path / "cache", cache, 64, weights_hash(backbone_of(model)))
    features = store.get(build_extractor(model), np.arange(len(cache)), batch_size=64)
    truth = cache.labels.copy()
    rng = np.random.default_rng(1)
    flips = rng.choice(len(truth), len(truth) // 10, replace=False)
    given = truth.copy()
    given[flips] = (truth[flips] + rng.integers(1, 5, len(flips))) % 5
    scored = out_of_sample.out_of_sample(features, given, 5)
    paths = [str(i) for i in range(len(given))]
    ranked = [
        int(issue.path)
        for issue in label_issues.rank(scored.probabilities, given, list("abcde"), paths, ["train"] * len(given))
    ]
    precision = np.isin(ranked[:50], flips).mean()
    assert precision >= 0.3, precision
    assert scored.fit.shrinkage in out_of_sample.SHRINKAGE_GRID and 0.02 < scored.fit.noise < 0.3  # 10% flipped
    top = scored.probabilities[ranked[:10], given[ranked[:10]]]
    assert top.max() < 0.5 and top.min() > 1e-6  # honest, not the saturated 0% of an unregularised fit
    trust = label_self_test.self_test(features, given, 5)
    assert trust["planted"] == 50 and trust["lift"] > 2  # the page's trust figure, on these photos
    assert 0 < trust["depth"] < len(ranked) and trust["found_at_depth"] >= 2 * trust["depth"] * 50 / 1000


def test_small_classes_are_dealt_to_the_folds_not_fitted_once_per_photo():
    """1,000 classes of 1-2 photos: two folds (the smallest class has 1 photo), every photo scored once by a model
    that did not see it (it was one fit per photo, once)."""

    rng = np.random.default_rng(0)
    y = np.concatenate([np.repeat([0, 1], 30), np.arange(2, 300), np.arange(2, 100)])
    x = rng.normal(size=(len(y), 16)).astype(np.float32)
    fold_of = out_of_sample.assign_folds(y, 300, 2, seed=0)
    assert set(fold_of.tolist()) == {0, 1} and abs((fold_of == 0).sum() - (fold_of == 1).sum()) <= 2
    twice = np.flatnonzero(np.bincount(y)[y] == 2)
    pairs = {}
    for row in twice:  # a class of two photos: one in each fold, so each is scored by a model that saw the other
        pairs.setdefault(y[row], set()).add(int(fold_of[row]))
    assert all(folds == {0, 1} for folds in pairs.values())
    result = out_of_sample.out_of_sample(x, y, 300, fit=out_of_sample.Fit(0.1, 1.0, 0.0))
    assert result.probabilities.shape == (len(y), 300) and result.probabilities.dtype == np.float32
    singletons = np.flatnonzero(np.bincount(y)[y] == 1)
    assert np.allclose(result.probabilities[singletons, y[singletons]], 0.0)  # a model that never saw the class


def test_a_fold_fits_on_a_class_balanced_sample_of_a_large_set():
    from core.results.labels.out_of_sample import balanced_sample

    y = np.concatenate([np.zeros(9000, int), np.ones(900, int), np.full(100, 2)])
    rows = np.arange(len(y))
    chosen = balanced_sample(rows, y, 1000, np.random.default_rng(0))
    counts = np.bincount(y[chosen], minlength=3)
    assert len(chosen) <= 1000 and counts[2] == 100  # the small class whole, the large ones cut to one share
    assert counts[0] == counts[1] == 450
    assert np.array_equal(balanced_sample(rows[:50], y, 1000, np.random.default_rng(0)), rows[:50])


def test_many_classes_see_fewer_principal_directions():
    from core.results.labels.out_of_sample import MAX_DIMENSIONS, dimensions

    assert dimensions(5) == dimensions(102) == dimensions(256) == MAX_DIMENSIONS
    assert dimensions(1000) == 65 and dimensions(100_000) == 32


def test_a_set_where_every_class_has_one_photo_is_scored_without_stratifying():
    from core.results.labels.out_of_sample import out_of_sample

    rng = np.random.default_rng(1)
    y = np.arange(40)
    result = out_of_sample(rng.normal(size=(40, 8)).astype(np.float32), y, 40)
    assert result.probabilities.shape == (40, 40)
    assert np.allclose(result.probabilities[y, y], 0.0)  # each photo's class was never seen by its model


def test_the_rule_and_the_ranking_read_the_rows_in_chunks_with_the_same_result(monkeypatch):
    from core.results.labels import issues as label_issues

    rng = np.random.default_rng(4)
    labels = rng.integers(0, 7, 500)
    probabilities = rng.dirichlet(np.ones(7) * 0.5, 500).astype(np.float32)
    whole = label_issues.find_label_issues(probabilities, labels), label_issues.log_odds(probabilities, labels)
    monkeypatch.setattr(label_issues, "ROWS_AT_ONCE", 37)
    chunked = label_issues.find_label_issues(probabilities, labels), label_issues.log_odds(probabilities, labels)
    assert np.array_equal(whole[0][0], chunked[0][0]) and np.array_equal(whole[0][1], chunked[0][1])
    assert np.allclose(whole[1], chunked[1])
    assert whole[0][0].any()  # a real case: some flagged


def test_the_splits_are_read_in_place_with_the_same_review_as_joined():
    from core.results.labels import issues as label_issues

    rng = np.random.default_rng(6)
    parts = {}
    for name, n in (("train", 300), ("val", 40), ("test", 45)):
        labels = rng.integers(0, 6, n)
        parts[name] = (
            rng.dirichlet(np.ones(6) * 0.4, n).astype(np.float32),
            labels,
            [f"{name}/{i}.jpg" for i in range(n)],
        )
    classes = [f"c{i}" for i in range(6)]
    review = label_issues.review(parts, classes, "test")
    joined = np.concatenate([p[0] for p in parts.values()])
    labels = np.concatenate([p[1] for p in parts.values()])
    paths = [path for p in parts.values() for path in p[2]]
    splits = [name for name, p in parts.items() for _ in p[2]]
    expected = label_issues.rank(joined, labels, classes, paths, splits)[: label_issues.estimate_errors(joined, labels)]
    assert [i.to_dict() for i in review.issues] == [i.to_dict() for i in expected] and review.issues


@pytest.mark.backend_agnostic
def test_the_supported_depth_is_where_planted_flips_stop_coming_twice_as_often_as_at_random():
    """The rule (label_self_test): the depth maximising found(d) - 2 d planted / photos, checked by brute force on
    a ranking that is pure flips for 30 suspects, one in eight for the next 80 (above twice the 5% base rate),
    then one in forty (below it): the supported depth ends at the last flip of the middle stretch."""
    planted, photos = 50, 1000
    is_flip = np.r_[np.ones(30), np.tile([1] + [0] * 7, 10), np.tile([0] * 39 + [1], 5)].astype(bool)
    hits = np.cumsum(is_flip)
    depth = label_self_test.supported_depth(hits, planted, photos)
    brute = max(range(1, len(hits) + 1), key=lambda d: (hits[d - 1] - 2 * d * planted / photos, -d))
    assert depth == brute == 30 + 72 + 1
    # past it, the next suspects hold flips less than twice as often as random picks
    assert hits[depth + 79] - hits[depth - 1] < 2 * 80 * planted / photos
    assert label_self_test.supported_depth(np.cumsum(np.tile([1] + [0] * 19, 20)), planted, photos) == 0  # chance
    assert label_self_test.supported_depth(np.cumsum([1, 1, 0, 0]), planted, photos) == 0  # two hits are luck
    assert label_self_test.supported_depth(np.zeros(0, int), planted, photos) == 0


@pytest.mark.backend_agnostic
def test_the_list_is_bounded_by_the_self_tests_depth_scaled_to_the_photos_and_says_why():
    trust = {"planted": 50, "found": 30, "chance": 2.5, "lift": 12.0, "photos": 1000, "depth": 80, "found_at_depth": 34}
    supported, why = label_issues.bound(trust, images=2500, listed=600)
    assert supported == 200  # 8% of the self-test's photos: 8% of these 2,500
    assert "When 50 of 1,000 training labels were swapped on purpose as a test" in why
    assert "the first 80 suspects held 34 of the swapped photos: 8.5 times as many" in why
    assert "Scaled to these 2,500 photos, that depth is the first 200 suspects; the other 400 have weaker" in why
    short, said = label_issues.bound(trust, images=2500, listed=150)
    assert short == 150  # never more than the list, and the depth said as it is (walk 51: 'the first 82' for 121)
    assert "that depth is the first 200 suspects, deeper than the 150 listed: review them all." in said
    assert label_issues.bound({**trust, "depth": 0, "found_at_depth": 0}, 2500, 600)[0] == 0
    assert "no stretch at the top" in label_issues.bound({**trust, "depth": 0}, 2500, 600)[1]
    # walk of issue 38, item 16: 1 flip among the first 6 against 0.3 by chance is above twice chance, but luck
    lucky = {"planted": 20, "found": 2, "chance": 1.0, "lift": 2.0, "photos": 400, "depth": 0, "found_at_depth": 0}
    why = label_issues.bound(lucky, 500, 20)[1]
    assert "no stretch" not in why and "only 2 of them came among the first 20 suspects" in why
    assert "more than the 1.0 a random pick would hold, but fewer than 3, too few to tell from luck" in why
    # walk of issue 40, item 7: 1 flip among the first 6 of 120 photos judges nothing either way: the test is too small
    small = {"planted": 6, "found": 1, "chance": 0.3, "lift": 3.3, "photos": 120, "depth": 0, "found_at_depth": 0}
    why = label_issues.bound(small, 150, 20)[1]
    assert why.startswith("The self-test was too small to judge the list (6 training labels swapped on purpose")
    assert "Treat every suspect as a guess" not in why and "Look through the list by eye, most suspicious first" in why
    assert label_issues.bound({"planted": 0, "lift": None}, 2500, 600)[0] is None  # no self-test: not bounded
    assert label_issues.bound(None, 2500, 600)[0] is None


@pytest.mark.backend_agnostic
def test_a_review_keeps_what_is_supported_first_and_every_output_marks_it(tmp_path):
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 4, 400)
    probabilities = rng.dirichlet(np.ones(4) * 0.3, 400).astype(np.float32)
    parts = {"train": (probabilities, labels, [f"{i}.jpg" for i in range(400)])}
    trust = {"planted": 20, "found": 9, "chance": 1.0, "lift": 9.0, "photos": 400, "depth": 12, "found_at_depth": 8}
    review = label_issues.review(parts, list("abcd"), "test", trust=trust)
    assert len(review.issues) > 12 and review.supported == 12
    assert review.first == review.issues[:12] and review.behind == review.issues[12:]
    assert review.supported_why.startswith("When 20 of 400 training labels were swapped on purpose")
    label_issues.save(review, tmp_path)
    again = label_issues.load(tmp_path)
    assert again.supported == 12 and again.supported_why == review.supported_why and again.first == review.first
    rows = label_issues.export_rows(review.issues, None, review.supported)
    assert [r["supported"] for r in rows] == ["yes"] * 12 + ["no"] * (len(rows) - 12)
    assert {r["supported"] for r in label_issues.export_rows(review.issues)} == {""}
    summary = review.summary(lambda path: "fine" if path == review.issues[0].path else None, limit=15)
    assert summary["supported"] == 12 and summary["behind"] == len(review.issues) - 12 and len(summary["issues"]) == 15
    assert [row["supported"] for row in summary["issues"]] == [True] * 12 + [False] * 3
    assert summary["issues"][0]["marked"] == "fine" and summary["supported_why"] == review.supported_why
    unbounded = label_issues.review(parts, list("abcd"), "test")
    assert unbounded.supported is None and unbounded.first == unbounded.issues and not unbounded.behind


@pytest.mark.backend_agnostic
def test_a_review_from_before_the_bound_is_computed_again(tmp_path):
    from core.fileio import write_json_atomic
    from core.runs.record import LABEL_ISSUES_FILE

    write_json_atomic(tmp_path / LABEL_ISSUES_FILE, {"issues": [], "images": 3, "version": 2, "C": 0.01})
    assert label_issues.load(tmp_path) is None and label_issues.LABEL_ISSUES_VERSION == 3


def test_the_self_tests_power_says_whether_it_could_judge_the_list():
    # walk of issue 40, item 7: 9 flips planted among 180 photos; a random order puts about 0.45 among the first 9
    walk = {"planted": 9, "found": 0, "chance": 0.45, "photos": 180, "depth": 0, "found_at_depth": 0}
    figures = power.self_test_power(walk)
    assert figures["needed"] == 3, "P(3 or more | random order) is under 5%; P(2 or more) is not"
    assert 0.2 < figures["power"] < 0.3 and figures["too_small"]
    assert power.inconclusive(walk)
    assert not power.inconclusive({**walk, "found": 3}), "3 of 9 beats chance, even on a small test"
    large = {"planted": 40, "found": 0, "chance": 2.0, "photos": 800, "depth": 0, "found_at_depth": 0}
    assert power.self_test_power(large)["power"] > 0.9 and not power.inconclusive(large)
    assert power.self_test_power({"planted": 0, "lift": None}) is None
    assert not power.inconclusive(None)
