"""A bug reaches the terminal as a traceback, from every CLI command; what a person can act on stays one line.

The CLI once caught bare KeyError and ValueError, so a bug deep in a command read like a user's mistake (the
label-issues folder form's regression hid that way). Each command here runs in-process with a function it calls
replaced by one that raises a plain KeyError or RuntimeError: its traceback must reach stderr (or the run's log,
which is stderr in a real process) and the exit code must be EXIT_BUG, never the user error's EXIT_FAILED.
"""

from __future__ import annotations

import argparse
import importlib

import pytest

from core.cli import COMMAND_MODULES, build_parser
from core.cli import main as cli
from core.errors import EXIT_BUG, EXIT_FAILED, EXIT_TEMPFAIL, Busy, InvalidInput
from tests.conftest import copy_run

PLANTED = "planted by test_cli_errors"
BUGS = {"key": lambda: KeyError(PLANTED), "runtime": lambda: RuntimeError(PLANTED)}

# command -> (argv with {run}, {dataset}, {image}, {tmp}; "module:attribute" the command calls; the bug planted)
COMMANDS = {
    "train": (
        ["train", "{dataset}", "--epochs", "1", "--image-size", "32", "--weights", "none", "--seed", "77"],
        "core.train.training:train_run",
        "key",
    ),
    "runs": (["runs"], "core.runs.store:RunStore.scan", "key"),
    "lr-find": (["lr-find", "{run}", "--steps", "20"], "core.train.lr_find:find_learning_rate", "key"),
    "evaluate": (["evaluate", "{run}"], "core.results.evaluation.metrics:Evaluation.summary", "key"),
    "predict": (["predict", "{run}", "{image}"], "core.serving.batch_predict:predict_many", "key"),
    "analyse": (["analyse", "{run}", "--force"], "core.results.tasks:compute_analysis", "key"),
    "calibrate": (["calibrate", "{run}"], "core.cli.diagnosis:calibrate_run", "key"),
    "label-issues": (["label-issues", "{run}"], "core.cli.diagnosis:load_issues", "key"),
    "compare": (["compare", "{run}", "{run}"], "core.cli.diagnosis:compare", "key"),
    "robustness": (["robustness", "{run}", "--photos", "2"], "core.results.evaluation.robustness:measure", "key"),
    "card": (["card", "{run}", "--out", "{tmp}/card.md"], "core.results.model_card:write", "key"),
    "label-next": (["label-next", "{run}"], "core.cli.label_next:training_features", "key"),
    "fix-worth": (["fix-worth", "{run}"], "core.results.labels.fix_worth:chosen_corrections", "key"),
    "data-issues": (["data-issues", "{run}", "--again"], "core.results.data_issues.report:for_run_saved", "key"),
    "explain": (["explain", "{run}", "{image}"], "core.cli.explain:Explainer", "runtime"),
    "sweep": (["sweep", "{dataset}", "--trials", "1"], "core.cli.sweep:submit", "key"),
    "sweeps": (["sweeps"], "core.sweeps.store:SweepStore.list", "key"),
    "serve": (["serve", "{run}"], "core.serving.server:serve", "runtime"),
    "alias": (["alias"], "core.serving.aliases:AliasStore.all", "key"),
    "log": (["log"], "core.serving.log:PredictionLog.read", "key"),
    "export": (["export", "{run}", "--format", "keras", "--out", "{tmp}/export"], "core.cli.export:export_run", "key"),
    "retrain": (["retrain", "{run}", "--with-feedback"], "core.cli.retrain:retrain_with_feedback", "key"),
    "feedback-compare": (["feedback-compare", "{run}", "{run}"], "core.cli.retrain:stored_comparison", "key"),
    "data get": (["data", "get", "demo"], "core.cli.data:get_dataset", "key"),
    "data import oxford102": (["data", "import", "oxford102", "{tmp}"], "core.cli.data:import_oxford102", "key"),
    "data import zip": (["data", "import", "zip", "{tmp}/a.zip", "new"], "core.cli.data:import_zip", "key"),
    "data import csv": (["data", "import", "csv", "{tmp}/a.csv", "{tmp}", "new"], "core.cli.data:import_csv", "key"),
    "data check": (["data", "check", "{dataset}"], "core.cli.data:check_dataset", "key"),
    "data list": (["data", "list"], "core.cli.data:list_datasets", "key"),
    "share-check": (["share-check"], "core.sharing:check_ready", "key"),
    "people": (["people", "list"], "core.cli.sharing:people.registered", "key"),
    "device": (["device"], "core.cli.device:check", "runtime"),
    "bench": (["bench", "--only", "concurrency"], "core.bench.concurrency:run", "key"),
}


