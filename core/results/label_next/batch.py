"""The batch of photos Label next shows, kept in the run folder (`label_next_batch.json`): a reload, a new tab or
another browser shows the very same cards until someone asks for the next batch (walk 41: a reload drew another
batch, so the cards moved under the person's eyes and the labelled ones vanished with their Undo).

It holds the batch's number, its picks (as `picking.Pick.to_dict`), the photos skipped, how the head was last
retrained and the batch before it (for its summary). What each photo was given stays in the data folder's shared
store (core.data.unlabelled), never here.
"""

from __future__ import annotations

import os
from typing import Any

from core.fileio import read_json, write_json_atomic
from core.runs.files import run_files

KEPT = ("batch", "picks", "skipped", "retrained", "last")  # what a batch is; the rest of a page's state is its own


def load(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The batch kept for the run, or None (none drawn yet, or a file this version cannot read)."""
    found = read_json(run_files(run_dir).label_next_batch)
    if not isinstance(found, dict) or not isinstance(found.get("batch"), int):
        return None
    if not isinstance(found.get("picks"), list) or not isinstance(found.get("skipped", []), list):
        return None
    if not all(isinstance(pick, dict) and isinstance(pick.get("path"), str) for pick in found["picks"]):
        return None
    return {key: found[key] for key in KEPT if key in found}


def save(run_dir: str | os.PathLike, state: dict[str, Any]) -> None:
    """Keep the batch in `state` (its KEPT fields) for the run, atomically."""
    write_json_atomic(run_files(run_dir).label_next_batch, {key: state[key] for key in KEPT if key in state})


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when two states show the same batch: its number, its photos in order and the ones skipped."""

    def shown(state: dict[str, Any]) -> tuple:
        picks = [pick.get("path") for pick in state.get("picks") or []]
        return state.get("batch"), picks, sorted(state.get("skipped") or [])

    return shown(a) == shown(b)
