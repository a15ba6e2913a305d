"""The learning-rate range test: its numbers (rates, smoothing, the stop rule, fastai's valley), a real test on the
tiny backbone, and `python -m core lr-find` in text and JSON, with its refusals."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest

from core.cli import main as cli
from core.data.datasets import scan_dataset
from core.settings.config import ConfigError, TrainConfig
from core.train import lr_find
from core.train.lr_find import (
    FINE_TUNE,
    HEAD,
    MIN_POINTS,
    RangeTest,
    RangeTestFailed,
    SmoothedLoss,
    find_learning_rate,
    learning_rates,
    smooth,
    steepest,
    suggest,
    valley,
)
from tests.conftest import make_image_dataset

TINY = TrainConfig(image_size=32, weights="none", batch_size=8, head=(8,), augmented_views=1, seed=3)


# ----------------------------------------------------------------------------- the numbers


def test_the_rates_grow_by_one_factor_from_1e_7_to_10():
    rates = learning_rates(200)
    assert len(rates) == 200 and rates[0] == pytest.approx(1e-7) and rates[-1] == pytest.approx(10.0)
    ratios = rates[1:] / rates[:-1]
    assert np.allclose(ratios, ratios[0]) and ratios[0] > 1
    with pytest.raises(ConfigError):
        learning_rates(1)


def test_smoothing_is_an_average_corrected_for_its_start():
    assert np.allclose(smooth([2.0] * 5), 2.0)  # uncorrected, it would start at 0.04 and creep up
    beta = lr_find.BETA
    second = (beta * (1 - beta) * 1.0 + (1 - beta) * 3.0) / (1 - beta**2)
    assert smooth([1.0, 3.0]) == pytest.approx([1.0, second])
    assert np.std(np.diff(smooth(np.random.default_rng(0).normal(1.0, 0.3, 100)))) < 0.05  # noise is damped


@pytest.mark.parametrize(
    ("losses", "says"),
    [
        ([1.0] * 20 + [400.0] * 5, "passed 4x its minimum"),
        ([1.0] * 20 + [math.nan], "stopped being a number"),
        ([1.0, 0.9, 0.8, 0.7], None),
    ],
)
def test_the_test_stops_when_the_smoothed_loss_explodes(losses, says):
    average = SmoothedLoss()
    reasons = [average.stop_reason(average.add(loss)) for loss in losses]
    stopped = next((r for r in reasons if r), None)
    assert stopped == says if says is None else says in stopped


def test_the_divergence_rule_waits_for_the_first_steps_to_settle():
    """A trained head's first batches can differ tenfold in loss: that is noise, not an explosion."""
    settling = SmoothedLoss(settle=5)
    assert [settling.stop_reason(settling.add(loss)) for loss in (0.05, 1.0, 1.0)] == [None] * 3
    eager = SmoothedLoss()
    assert eager.stop_reason(eager.add(0.05)) is None and eager.stop_reason(eager.add(1.0))


def _synthetic_curve():
    """Flat at 1.0 (20 points), down to 0.2 (40 points), up again (20 points): the valley is the 40 falling ones."""
    flat = [1.0] * 20
    fall = list(np.linspace(0.99, 0.2, 40))
    rise = list(np.linspace(0.25, 3.0, 20))
    return np.array(flat + fall + rise)


def test_the_valley_rule_finds_half_way_down_the_longest_fall():
    losses = _synthetic_curve()
    index, start, end = valley(losses)
    # The longest falling run: one flat point then the 40 falling ones, ending at the minimum (59). fastai counts
    # its start one before it (59 - 41 = 18) and steps a third plus a sixth of the length in: 18 + 13 + 6.
    assert (start, end) == (18, 59) and index == 37
    assert 20 <= index < 60 and losses[index] > losses.min()


def test_steepest_is_where_the_loss_falls_fastest_per_factor_of_rate():
    lrs = learning_rates(30)
    losses = np.ones(30)
    losses[12:] = 0.5  # one cliff between 11 and 12
    assert steepest(lrs, losses) == 11
    losses[20:] = [8.0, 7.0, 1.0, 0.9, 0.8, 0.7, 0.6, 0.55, 0.52, 0.51]  # an explosion, then a broken head's fall
    assert steepest(lrs, losses) == 11  # the search stops at the lowest point before it


