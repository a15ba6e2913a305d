"""The store owns its files: every run file through `run_files`, and no module outside core/runs/ spells one."""

from __future__ import annotations

import ast
from pathlib import Path

from core.runs import record
from core.runs.files import RunFiles, run_files

ROOT = Path(__file__).resolve().parents[2]
# What names a file or folder of a run in core.runs.record (the job layer's STATUS_FILE and STOP_FILE included).
ENDINGS = ("_FILE", "_NPZ", "_JSON", "_DIR", "_ARRAYS", "_LOG")
NAMES = {name for name, value in vars(record).items() if isinstance(value, str) and name.endswith(ENDINGS)}


def _paths(files: RunFiles) -> dict[str, Path]:
    found = {
        name: getattr(files, name)
        for name, value in vars(RunFiles).items()
        if isinstance(value, property) and not name.startswith("_")
    }
    return {**found, "task": files.task("tta").parent}


def test_every_run_output_has_its_accessor_inside_the_run_folder(trained_run):
    run = trained_run["store"].get(trained_run["run_id"])
    paths = _paths(run_files(run))
    assert all(path.parent == run.directory for path in paths.values()), paths
    assert len(set(paths.values())) == len(paths)  # no two accessors give one file
    assert {path.name for path in paths.values()} >= set(record.RUN_OUTPUTS) - {"status.json", "metrics.jsonl", "STOP"}
    assert run_files(run).model == run_files(run.directory).model and run_files(run).model.exists()


def test_a_retrain_replaces_every_file_of_the_old_model_and_keeps_only_what_names_the_run():
    """Before: ood.* survived a forced retrain, so the new model was served against the old one's reference."""
    named = {getattr(record, name) for name in NAMES}
    assert named == set(record.RUN_OUTPUTS) | set(record.RUN_KEEPS), named ^ (
        set(record.RUN_OUTPUTS) | set(record.RUN_KEEPS)
    )
    assert not set(record.RUN_OUTPUTS) & set(record.RUN_KEEPS)


def test_no_module_outside_the_store_imports_a_run_file_name():
    """`grep` finds run file names only in core/runs/: a module elsewhere asks `run_files` instead."""
    offenders = []
    for path in sorted([*(ROOT / "core").rglob("*.py"), *(ROOT / "pages").rglob("*.py")]):
        if path.is_relative_to(ROOT / "core" / "runs"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == "core.runs.record":
                offenders += [f"{path.relative_to(ROOT)}: {a.name}" for a in node.names if a.name in NAMES]
    assert not offenders, offenders
