"""'None of these': kNN distance equal to scikit-learn's neighbours on normalised features, image statistics that set
noise and flat frames far from photographs, the share caught at 5% false alarms equal to scikit-learn's ROC curve,
the method picked on the selection set, and on a run of real photos every noise and flat image flagged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.results.probabilities.image_stats import StatsCheck, image_statistics
from core.results.probabilities.knn_distance import KNNDistance, normalised
from tests.conftest import copy_run


def test_knn_distance_is_sklearns_kth_neighbour_on_normalised_features():
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(3)
    train = rng.normal(size=(3000, 16)) * rng.uniform(0.5, 3, size=(3000, 1))
    queries = rng.normal(size=(50, 16))
    knn = KNNDistance.fit(train)
    assert knn.k == 3  # 0.1% of 3,000
    reference = NearestNeighbors(n_neighbors=3).fit(normalised(train))
    distances, _ = reference.kneighbors(normalised(queries))
    np.testing.assert_allclose(knn(queries), distances[:, -1], rtol=1e-4, atol=1e-5)


def _photo_like(rng: np.random.Generator, n: int, side: int = 48) -> np.ndarray:
    """Smooth shapes on smooth backgrounds with a little sensor noise: what photographs look like to the statistics."""
    y, x = np.mgrid[0:side, 0:side] / side
    images = []
    for _ in range(n):
        base = rng.uniform(40, 200, size=3) + 60 * np.sin(2 * np.pi * (x * rng.uniform(0.3, 1.5)))[..., None]
        cx, cy, r = [*rng.uniform(0.2, 0.8, size=2).tolist(), rng.uniform(0.1, 0.3)]
        disc = ((x - cx) ** 2 + (y - cy) ** 2) < r**2
        base[disc] = rng.uniform(0, 255, size=3)
        images.append(np.clip(base + rng.normal(0, 3, size=base.shape), 0, 255).astype(np.uint8))
    return np.stack(images)


def test_image_statistics_put_noise_and_flat_frames_far_from_photographs():
    rng = np.random.default_rng(0)
    check = StatsCheck.fit(image_statistics(_photo_like(rng, 300)))
    photos = check.scores(image_statistics(_photo_like(rng, 100)))
    noise = check.scores(image_statistics(rng.integers(0, 256, size=(20, 48, 48, 3))))
    flat = check.scores(image_statistics(np.ones((20, 48, 48, 3)) * rng.uniform(0, 255, size=(20, 1, 1, 3))))
    assert noise.min() > 3 * np.quantile(photos, 0.95)
    assert flat.min() > 3 * np.quantile(photos, 0.95)
    said = check.why(image_statistics(rng.integers(0, 256, size=(48, 48, 3)))[0])
    assert said.startswith("its ") and "spreads above" in said  # noise: its edges far above any photo's


def test_caught_at_5_percent_test_alarms_is_sklearns_roc_point():
    from sklearn.metrics import roc_curve

    from core.results.probabilities.ood_choice import _evidence

    rng = np.random.default_rng(1)
    test, foreign = rng.normal(size=400), rng.normal(1.5, 1, size=300)
    scores = {"m": test}
    figures = _evidence("m", 1.0, {"m": rng.normal(size=200)}, scores, {"k": {"m": foreign}}, {"k": {"m": foreign}})
    ours = figures["caught_at_5_percent_test_alarms"]["k"]
    fpr, tpr, cuts = roc_curve(np.r_[np.zeros(400), np.ones(300)], np.r_[test, foreign])
    at = np.quantile(test, 0.95, method="higher")
    i = np.flatnonzero(cuts > at)[-1]  # sklearn counts score >= cut: the first cut above ours counts score > ours
    assert ours == pytest.approx(tpr[i]) and fpr[i] <= 0.05
    assert ours <= tpr[fpr <= 0.05].max()


def test_the_method_is_picked_on_the_selection_set(trained_run, tmp_path):
    from core.results.probabilities.reference import compute_reference
    from core.runs.store import RunStore

    root = tmp_path / "models"
    copy_run(trained_run["store"].run_dir(trained_run["run_id"]), root / trained_run["run_id"])
    evidence = compute_reference(RunStore(root).get(trained_run["run_id"]), trained_run["data_root"])
    detector = evidence.detector
    best = max(e["selection_caught"] for e in detector.evidence.values())
    assert detector.evidence[detector.method]["selection_caught"] == best
    assert set(detector.evidence) >= {"energy", "mahalanobis", "knn", "image statistics", "knn + image statistics"}
    for figures in detector.evidence.values():
        assert set(figures["caught_at_5_percent_test_alarms"]) == {"noise", "flat", "drawings", "photos"}


def _noise_and_flat(folder, seed: int = 7):
    rng = np.random.default_rng(seed)
    folder.mkdir()
    for i in range(20):
        if i % 2:
            noise = rng.normal(rng.uniform(60, 200), rng.uniform(15, 60), size=(120, 150, 3))
        else:
            noise = rng.integers(0, 256, size=(120, 150, 3))
        Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8)).save(folder / f"noise_{i:02d}.png")
        flat = (np.ones((100, 100, 3)) * rng.uniform(0, 255, size=3)).astype(np.uint8)
        Image.fromarray(flat).save(folder / f"flat_{i:02d}.{'jpg' if i % 2 else 'png'}")
    return sorted(folder.iterdir())


def test_a_run_of_real_photos_flags_every_noise_and_flat_image(flower_run, tmp_path):
    from core.serving.engine import ServedModel

    run = flower_run["store"].get(flower_run["run_id"])
    model = ServedModel(run, flower_run["data_root"])
    detector = model.reference.detector
    chosen = detector.evidence[detector.method]
    print(detector.method, {m: e["caught_at_5_percent_test_alarms"] for m, e in detector.evidence.items()})
    assert chosen["foreign_flagged"]["noise"] >= 0.99 and chosen["foreign_flagged"]["flat"] >= 0.99
    assert chosen["test_flagged"] <= 0.15  # about 5% of the run's own photos (a small test split: some noise)
    files = _noise_and_flat(tmp_path / "foreign")
    answers = model.predict_pixels(np.stack([model.decode(p.read_bytes()).pixels for p in files]))
    assert sum(a.ood_flag for a in answers) >= 39
    assert any(a.ood_why and "spreads" in a.ood_why for a in answers)


@pytest.mark.slow
def test_core_predict_json_flags_noise_and_flat_images(flower_run, tmp_path, capsys):
    """`core predict --json` through the CLI's `main` in this process (the process boundary is not the subject)."""
    from core.cli import main

    files = _noise_and_flat(tmp_path / "foreign", seed=11)
    where = ["--models-dir", str(flower_run["models_root"]), "--data-dir", str(flower_run["data_root"])]

    def predict(*sources) -> list[dict]:
        code = main(["predict", flower_run["run_id"], *map(str, sources), "--json", *where])
        printed = capsys.readouterr()
        assert code == 0, printed.err[-3000:]
        return json.loads(printed.out)["results"]

    results = predict(*files)
    assert len(results) == 40
    assert sum(r["out_of_distribution"]["flag"] for r in results) >= 39
    # the same photos as a folder: its rows' flag and ood_score are the single photos' (same field name)
    rows = {Path(row["path"]).name: row for row in predict(files[0].parent)}
    for result in results:
        row = rows[Path(result["image"]).name]
        assert result["ood_score"] == pytest.approx(row["ood_score"], abs=1e-4)
        assert result["ood_score"] == result["out_of_distribution"]["score"]
        assert result["out_of_distribution"]["flag"] == row["out_of_distribution"]
