"""End to end through the command line, as the README shows it, on real flower photos."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT, link_subset, require_flowers
from tests.core_process import run_core

pytestmark = pytest.mark.slow


def flora(*args, env, check=True):
    """`python -m core ARGS` in a process of its own (forked from the worker's warm launcher: tests/core_process.py)."""
    result = run_core(*args, env=env)
    if check:
        assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    env = {**os.environ, "FLORA_MODELS_DIR": str(base / "models"), "FLORA_DATA_DIR": str(base / "data")}
    return base, env


def test_train_runs_evaluate_predict_on_real_photos(cli_env, monkeypatch, capsys):
    """The one CLI end-to-end on the real ResNet-50 (no test backbone) and real photos. Training and predicting run
    in processes of their own, as a person runs them; the commands in between (the cached train, runs, evaluate)
    through the same `core.cli.main` in this process, each a process less importing Keras for the same code."""
    from core.cli import main

    base, env = cli_env
    env = {**env, "FLORA_TEST_BACKBONE": ""}
    for name in ("FLORA_TEST_BACKBONE", "FLORA_MODELS_DIR", "FLORA_DATA_DIR"):
        monkeypatch.setenv(name, env[name])

    def here(*argv) -> str:
        assert main(list(argv)) == 0
        return capsys.readouterr().out

    photos = link_subset(require_flowers(), base / "flowers", per_class=80)
    args = ["train", str(photos), "--image-size", "64", "--weights", "none", "--epochs", "8", "--seed", "3"]

    trained = flora(*args, env=env)
    run_id = trained.stdout.strip().splitlines()[-1]
    assert len(run_id) == 12 and trained.stdout.strip() == run_id  # stdout carries only the result
    assert "test accuracy" in trained.stderr and "decoded" in trained.stderr

    again = json.loads(here(*args, "--json"))
    assert again["cached"] is True and again["run_id"] == run_id and again["state"] == "done"

    runs = json.loads(here("runs", "--json"))
    assert [r["run_id"] for r in runs] == [run_id] and runs[0]["dataset"] == "flowers"
    assert run_id in here("runs")
    shown = here("runs", "--show", run_id[:6])
    command = shown.strip().splitlines()[-1].strip()  # the command that reproduces the run
    assert command.startswith("python -m core train ") and "--epochs 8" in command and "--seed 3" in command
    replayed = json.loads(here(*shlex.split(command)[3:], "--json"))
    assert replayed["cached"] is True and replayed["run_id"] == run_id  # the same settings find the same run

    metrics = json.loads(here("evaluate", run_id[:6], "--json"))
    assert set(metrics["per_class"]) == {"daisy", "dandelion", "rose", "sunflower", "tulip"}
    assert {"precision", "recall", "f1", "support"} == set(metrics["per_class"]["rose"])
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["test_images"] == 60
    # 5 classes: chance is 0.2. A random-weights backbone at 64 px still learns colour and texture.
    assert metrics["accuracy"] >= 0.35, metrics["accuracy"]
    assert "most confused pairs" in here("evaluate", run_id)

    rose = next((photos / "rose").iterdir())
    notes = base / "notes.jpg"
    notes.write_text("not a photo")
    predicted = flora("predict", run_id, str(rose), str(notes), "--top-k", "3", "--json", env=env, check=False)
    assert predicted.returncode == 1  # one image failed; the other still got its answer
    results = json.loads(predicted.stdout)["results"]
    assert len(results[0]["top"]) == 3 and results[0]["top"][0]["probability"] >= results[0]["top"][1]["probability"]
    assert "not an image" in results[1]["error"]


def test_cli_errors_are_one_clear_line(cli_env):
    base, env = cli_env
    missing = flora("train", str(base / "nowhere"), "--weights", "none", env=env, check=False)
    assert missing.returncode == 1 and "dataset not found" in missing.stderr
    bad = flora("train", str(base), "--unfreeze-stages", "7", "--fine-tune-epochs", "1", env=env, check=False)
    assert bad.returncode == 1 and "unfreeze_stages must be between 0 and 4. Received: unfreeze_stages=7" in bad.stderr
    unknown = flora("evaluate", "zzzz", env=env, check=False)
    assert unknown.returncode == 1 and "no run 'zzzz'" in unknown.stderr


def test_each_command_module_registers_the_commands_the_table_names():
    """main() imports only the module COMMAND_MODULES names for a command: the table must say what each registers."""
    import argparse
    import importlib

    from core.cli import COMMAND_MODULES, build_parser

    common = argparse.ArgumentParser(add_help=False)
    for module, commands in COMMAND_MODULES.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(sub, common)
        assert tuple(sub.choices) == commands, module
        for command in commands:  # a command's own parser parses what the whole one does
            assert set(build_parser(command)._subparsers._group_actions[0].choices) == set(commands)


def test_a_light_command_starts_without_the_engines_of_the_others(tmp_path):
    """`core alias` (a switch is timed from its start, issue 44) loads no framework, table or image library."""
    code = (
        "import sys; from core.cli import main; code = main(['alias', '--models-dir', sys.argv[1]]);"
        "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'pandas', 'scipy', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "models")], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
    assert "no aliases" in out.stderr