@pytest.fixture(scope="module")
def store(trained_run, tmp_path_factory):
    """The shared run in a store of its own (some commands write into it before the planted bug)."""
    models_root = tmp_path_factory.mktemp("errors") / "models"
    copy_run(trained_run["models_root"] / trained_run["run_id"], models_root / trained_run["run_id"])
    return {**trained_run, "models_root": models_root}


def _plant(monkeypatch, target: str, bug: str) -> None:
    build_parser()  # every command module imported first: none binds the planted function for the tests after
    module, _, path = target.partition(":")
    owner = importlib.import_module(module)
    *parents, name = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    assert hasattr(owner, name), f"{target} is gone: plant the bug in another function the command calls"

    def broken(*args, **kwargs):
        raise BUGS[bug]()

    monkeypatch.setattr(owner, name, broken)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_bug_in_a_command_shows_its_traceback(command, store, tmp_path, monkeypatch, capsys, caplog):
    argv, target, bug = COMMANDS[command]
    image = next(p for p in sorted(store["dataset"].rglob("*")) if p.is_file())
    values = {"run": store["run_id"], "dataset": str(store["dataset"]), "image": str(image), "tmp": str(tmp_path)}
    argv = [part.format(**values) for part in argv]
    if command != "device":  # the one command with no store or data folder
        argv += ["--models-dir", str(store["models_root"]), "--data-dir", str(tmp_path / "data")]
    _plant(monkeypatch, target, bug)
    code = cli(argv)
    err = capsys.readouterr().err + caplog.text  # a run's or a bench item's traceback goes to the log
    assert code == EXIT_BUG, f"{' '.join(argv)} exited {code}: {err[-1500:]}"
    assert "Traceback (most recent call last)" in err and PLANTED in err, err[-1500:]
    assert type(BUGS[bug]()).__name__ in err


def test_the_table_covers_every_command():
    """A new command joins the table above."""

    def leaves(parser: argparse.ArgumentParser, prefix: str = "") -> set[str]:
        found = set()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found |= leaves(sub, f"{prefix}{name} ") or {f"{prefix}{name}"}
        return found

    assert leaves(build_parser()) == set(COMMANDS)


@pytest.mark.parametrize(
    ("error", "code"),
    [(InvalidInput("no such thing: change it"), EXIT_FAILED), (Busy("three runs wait already"), EXIT_TEMPFAIL)],
)
def test_what_a_person_can_act_on_is_one_line_and_its_kind_s_code(error, code, store, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr("core.runs.store.RunStore.scan", refuse)
    assert cli(["runs", "--models-dir", str(store["models_root"])]) == code
    err = capsys.readouterr().err
    assert err == f"error: {error}\n"


@pytest.mark.parametrize("command", sorted(c for commands in COMMAND_MODULES.values() for c in commands))
def test_every_commands_help_prints(command, capsys):
    """Walk 52: `calibrate --help` crashed on a bare '%' in one option's help (argparse formats them)."""
    with pytest.raises(SystemExit) as ended:
        build_parser(command).parse_args([command, "--help"])
    assert ended.value.code == 0 and command in capsys.readouterr().out


@pytest.mark.parametrize("multilabel", [False, True])
def test_a_finished_run_without_its_evaluation_is_told_why(multilabel):
    """A done run that lost its evaluation files gets a sentence (it once got None, printed as 'error: None')."""
    from types import SimpleNamespace

    from core.cli.results import not_evaluated_reason
    from core.processes import JobState

    status = SimpleNamespace(map=0.5, epoch=None, error=None)
    run = SimpleNamespace(
        run_id="abc", stopping=False, active=False, state=JobState.DONE, multilabel=multilabel, has_model=True,
        status=status,
    )  # fmt: skip
    said = not_evaluated_reason(run)
    assert isinstance(said, str) and said.startswith("run abc")
    if multilabel:
        assert "core evaluate abc" in said and "core predict abc" in said
