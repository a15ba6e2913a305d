"""Test-time augmentation: the views, the rule that decides whether a run uses them, the measurement on a real run,
`core evaluate --tta`, and a served model that averages the views only where they helped."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from core.results.probabilities import tta
from core.runs.analysis import softmax
from tests.conftest import copy_run


@pytest.mark.backend_agnostic
def test_the_views_are_the_photo_its_mirror_and_two_zoomed_corners():
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 255, size=(3, 32, 32, 3)).astype(np.float32)
    views = tta.views_of(batch)
    assert len(views) == len(tta.VIEWS) == 4
    assert all(v.shape == batch.shape and v.dtype == np.float32 for v in views)
    assert np.array_equal(views[0], batch) and np.array_equal(views[1], batch[:, :, ::-1])
    # a zoomed corner: the top-left 28 x 28 enlarged; its top-left pixel is the photo's
    assert np.allclose(views[2][:, 0, 0], batch[:, 0, 0], atol=1e-3)
    assert np.allclose(views[3][:, -1, -1], batch[:, -1, -1], atol=1e-3)
    assert not np.allclose(views[2], batch)


@pytest.mark.backend_agnostic
def test_views_are_used_only_for_a_gain_chance_hardly_explains():
    def figures(better, worse, without=0.5):
        from core.results.evaluation.compare import mcnemar

        a = np.array([True] * worse + [False] * better + [True] * 50)
        b = np.array([False] * worse + [True] * better + [True] * 50)
        test = mcnemar(a, b)
        n = len(a)
        return tta.SplitFigures(n, a.mean(), b.mean(), 0, 0, 1, 1, test["c"], test["b"], test["p_value"])

    helped, why = tta.decide(figures(better=20, worse=4))
    assert helped and "Predict and the server use them" in why
    helped, why = tta.decide(figures(better=6, worse=4))
    assert not helped and "within chance" in why
    helped, why = tta.decide(figures(better=2, worse=9))
    assert not helped and "lowered accuracy" in why


@pytest.mark.backend_agnostic
def test_averaged_is_the_mean_of_the_calibrated_views():
    rng = np.random.default_rng(1)
    logits = [rng.normal(size=(5, 3)) for _ in range(4)]
    expected = np.mean([softmax(z, 2.0) for z in logits], axis=0)
    assert np.allclose(tta.averaged(logits, 2.0), expected, atol=1e-6)


def _with_views(run_dir, helped: bool) -> None:
    """Mark a measured run as one whose views helped (or not) on validation."""
    data = json.loads((run_dir / "tta.json").read_text())
    data["helped"] = helped
    (run_dir / "tta.json").write_text(json.dumps(data))


def test_measure_a_run_and_evaluate_tta_on_the_command_line(trained_run, tmp_path):
    from core.cli import main as cli
    from core.runs.analysis import RunAnalysis

    store_root = copy_run(trained_run["models_root"], tmp_path / "models")
    run_id = trained_run["run_id"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli(
            [
                "evaluate",
                run_id[:6],
                "--tta",
                "--json",
                "--models-dir",
                str(store_root),
                "--data-dir",
                str(trained_run["data_root"]),
            ]
        )
    assert code == 0
    result = json.loads(out.getvalue())["tta"]
    assert set(result) >= {"accuracy", "macro_f1", "nll", "p_value", "validation", "seconds_per_photo", "views"}
    assert 0 <= result["p_value"] <= 1 and len(result["views"]) == 4
    analysis = RunAnalysis.load(store_root / run_id)
    # without the views is the run's own test accuracy (calibration never changes the answer)
    own = float((analysis.test.logits.argmax(axis=1) == analysis.test.labels).mean())
    assert result["accuracy"]["without"] == pytest.approx(own)
    report = tta.load(store_root / run_id)
    assert report is not None and report.helped == result["helped_on_validation"]
    assert result["seconds_per_photo"]["with"] > result["seconds_per_photo"]["without"] > 0
    # a run whose views helped: its predictors' probabilities are the stored averages
    _with_views(store_root / run_id, True)
    _val, test, views = tta.served_probabilities(store_root / run_id, analysis)
    assert views == 4 and test.shape == analysis.test.logits.shape
    assert not np.allclose(test, softmax(analysis.test.logits, report.temperature))
    _with_views(store_root / run_id, False)
    assert tta.served_probabilities(store_root / run_id, analysis)[2] == 1


def test_a_served_run_averages_the_views_only_where_they_helped(trained_run, tmp_path):
    from core.network import layer_names as names
    from core.runs.store import RunStore
    from core.serving.engine import VIEWS_AVERAGE, ServedModel

    store_root = copy_run(trained_run["models_root"], tmp_path / "models")
    run_id = trained_run["run_id"]
    run = RunStore(store_root).get(run_id)
    tta.measure(run, trained_run["data_root"])
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 255, size=(3, 32, 32, 3)).astype(np.uint8)
    for helped in (False, True):
        _with_views(store_root / run_id, helped)
        model = ServedModel(run, trained_run["data_root"], with_reference=False)
        outputs = model.forward(pixels)
        answers = model.answers(outputs)
        if not helped:
            assert model.views == 1 and VIEWS_AVERAGE not in outputs and answers[0].views == 1
            continue
        assert model.views == 4 and answers[0].views == 4
        view_logits = [model._forward_once(v)[names.LOGITS] for v in tta.views_of(pixels)]
        assert np.allclose(answers[0].probabilities, tta.averaged(view_logits, model.temperature)[0], atol=1e-5)
        assert answers[0].to_dict()["views"] == 4
        assert "why" in model.describe()["test_time_augmentation"]
