"""What a command's RUN_OR_DATASET argument names, decided once for every command that takes one.

`label-issues`, `label-next` and `data-issues` take a run (id or prefix: its stored arrays) or a dataset
folder or name (its photos through a backbone: `--image-size`, `--weights`, `--seed`); `lr-find` takes a run
(or an alias) or a dataset too. A folder path is no run id and a dataset name no run: both are datasets.
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass
from pathlib import Path

from core.cli.results import not_evaluated_reason
from core.data.datasets import resolve_dataset_path
from core.errors import Unavailable
from core.results.dataset_features import DatasetSource
from core.runs.record import NotARunId, Run, RunNotFound
from core.runs.store import RunStore
from core.serving.aliases import resolve as resolve_name


def dataset_options(parser: argparse.ArgumentParser, seed_help: str = "the folds' and a random start's seed") -> None:
    """--image-size, --weights, --seed: how a command given a dataset (not a run) makes its features."""
    parser.add_argument("--image-size", type=int, default=224, help="for a dataset: the input size (default 224)")
    parser.add_argument("--weights", default="imagenet", help="for a dataset: imagenet, none or a weights file")
    parser.add_argument("--seed", type=int, default=42, help=f"for a dataset: {seed_help}")


def run_or_none(store: RunStore, source: str, aliases: bool = False) -> Run | None:
    """The run `source` names (id, prefix; an alias too with `aliases`), or None: then it names a dataset."""
    with contextlib.suppress(RunNotFound, NotARunId):
        return resolve_name(store, source).run if aliases else store.find(source)
    return None


def analysed(store: RunStore, run_id: str) -> Run:
    """The run, refreshed, with its analysis arrays.

    Raises:
        Unavailable: it has no model yet, was trained before the arrays were stored, or is multi-label (the message
            says what to do).
    """
    run = store.refresh(store.find(run_id))
    if not run.has_model:
        raise Unavailable(not_evaluated_reason(run))
    if run.multilabel:  # its arrays hold label rows and sigmoids: the single-label analyses would misread them
        raise Unavailable(
            f"run {run.run_id} is multi-label: this analysis reads single-label runs only so far; "
            f"`python -m core evaluate {run.run_id}` gives its AP, precision, recall and F1 per label, "
            f"`python -m core predict {run.run_id} PHOTO` its labels and scores"
        )
    if not run.has_analysis:
        raise Unavailable(
            f"run {run.run_id} was trained before validation/test logits were stored: "
            f"run `python -m core analyse {run.run_id}` once"
        )
    return run


@dataclass(frozen=True)
class Source:
    """What RUN_OR_DATASET named: a run (with its analysis arrays) or a dataset seen through a backbone."""

    dataset: Path  # the run's dataset, or the folder named
    run: Run | None = None
    photos: DatasetSource | None = None  # without a run: how the dataset's photos are seen


def run_or_dataset(args: argparse.Namespace, store: RunStore, data_root: Path) -> Source:
    """`args.source` as an analysed run, or else as a dataset seen through `dataset_options`' flags.

    Raises:
        Unavailable: a run without its analysis arrays. DatasetError: neither a run nor a dataset.
    """
    run = run_or_none(store, args.source)
    if run is not None:
        run = analysed(store, run.run_id)
        return Source(Path(run.dataset_path), run=run)
    dataset = resolve_dataset_path(args.source, data_root)
    return Source(dataset, photos=DatasetSource(dataset, data_root, args.image_size, args.weights, args.seed))
