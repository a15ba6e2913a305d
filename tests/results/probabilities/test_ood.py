"""Out of distribution: foreign images (noise, flat images, drawings, other photos) are flagged far more often
than the test split's photos; every detector is measured and the best on the selection set is used."""

from __future__ import annotations

import numpy as np
import pytest

from core.results.probabilities.ood import (
    IN_DISTRIBUTION_PASS,
    OODDetector,
    Projection,
    energy_score,
    threshold_for,
    top_directions,
)
from core.results.probabilities.reference import Reference, compute_reference, ensure_reference
from core.runs.curves import REFERENCE_STAGE
from core.runs.store import RunStore
from tests.conftest import copy_run


@pytest.fixture(scope="module")
def run_copy(trained_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("ood") / "models"
    copy_run(trained_run["store"].run_dir(trained_run["run_id"]), root / trained_run["run_id"])
    return RunStore(root).get(trained_run["run_id"]), trained_run["data_root"]


def test_foreign_images_are_flagged_far_more_than_test_photos(run_copy):
    run, data_root = run_copy
    reference = compute_reference(run, data_root)
    evidence = reference.detector.evidence
    for method, figures in evidence.items():
        print(
            f"{method}: test flagged {figures['test_flagged']:.1%}, "
            f"foreign flagged {figures['foreign_flagged_all']:.1%} {figures['foreign_flagged']}, "
            f"AUROC {figures['auroc_test_vs_foreign']:.3f}"
        )
    chosen = evidence[reference.detector.method]
    assert chosen["foreign_flagged_all"] >= chosen["test_flagged"] + 0.4
    assert chosen["selection_caught"] == max(e["selection_caught"] for e in evidence.values())
    assert 0.9 <= 1 - chosen["val_flagged"] <= 1.0  # the threshold lets about 95 % of validation photos pass


def test_training_s_own_outputs_fit_the_same_reference_as_a_pass_of_the_photos(run_copy):
    """Training fits the reference from the features and logits it already has (KnownOutputs): the same detector
    and baselines as a pass of every photo through the served graph, within float16 rounding."""
    from core.results.probabilities.reference import KnownOutputs
    from core.runs.analysis import RunAnalysis

    run, data_root = run_copy
    analysis = RunAnalysis.load(run.directory)
    known = KnownOutputs(
        val=(analysis.val.features, analysis.val.logits), test=(analysis.test.features, analysis.test.logits)
    )
    counts = {"reused": [], "passed": []}
    reused = compute_reference(run, data_root, known=known, progress=lambda *a: counts["reused"].append(a))
    passed = compute_reference(run, data_root, progress=lambda *a: counts["passed"].append(a))
    # the step counts the images it passes through the model, up to its total (training's are not passed again)
    for said in counts.values():
        assert {stage for stage, _, _ in said} == {REFERENCE_STAGE} and said[0][1] == 0
        assert [done for _, done, _ in said] == sorted(done for _, done, _ in said) and said[-1][1] == said[-1][2]
    photos = len(analysis.val.labels) + len(analysis.test.labels)
    assert counts["passed"][-1][2] - counts["reused"][-1][2] == photos
    assert reused.detector.method == passed.detector.method
    assert reused.detector.thresholds == pytest.approx(passed.detector.thresholds, rel=0.05, abs=0.05)
    np.testing.assert_allclose(reused.val_confidence, passed.val_confidence, atol=0.02)
    assert (reused.val_predicted == passed.val_predicted).mean() >= 0.95
    wrong_length = KnownOutputs(val=(analysis.val.features[:1], analysis.val.logits[:1]))
    assert wrong_length.split("val", len(analysis.val.labels)) is None  # not the split's photos: passed again


def test_a_rerun_on_the_same_frozen_backbone_reads_the_foreign_images_features_back(run_copy, monkeypatch):
    """The foreign images' pooled features depend on the backbone alone: the second fit reads them from the feature
    cache and takes its logits from the head, passes none of them through the network, and fits the same detector."""
    from core.network.model import backbone_of, load_classifier
    from core.paths import cache_dir, foreign_dir
    from core.results.after_fit import head_logits
    from core.results.probabilities.foreign import foreign_images
    from core.results.probabilities.foreign_features import FrozenBackbone
    from core.results.probabilities.reference import load_inference_model
    from core.runs.files import run_files
    from core.train.features import weights_hash

    run, data_root = run_copy
    classifier = load_classifier(run_files(run).model)
    frozen = FrozenBackbone(weights_hash(backbone_of(classifier)), head_logits(classifier))
    graph = load_inference_model(run)
    passed = []

    class Counting:  # the graph, counting the images it is given
        output_names = graph.output_names

        def predict_on_batch(self, batch):
            passed[-1] += len(batch)
            return graph.predict_on_batch(batch)

    def fit(backbone: FrozenBackbone):
        passed.append(0)
        return compute_reference(run, data_root, make_model=Counting, frozen=backbone)

    from core.results.probabilities import reference as module

    drawn = []
    monkeypatch.setattr(module, "foreign_images", lambda *a, **k: drawn.append(1) or foreign_images(*a, **k))
    kept = foreign_dir(cache_dir(data_root))
    for path in kept.glob("foreign-*.npz"):  # the run's own training kept them already: start from none
        path.unlink()
    try:
        first = fit(frozen)
        assert len(drawn) == 2  # both sets drawn
        second = fit(frozen)
        assert len(drawn) == 2  # none drawn again: their statistics were kept with their features
        assert len([p for p in kept.glob(f"foreign-*-{frozen.key}-seed*.npz")]) == 2  # selection and report sets
        config = run.train_config
        foreign = sum(
            len(i) for s in (0, 1) for i in foreign_images(config.image_size, config.cache_size, seed=s).values()
        )
        assert passed[0] - passed[1] == foreign > 0  # the rerun passed the training sample only
        assert second.detector.method == first.detector.method
        assert second.detector.thresholds == pytest.approx(first.detector.thresholds, rel=1e-3, abs=1e-4)
        fit(FrozenBackbone("another0backbone", frozen.head_logits))
        assert passed[-1] == passed[0]  # another backbone's key finds nothing kept: every image passes again
    finally:
        for path in kept.glob("foreign-*.npz"):
            path.unlink()


def test_the_reference_is_stored_once_and_loaded_back(run_copy):
    run, data_root = run_copy
    first = ensure_reference(run, data_root)
    loaded = Reference.load(run.directory)
    assert loaded is not None and loaded.detector.method == first.detector.method
    assert loaded.detector.thresholds == pytest.approx(first.detector.thresholds)
    assert loaded.val_projection.shape[1] <= 64 and len(loaded.train_counts) == len(run.classes)


def test_threshold_passes_95_percent_and_energy_orders_confidence():
    scores = np.arange(1000, dtype=float)
    assert np.mean(scores <= threshold_for(scores)) == pytest.approx(IN_DISTRIBUTION_PASS, abs=0.002)
    sure, unsure = np.array([[10.0, 0.0, 0.0]]), np.array([[0.1, 0.0, 0.05]])
    assert energy_score(sure)[0] < energy_score(unsure)[0]


def _detector(method: str, caught: float | None) -> OODDetector:
    evidence = {
        "energy": {
            "test_flagged": 0.077,
            "foreign_flagged": {"noise": 0.0, "photos": 0.0},
            "auroc_test_vs_foreign": 0.41,
        },
        "mahalanobis": {"test_flagged": 0.046, "foreign_flagged": {"noise": 0.92, "photos": 0.04}},
    }
    evidence["mahalanobis"]["foreign_flagged_all"] = caught
    evidence["mahalanobis"]["auroc_test_vs_foreign"] = 0.71
    evidence["energy"]["foreign_flagged_all"] = 0.0
    return OODDetector(method, {"energy": 0.0, "mahalanobis": 1.0}, None, evidence)


def test_the_summary_says_in_words_how_far_to_trust_the_flag():
    weak = _detector("mahalanobis", 0.32)
    assert weak.weak
    text = weak.summary()
    assert "distance of the ResNet features" in text and "picked over the energy of the logits" in text
    assert "AUROC 0.71 against 0.41" in text
    assert "caught 32% of images from elsewhere that it was tried on (noise 92%, other photos 4%)" in text
    assert "wrongly flags 5% of the run's test photos" in text and "0.50 a coin toss" in text
    assert "lets most of those images through" in text
    strong = _detector("mahalanobis", 0.9)
    assert (
        not strong.weak and "lets most" not in strong.summary() and "90% of images from elsewhere" in strong.summary()
    )
    unmeasured = OODDetector("energy", {"energy": 0.0, "mahalanobis": 1.0}, None, {})
    assert unmeasured.weak and "not measured" in unmeasured.summary()


def test_a_real_reference_summary_quotes_its_own_evidence(run_copy):
    run, data_root = run_copy
    detector = ensure_reference(run, data_root).detector
    chosen = detector.evidence[detector.method]
    assert f"{chosen['test_flagged']:.0%} of the run's test photos" in detector.summary()
    assert f"{chosen['foreign_flagged_all']:.0%} of images from elsewhere" in detector.summary()


def test_the_distance_to_the_nearest_class_is_the_textbook_one_for_every_row():
    """The expanded form (two matrix products for all classes) against scipy's Mahalanobis per row and class,
    classes without training rows never the nearest."""
    from scipy.spatial.distance import mahalanobis

    from core.results.probabilities.ood import Mahalanobis, Projection

    rng = np.random.default_rng(5)
    features = rng.normal(size=(300, 24)).astype(np.float32)
    labels = rng.integers(0, 7, size=300)
    labels[labels == 3] = 4  # class 3 has no training rows
    projection = Projection.fit(features, 8)
    detector = Mahalanobis.fit(features, labels, projection)
    queries = rng.normal(size=(40, 24)).astype(np.float32)
    z = projection(queries).astype(np.float64)
    present = [c for c in range(len(detector.means)) if np.all(np.isfinite(detector.means[c]))]
    assert 3 not in present
    expected = [min(mahalanobis(row, detector.means[c], detector.precision) ** 2 for c in present) for row in z]
    np.testing.assert_allclose(detector(queries), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rows, columns, k", [(400, 64, 32), (40, 64, 39), (7, 5, 4)])
def test_top_directions_are_the_full_svds_leading_ones(rows, columns, k):
    """The PCA behind Mahalanobis and drift takes only the top directions from a Gram matrix (taller or wider than
    it is long alike); they must be numpy's full SVD's, up to sign, and unit length."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((rows, columns)) * np.linspace(4, 0.2, columns)
    x -= x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    directions = top_directions(x, k)
    assert directions.shape == (k, columns)
    np.testing.assert_allclose(np.abs(np.sum(vt[:k] * directions, axis=1)), 1.0, atol=1e-8)
    projected = Projection.fit(x, k)(x)
    np.testing.assert_allclose(np.abs(projected), np.abs(x @ vt[:k].T), rtol=1e-4, atol=1e-4)


def test_a_photo_let_through_is_told_how_many_other_photos_the_check_misses():
    """Walk 51: a rose (no class of the run) got a one-class set and 'right 31 of 33 times' with no word of the
    check's miss rate on other photos."""
    assert _detector("mahalanobis", 0.32).let_through_words() == (
        "the check for photos of other kinds lets through about 96% of other photos it was tested on"
    )
    assert OODDetector("energy", {"energy": 0.0}, None, {}).let_through_words() is None
