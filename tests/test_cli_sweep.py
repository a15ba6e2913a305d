"""`python -m core sweep` / `sweeps`: the --json shape, --promote, and bad spaces refused before anything starts."""

from __future__ import annotations

import json

import pytest

from core import cli
from tests.conftest import make_image_dataset

FIXED_FLAGS = ["--image-size", "32", "--weights", "none", "--epochs", "3", "--batch-size", "8", "--head", "8"]
SPACE = '{"learning_rate": {"low": 1e-4, "high": 0.05, "log": true}, "dropout": {"low": 0.0, "high": 0.5}}'


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("FLORA_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("FLORA_DATA_DIR", str(tmp_path / "data"))
    return tmp_path, make_image_dataset(tmp_path / "colours", {"red": 10, "green": 10, "blue": 10}, seed=2)


def _json(capsys, *argv) -> tuple[int, dict]:
    code = cli.main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--space", "{}"], "the search space is empty"),
        (["--space", '{"learning_rate": {"low": 0.1, "high": 0.01}}'], "low (0.1) is greater than high (0.01)"),
        (["--space", '{"lr": {"low": 0.001, "high": 0.01}}'], "unknown parameter 'lr'"),
        (["--space", "no-such-space.json"], "--space: no such file"),
        (["--space", "{not json"], "--space is not valid JSON"),
        (["--no-feature-cache"], "feature cache cannot be off"),
    ],
)
def test_a_bad_request_is_refused_before_anything_starts(workspace, capsys, extra, message):
    base, dataset = workspace
    code = cli.main(["sweep", str(dataset), "--trials", "3", *FIXED_FLAGS, *extra])
    assert code == 1 and message in capsys.readouterr().err
    assert not (base / "models").exists() and not (base / "data").exists()  # nothing started, nothing written


def test_a_sweep_needs_trials_or_a_time_budget(workspace, capsys):
    _, dataset = workspace
    assert cli.main(["sweep", str(dataset), *FIXED_FLAGS]) == 1
    assert "a number of trials (--trials N), a time budget (--timeout S)" in capsys.readouterr().err


def test_json_lists_the_trials_and_the_best_then_promote_trains_it_as_a_run(workspace, capsys):
    base, dataset = workspace
    code, result = _json(capsys, "sweep", str(dataset), "--trials", "3", *FIXED_FLAGS, "--space", SPACE, "--json")
    assert code == 0 and result["state"] == "done" and result["trials_done"] == 3
    assert result["space"] == {
        "learning_rate": {"low": 1e-4, "high": 0.05, "log": True},
        "dropout": {"low": 0.0, "high": 0.5, "log": False},
    }
    assert result["fixed"]["image_size"] == 32 and "validation split" in result["chosen_on"]
    assert [t["number"] for t in result["trials"]] == [0, 1, 2]
    for trial in result["trials"]:
        assert trial["state"] in ("complete", "pruned")
        assert set(trial["params"]) == {"learning_rate", "dropout"}
        assert 0 <= trial["val_accuracy"] <= 1 and trial["val_loss"] > 0 and trial["epochs_run"] >= 1
        assert "curve" not in trial
    best = result["best"]
    assert best["number"] in (0, 1, 2) and best["config"]["learning_rate"] == best["params"]["learning_rate"]
    assert best["command"].startswith("python -m core train ") and "--image-size 32" in best["command"]
    assert "promoted" not in result

    # The same command again is the same sweep, finished: no trial runs again.
    code, again = _json(capsys, "sweep", str(dataset), "--trials", "3", *FIXED_FLAGS, "--space", SPACE, "--json")
    assert code == 0 and again["sweep_id"] == result["sweep_id"] and again["trials"] == result["trials"]

    code, promoted = _json(capsys, "sweep", "--sweep", result["sweep_id"][:6], "--promote", "--json")
    run = promoted["promoted"]
    assert code == 0 and run["state"] == "done" and 0 <= run["accuracy"] <= 1 and run["cached"] is False
    assert promoted["promoted_run"] == run["run_id"]
    from core.runs.store import RunStore

    stored = RunStore(base / "models").get(run["run_id"])
    assert stored.name == f"best of sweep {result['sweep_id'][:6]} (trial {best['number']})"
    assert stored.train_config.learning_rate == best["params"]["learning_rate"] and stored.evaluated
    # The run's phase 1 is the best trial's, from the same start: the same validation figures.
    epochs = [m for m in RunStore(base / "models").read_metrics(run["run_id"]) if m["kind"] == "epoch"]
    kept = epochs[best["best_epoch"] - 1]
    assert kept["val_accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-6)

    code = cli.main(["sweeps", "--json"])
    listed = json.loads(capsys.readouterr().out)
    assert code == 0 and [s["sweep_id"] for s in listed] == [result["sweep_id"]]
    assert listed[0]["trials"] == "3/3" and listed[0]["promoted_run"] == run["run_id"]


def test_an_existing_sweep_keeps_its_definition(workspace, capsys):
    assert cli.main(["sweep", "--sweep", "abc", "--lr", "0.1", "--trials", "3"]) == 2
    assert "cannot change (--lr given)" in capsys.readouterr().err
    assert cli.main(["sweep", "--sweep", "abc", "--trials", "3"]) == 1
    assert "no sweep 'abc'" in capsys.readouterr().err
