"""Every CLI command with every argument form its help documents: run id, id prefix, alias, dataset name, folder.

`core label-issues FOLDER` answered "is not a run id" for a while (run ids were validated, and only KeyError was
caught): nothing ran that form. This table runs each documented form in-process on the shared tiny run and
asserts the command understood it; a new validation that breaks a form fails here.
"""

from __future__ import annotations

import contextlib
import io

import pytest

from core.cli import main as cli
from core.serving.aliases import AliasStore
from tests.conftest import copy_run

# (command, forms its help documents for the argument, argv with {arg} where the form goes, extra check)
FORMS = {
    "evaluate": (("id", "prefix"), ["evaluate", "{arg}", "--json"]),
    "predict": (("id", "prefix", "alias"), ["predict", "{arg}", "{image}", "--json"]),
    "analyse": (("id", "prefix"), ["analyse", "{arg}", "--json"]),
    "calibrate": (("id", "prefix"), ["calibrate", "{arg}", "--json"]),
    "robustness": (("id", "prefix"), ["robustness", "{arg}", "--photos", "2", "--json"]),
    "card": (("id", "prefix"), ["card", "{arg}", "--json"]),
    "label-issues": (
        ("id", "prefix", "folder", "name"),
        ["label-issues", "{arg}", "--json", "--image-size", "32", "--weights", "none"],
    ),
    "label-next": (
        ("id", "prefix", "folder", "name"),
        ["label-next", "{arg}", "--json", "--image-size", "32", "--weights", "none"],
    ),
    "data-issues": (
        ("id", "prefix", "folder", "name"),
        ["data-issues", "{arg}", "--json", "--image-size", "32", "--weights", "none"],
    ),
    "compare": (("id", "prefix"), ["compare", "{arg}", "{arg}", "--json"]),
    "fix-worth": (("id", "prefix"), ["fix-worth", "{arg}", "--top", "3", "--seeds", "2", "--json"]),
    "explain": (("id", "prefix"), ["explain", "{arg}", "{image}", "--out", "{tmp}/cam.png"]),
    "export": (("id", "prefix", "alias"), ["export", "{arg}", "--format", "keras", "--out", "{tmp}/export"]),
    "alias": (("id", "prefix"), ["alias", "staging", "{arg}"]),
    "runs --show": (("id", "prefix"), ["runs", "--show", "{arg}", "--json"]),
    "data check": (("folder", "name"), ["data", "check", "{arg}", "--json"]),
    "train": (
        ("folder", "name"),
        ["train", "{arg}", "--epochs", "1", "--image-size", "32", "--weights", "none", "--augment", "none", "--json"],
    ),
    "lr-find": (
        ("id", "prefix", "alias", "folder", "name"),
        ["lr-find", "{arg}", "--steps", "20", "--image-size", "32", "--weights", "none", "--json"],
    ),
    "sweep": (
        ("folder", "name"),
        ["sweep", "{arg}", "--trials", "1", "--epochs", "1", "--image-size", "32", "--weights", "none", "--json"],
    ),
}
CASES = [(command, form) for command, (forms, _) in FORMS.items() for form in forms]
# What a command says when it did not take its argument for what the help promised.
MISREAD = ("is not a run id", "no run", "not found", "no such", "ambiguous", "no dataset", "unknown alias")


@pytest.fixture(scope="module")
def forms_store(trained_run, tmp_path_factory):
    """The shared run copied into a store of its own (commands here write: aliases, analyses), with an alias."""
    base = tmp_path_factory.mktemp("forms")
    models_root = base / "models"
    copy_run(trained_run["models_root"] / trained_run["run_id"], models_root / trained_run["run_id"])
    AliasStore(models_root).set("production", trained_run["run_id"])
    return {**trained_run, "models_root": models_root}


def _argument(form: str, run: dict) -> str:
    return {
        "id": run["run_id"],
        "prefix": run["run_id"][:6],
        "alias": "production",
        "folder": str(run["dataset"]),
        "name": run["dataset"].name,
    }[form]


@pytest.mark.parametrize(("command", "form"), CASES, ids=[f"{c}-{f}" for c, f in CASES])
def test_every_documented_argument_form_is_understood(command, form, forms_store, tmp_path):
    image = next(p for p in sorted(forms_store["dataset"].rglob("*")) if p.is_file())
    values = {"arg": _argument(form, forms_store), "image": str(image), "tmp": str(tmp_path)}
    argv = [part.format(**values) for part in FORMS[command][1]]
    argv += ["--models-dir", str(forms_store["models_root"]), "--data-dir", str(forms_store["data_root"])]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(argv)
    said = (out.getvalue() + err.getvalue()).lower()
    assert code == 0, f"{' '.join(argv)} exited {code}: {said[-600:]}"
    assert not [phrase for phrase in MISREAD if phrase in said[-2000:] and "error" in said], said[-600:]


def test_the_table_covers_every_command_that_takes_a_run_or_a_dataset():
    """A new command whose argument is a run or a dataset joins the table (serve blocks: its forms are the
    resolver `predict` and `export` use, and tests/test_serving.py starts it by alias and id)."""
    from core.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse keeps the subparsers here
    takes_run_or_data = set()
    for name, sub in commands.items():
        metavars = {a.metavar for a in sub._actions if not a.option_strings}
        if metavars & {"RUN", "RUN_ID", "DATASET_OR_RUN", "DATA_DIR", "RUN_OR_ALIAS", "OLD", "DIR"}:
            takes_run_or_data.add(name)
    covered = {command.split()[0] for command in FORMS} | {"serve", "retrain", "feedback-compare"}
    assert takes_run_or_data <= covered, sorted(takes_run_or_data - covered)


def test_label_issues_writes_the_whole_list_as_csv_with_the_marks(forms_store):
    """Issue 32: the suspects download whole (the page's button and `label-issues --csv` write the same table)."""
    import csv
    import json

    from core.data.corrections import Corrections
    from core.results.labels.issues import EXPORT_COLUMNS

    where = ["--models-dir", str(forms_store["models_root"]), "--data-dir", str(forms_store["data_root"])]

    def run(*argv) -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            assert cli([*argv, *where]) == 0
        return out.getvalue()

    listed = json.loads(run("label-issues", forms_store["run_id"], "--json"))["issues"]
    assert listed, "the tiny run's colours share hues: some labels look wrong"
    marks = Corrections.load(forms_store["data_root"], forms_store["dataset"])
    marks.mark(listed[0]["path"], "exclude")
    marks.save()
    rows = list(csv.DictReader(io.StringIO(run("label-issues", forms_store["run_id"], "--csv"))))
    assert tuple(rows[0]) == EXPORT_COLUMNS and len(rows) == len(listed)
    assert [r["path"] for r in rows] == [r["path"] for r in listed] and rows[0]["rank"] == "1"
    assert rows[0]["marked"] == "exclude" and float(rows[0]["odds"]) == pytest.approx(listed[0]["odds"], rel=1e-3)
    marks.forget(listed[0]["path"])
    marks.save()