def test_the_suggestion_lies_inside_the_curve_below_its_minimum():
    losses = _synthetic_curve()
    lrs = learning_rates(len(losses))
    suggestion = suggest(lrs, losses, planned_steps=len(losses))
    assert lrs[0] <= suggestion.lr <= lrs[-1] and suggestion.lr in lrs
    assert suggestion.lr < lrs[int(np.argmin(losses))]
    assert suggestion.min_lr_over_10 == pytest.approx(lrs[int(np.argmin(losses))] / 10)
    assert suggestion.method == "valley" and "half-way" in suggestion.reason and "lowest loss" in suggestion.reason
    with pytest.raises(RangeTestFailed, match="too few"):
        suggest(lrs[: MIN_POINTS - 1], losses[: MIN_POINTS - 1], planned_steps=100)


def test_a_noisy_curve_whose_longest_fall_passes_its_minimum_says_so():
    losses = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 3.5, 3.0, 2.5, 2.0, 1.5, 1.2, 1.1])
    lrs = learning_rates(len(losses))
    suggestion = suggest(lrs, losses, planned_steps=len(losses))
    assert suggestion.lr >= lrs[4] and "not below its lowest point" in suggestion.reason
    assert f"({lrs[4] / 10:.1e}) is the safer choice" in suggestion.reason


def test_settings_the_test_does_not_depend_on_name_the_same_test():
    head = lr_find.identity(TINY.replace(learning_rate=3e-4, epochs=4, lr_schedule="cosine"), HEAD)
    assert head == lr_find.identity(TINY, HEAD)
    assert lr_find.identity(TINY.replace(batch_size=16), HEAD) != head
    # Phase 2 starts from the head phase 1 trained: its rate and epochs matter there.
    assert lr_find.identity(TINY.replace(epochs=4), FINE_TUNE) != lr_find.identity(TINY, FINE_TUNE)


class _ExplodingModel:
    """A stand-in for a compiled model: the loss falls, then grows tenfold a step from `blow_up` on."""

    def __init__(self, blow_up: int):
        self.blow_up, self.calls = blow_up, 0
        self.optimizer = type("Optimizer", (), {"learning_rate": 0.0})()

    def train_on_batch(self, x, y, sample_weight=None, return_dict=False):
        self.calls += 1
        loss = 1.0 / self.calls if self.calls < self.blow_up else 10.0 ** (self.calls - self.blow_up + 1)
        return {"loss": loss}


class _Batches(list):
    def on_epoch_end(self):
        pass


def _extraction(should_stop=lambda: False):
    from core.train.trainer import Extraction, StageReporter

    return Extraction(None, 1, 1, 8, StageReporter(lambda **fields: None), should_stop)


def test_the_sweep_stops_at_the_explosion_and_keeps_its_first_point():
    model = _ExplodingModel(blow_up=30)
    batches = _Batches([(np.zeros((2, 4)), np.zeros((2, 2)))] * 7)  # fewer batches than steps: epochs wrap
    curve, raw, stopped = lr_find._sweep(model, batches, learning_rates(100), HEAD, _extraction())
    assert 30 <= len(curve) < 100 and model.calls == len(curve)
    assert "passed 4x its minimum" in stopped and f"{curve[-1][0]:.1e}" in stopped
    assert raw[-1] > 100 * min(raw)
    assert model.optimizer.learning_rate == pytest.approx(curve[-1][0])


def test_the_sweep_stops_when_asked():
    from core.train.trainer import StopRequested

    with pytest.raises(StopRequested):
        lr_find._sweep(_ExplodingModel(1000), _Batches([(0, 0)]), learning_rates(20), HEAD, _extraction(lambda: True))


# ----------------------------------------------------------------------------- real tests on the tiny backbone


@pytest.fixture
def tiny_data(tmp_path):
    dataset = make_image_dataset(tmp_path / "data" / "tiny", {"red": 14, "green": 14, "blue": 14}, size=(40, 36))
    return dataset, tmp_path / "data" / ".cache"


def test_a_real_head_test_gives_a_curve_and_a_suggestion_and_the_same_again(tiny_data):
    dataset, cache_root = tiny_data
    result = find_learning_rate(scan_dataset(dataset), TINY, cache_root, steps=60)
    lrs = np.array([lr for lr, _ in result.curve])
    assert result.phase == HEAD and len(result.curve) >= MIN_POINTS and result.steps == len(result.curve)
    assert np.allclose(lrs, learning_rates(60)[: len(lrs)])  # geometric, from 1e-7
    assert lrs.min() <= result.suggested_lr <= lrs.max() and result.method == "valley" and result.reason
    assert result.config["image_size"] == 32 and result.config["train_images"] > 0
    assert RangeTest.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    # A new head each time, seeded by the config: the same request gives the same curve.
    again = find_learning_rate(scan_dataset(dataset), TINY, cache_root, steps=60)
    assert np.allclose(again.curve, result.curve)


def test_a_real_fine_tune_test_trains_the_head_first_then_steps_through_the_backbone(tiny_data):
    dataset, cache_root = tiny_data
    reports = []
    config = TINY.replace(epochs=2, unfreeze_stages=1)
    result = find_learning_rate(
        scan_dataset(dataset),
        config,
        cache_root,
        phase=FINE_TUNE,
        steps=20,
        report=lambda name, *rest, **kw: reports.append(name),
    )
    assert result.phase == FINE_TUNE and len(result.curve) >= MIN_POINTS and result.config["unfreeze_stages"] == 1
    assert "training the head on cached features (phase 1)" in reports and "range test (fine-tune)" in reports
    with pytest.raises(ConfigError, match="at least 10 steps"):
        find_learning_rate(scan_dataset(dataset), config, cache_root, steps=5)


# ----------------------------------------------------------------------------- the command


def _cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def test_the_command_prints_the_curve_and_the_suggestion_for_a_run(trained_run):
    where = ["--models-dir", trained_run["models_root"], "--data-dir", trained_run["data_root"]]
    code, out, err = _cli("lr-find", trained_run["run_id"][:6], "--steps", 40, *where)
    assert code == 0, err[-800:]
    assert out.startswith("range test, head phase: ") and "SMOOTHED LOSS" in out and "<- suggested" in out
    assert "suggested learning rate: " in out and "why: valley" in out and "to use it: --lr " in out
    table = [line for line in out.splitlines() if line[:1].isdigit()]
    assert len(table) >= MIN_POINTS

    code, out, err = _cli("lr-find", trained_run["run_id"], "--steps", 40, "--json", *where)
    assert code == 0, err[-800:]
    result = json.loads(out)
    assert result["run_id"] == trained_run["run_id"] and result["method"] == "valley" and result["reason"]
    lrs = [lr for lr, _ in result["curve"]]
    assert len(lrs) >= MIN_POINTS and lrs == sorted(lrs) and min(lrs) <= result["suggested_lr"] <= max(lrs)
    assert {"steepest_lr", "min_lr_over_10", "phase", "seconds", "steps", "config"} <= set(result)
    assert result["config"]["image_size"] == trained_run["config"].image_size  # the run's own settings


def test_the_command_takes_a_dataset_with_the_train_flags(tiny_data, tmp_path):
    dataset, _ = tiny_data
    where = ["--models-dir", tmp_path / "models", "--data-dir", dataset.parent]
    argv = ["lr-find", "tiny", "--steps", 30, "--image-size", 32, "--weights", "none", "--batch-size", 16]
    code, out, err = _cli(*argv, "--augmented-views", 0, "--json", *where)
    assert code == 0, err[-800:]
    result = json.loads(out)
    assert result["run_id"] is None and result["config"]["batch_size"] == 16
    assert result["config"]["dataset"].endswith("tiny") and result["config"]["augmented_views"] == 0


def test_bad_input_gets_one_line_and_a_failing_exit(tmp_path):
    one_class = make_image_dataset(tmp_path / "data" / "lonely", {"red": 6})
    where = ["--models-dir", tmp_path / "models", "--data-dir", tmp_path / "data"]
    for source, says in (("nosuch", "dataset not found: nosuch"), (one_class, "at least 2 classes")):
        code, out, err = _cli("lr-find", source, "--image-size", 32, "--weights", "none", *where)
        assert code != 0 and out == ""
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and says in errors[0], err[-600:]
    code, _, err = _cli("lr-find", one_class, "--steps", 3, *where)
    assert code != 0 and "error: a range test needs at least 10 steps" in err
