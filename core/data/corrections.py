"""Label corrections a person made after reviewing suspected label errors, applied by the next training run.

  <data>/.flora/shared.sqlite, table marks: one row per (dataset folder, person, photo)
      ("/abs/path", "alice", "rose/123.jpg", {"action": "relabel", "to": "tulip", "at": ...})

Kept in the workspace's data folder, beside the datasets, never inside a dataset folder: the photos
and their folders are the user's (and may be read-only, shared); a correction never moves, renames
or deletes a photo. Actions: "relabel" (train on it as class `to`; a multi-label dataset's photo takes the label
list `labels`, possibly empty), "exclude" (leave it out of every split), "fine" (reviewed, the label is right: no
effect on training, not shown as a suspect again).

How a run applies them (`apply`, and `relabel_lists` for a multi-label run's label lists): the split is drawn
from the photos' own labels first, exactly as without corrections, then relabelled photos take their new label
(or label list) and excluded ones leave the split they were in. So a correction of training photos keeps the
validation and test splits identical (runs before and after stay comparable photo by photo); a correction of a
validation or test photo changes what the test measures, and the Compare page says so and compares the runs on the
test photos they still share with the same label.
The corrections a run applied are recorded in its config.json, and they are part of its id: the
same settings after a correction are a new run.

Whose marks: each person's marks are their own layer (the person at this machine is "local"). A run applies its
owner's marks, never a classmate's. A mark made while looking at someone else's run is also a *proposal* to that run's
owner: it applies to its maker's own runs, and to the owner's once they (or an admin) accept it; the run
records whose corrections it applied (`corrections_by`).

A person's marks are written one row each, in a transaction (`core.shared_store`): a class marking the same
dataset at once, or one person in two tabs, keeps every mark. Corrections kept before the store, one JSON file per
dataset (`<data>/.flora/corrections/<dataset name>-<hash>.json`: "corrections" the local person's, "people" the
others'), are imported the first time the store is opened.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.data.multilabel import NO_LABEL, LabelSets
from core.errors import InvalidInput, NotFound
from core.fileio import read_json
from core.paths import flora_dir
from core.settings.config import canonical_json
from core.shared_store import SharedStore, Table
from core.sharing.people import LOCAL_USER, layer_of

CORRECTIONS_DIR = "corrections"  # in <data>/.flora/: where corrections were kept before the shared store
RELABEL, EXCLUDE, FINE = "relabel", "exclude", "fine"
ACTIONS = (RELABEL, EXCLUDE, FINE)
EFFECTIVE = (RELABEL, EXCLUDE)  # the actions that change what a run trains on
TARGET_KEYS = ("to", "labels")  # what a relabel names: a class (single-label), or a label list (multi-label)


def target_text(entry: dict[str, Any]) -> str:
    """What a relabel mark relabels to, in words: 'tulip', 'red, blue', or 'none of these' for an empty list."""
    if "labels" in entry:
        return ", ".join(entry["labels"]) or NO_LABEL
    return str(entry.get("to", "?"))


def corrections_file(data_root: str | os.PathLike, dataset_root: str | os.PathLike) -> Path:
    """Where the corrections of the dataset at `dataset_root` were kept before the shared store (one JSON file per
    dataset folder): imported once, never written."""
    resolved = Path(dataset_root).expanduser().resolve()
    key = hashlib.sha256(str(resolved).encode()).hexdigest()[:10]
    return flora_dir(data_root) / CORRECTIONS_DIR / f"{resolved.name}-{key}.json"


def _import_files(db: sqlite3.Connection, data_root: Path) -> None:
    for path in sorted((flora_dir(data_root) / CORRECTIONS_DIR).glob("*.json")):
        data = read_json(path, default={}) or {}
        if not isinstance(data, dict) or not data.get("dataset"):
            continue
        dataset = str(Path(str(data["dataset"])).expanduser().resolve())  # as Corrections.load names it
        for person, marks in _layers(data).items():
            db.executemany(
                "INSERT OR IGNORE INTO marks (dataset, person, path, entry) VALUES (?, ?, ?, ?)",
                [(dataset, person, path, json.dumps(entry)) for path, entry in marks.items()],
            )


MARKS = Table(
    "marks",
    (
        "CREATE TABLE marks (dataset TEXT NOT NULL, person TEXT NOT NULL, path TEXT NOT NULL, entry TEXT NOT NULL, "
        "PRIMARY KEY (dataset, person, path))",
    ),
    _import_files,
)


def forget_dataset(data_root: str | os.PathLike, dataset_root: str | os.PathLike) -> int:
    """Remove every person's marks on the dataset at `dataset_root`; returns how many there were."""
    dataset = str(Path(dataset_root).expanduser().resolve())
    with SharedStore.of_data(data_root).write(MARKS) as db:
        return db.execute("DELETE FROM marks WHERE dataset = ?", (dataset,)).rowcount


@dataclass
class Corrections:
    """The corrections of one dataset folder, keyed by photo path relative to it."""

    dataset: str
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    file: Path | None = None  # the database they are kept in (None: not kept, e.g. read from a JSON file)
    person: str = LOCAL_USER  # whose marks `entries` are (core.sharing.people.layer_of)
    others: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # everyone else's, read-only
    data_root: Path | None = None  # the data folder whose store keeps them
    _changed: set[str] = field(default_factory=set, repr=False)  # photos marked or forgotten since loaded

    @classmethod
    def load(
        cls, data_root: str | os.PathLike, dataset_root: str | os.PathLike, person: str | None = LOCAL_USER
    ) -> Corrections:
        """The marks of `person` (their own and the ones they accepted) on the dataset at `dataset_root`."""
        dataset = str(Path(dataset_root).expanduser().resolve())
        store = SharedStore.of_data(data_root)
        layers: dict[str, dict[str, dict[str, Any]]] = {}
        with store.read(MARKS) as db:
            for who, path, entry in db.execute("SELECT person, path, entry FROM marks WHERE dataset = ?", (dataset,)):
                layers.setdefault(who, {})[path] = json.loads(entry)
        person = layer_of(person)
        own = layers.pop(person, {})
        return cls(dataset, own, store.path, person, layers, Path(data_root))

    def save(self) -> None:
        """Write the photos this person marked or forgot since loading, one row each, in one transaction (others'
        marks, and this person's marks made elsewhere since, are left as they are)."""
        if self.data_root is None:
            raise ValueError("these corrections have no store (load them with Corrections.load)")
        with SharedStore.of_data(self.data_root).write(MARKS) as db:
            for path in sorted(self._changed):
                key = (self.dataset, self.person, path)
                if path in self.entries:
                    db.execute(
                        "INSERT INTO marks (dataset, person, path, entry) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT(dataset, person, path) DO UPDATE SET entry = excluded.entry",
                        (*key, json.dumps(self.entries[path])),
                    )
                else:
                    db.execute("DELETE FROM marks WHERE dataset = ? AND person = ? AND path = ?", key)
        self._changed.clear()

    def proposals(self) -> list[dict[str, Any]]:
        """Others' marks proposed to this person (made on their runs), not yet accepted or declined:
        [{"path", "by", "action", "to"? or "labels"?, "at"}], newest first."""
        found = []
        for by, marks in self.others.items():
            for path, entry in marks.items():
                if layer_of(entry.get("proposed_to")) != self.person or self.person in entry.get("declined_by", []):
                    continue
                mine = self.entries.get(path)
                if mine and all(mine.get(k) == entry.get(k) for k in ("action", *TARGET_KEYS)):
                    continue
                found.append(
                    {"path": path, "by": by, **{k: v for k, v in entry.items() if k in ("action", *TARGET_KEYS, "at")}}
                )
        return sorted(found, key=lambda p: -float(p.get("at", 0)))

    def accept(self, path: str, by: str) -> None:
        """Take `by`'s proposed mark on `path` as this person's own (their runs apply it from now on)."""
        entry = self.others.get(by, {}).get(path)
        if entry is None:
            raise NotFound(f"{by} proposed nothing for {path}")
        self.entries[path] = {
            **{k: v for k, v in entry.items() if k in ("action", *TARGET_KEYS)},
            "at": time.time(),
            "from": by,
        }
        self._changed.add(path)

    def decline(self, path: str, by: str) -> None:
        """Say no to `by`'s proposal on `path` (it stays theirs, and stops being shown here); written at once."""
        if self.data_root is None:
            return
        with SharedStore.of_data(self.data_root).write(MARKS) as db:
            key = (self.dataset, by, path)
            row = db.execute("SELECT entry FROM marks WHERE dataset = ? AND person = ? AND path = ?", key).fetchone()
            if row is None:
                return
            entry = json.loads(row[0])
            entry["declined_by"] = sorted({*entry.get("declined_by", []), self.person})
            db.execute(
                "UPDATE marks SET entry = ? WHERE dataset = ? AND person = ? AND path = ?", (json.dumps(entry), *key)
            )
        self.others.setdefault(by, {})[path] = entry

    def mark(
        self,
        path: str,
        action: str,
        to: str | None = None,
        classes: list[str] | None = None,
        proposed_to: str | None = None,
        labels: list[str] | None = None,
    ) -> None:
        """Record `action` for the photo at `path` (relative to the dataset folder), replacing any earlier one.
        A relabel names the class `to` (a single-label dataset) or the photo's whole label list `labels` (a
        multi-label one; an empty list: none of its labels), checked against `classes` when given.
        `proposed_to`: the owner of the run it was marked on, when that is someone else (a proposal to them).

        Raises:
            InvalidInput: an unknown action, or a relabel without a valid target class or label list.
        """
        if action not in ACTIONS:
            raise InvalidInput(f"action must be one of {ACTIONS}. Received: action={action!r}")
        entry: dict[str, Any] = {"action": action, "at": time.time()}
        if action == RELABEL and labels is not None:
            unknown = [name for name in labels if classes is not None and name not in classes]
            if unknown:
                raise InvalidInput(
                    f"cannot relabel {path} with {', '.join(map(repr, unknown))}: not a label of this dataset "
                    f"({', '.join(classes or [])})"
                )
            order = {name: i for i, name in enumerate(classes or sorted(set(labels)))}
            entry["labels"] = sorted(set(labels), key=order.__getitem__)
        elif action == RELABEL:
            if not to:
                raise InvalidInput(f"relabelling {path} needs the class to relabel it to")
            if classes is not None and to not in classes:
                raise InvalidInput(
                    f"cannot relabel {path} to {to!r}: not a class of this dataset ({', '.join(classes)})"
                )
            entry["to"] = to
        if proposed_to is not None and layer_of(proposed_to) != self.person:
            entry["proposed_to"] = layer_of(proposed_to)
        self.entries[path] = entry
        self._changed.add(path)

    def forget(self, path: str) -> None:
        self.entries.pop(path, None)
        self._changed.add(path)

    def action(self, path: str) -> str | None:
        entry = self.entries.get(path)
        return entry.get("action") if entry else None

    def effective(self) -> dict[str, dict[str, Any]]:
        """The corrections that change training (relabel, exclude), without timestamps: what a run records
        ({"action": "relabel", "to": class} or, multi-label, {"action": "relabel", "labels": [...]})."""
        out = {}
        for path in sorted(self.entries):
            entry = self.entries[path]
            if entry.get("action") == RELABEL and isinstance(entry.get("labels"), list):
                out[path] = {"action": RELABEL, "labels": [str(name) for name in entry["labels"]]}
            elif entry.get("action") == RELABEL and entry.get("to"):
                out[path] = {"action": RELABEL, "to": entry["to"]}
            elif entry.get("action") == EXCLUDE:
                out[path] = {"action": EXCLUDE}
        return out

    def counts(self) -> dict[str, int]:
        return {name: sum(1 for e in self.entries.values() if e.get("action") == name) for name in ACTIONS}


def _layers(data: dict) -> dict[str, dict[str, dict[str, Any]]]:
    """Every person's marks in a corrections file from before the store: {person: {path: entry}} (the top level is
    "local")."""

    def valid(marks) -> dict[str, dict[str, Any]]:
        if not isinstance(marks, dict):
            return {}
        return {str(k): dict(v) for k, v in marks.items() if isinstance(v, dict) and v.get("action") in ACTIONS}

    layers = {LOCAL_USER: valid(data.get("corrections"))}
    people = data.get("people")
    for name, marks in people.items() if isinstance(people, dict) else ():
        layers[layer_of(str(name))] = valid(marks)
    return layers


def describe(effective: dict[str, dict[str, Any]] | None) -> str:
    """'+4 corrections' for a run's name ("" for none)."""
    return f"+{len(effective)} correction{'s' if len(effective) != 1 else ''}" if effective else ""


def summary(effective: dict[str, dict[str, Any]] | None) -> str:
    """'3 relabelled, 1 excluded' ("none" for none)."""
    if not effective:
        return "none"
    relabelled = sum(1 for e in effective.values() if e.get("action") == RELABEL)
    excluded = sum(1 for e in effective.values() if e.get("action") == EXCLUDE)
    return ", ".join(
        part
        for part in (f"{relabelled} relabelled" * bool(relabelled), f"{excluded} excluded" * bool(excluded))
        if part
    )


KEPT, NONE = "kept", "none"


def resolve(
    value: str, data_root: str | os.PathLike, dataset_root: str | os.PathLike, store=None, person: str = LOCAL_USER
) -> dict | None:
    """What `--corrections` names, as the effective corrections a run applies (None for none).

    "kept": the ones `person` keeps for the dataset folder now (the default); "none": none; "run:<id>": exactly the
    ones that run applied (what "copy as command" writes, so the command finds that run again); a path:
    a JSON file of {photo: {"action", "to"}} or a corrections file.

    Raises:
        ValueError: an unknown run or an unreadable file.
    """
    if value == KEPT:
        return Corrections.load(data_root, dataset_root, person).effective() or None
    if value == NONE:
        return None
    if value.startswith("run:"):
        if store is None:
            raise InvalidInput(f"--corrections {value} needs the run store")
        try:
            return store.find(value[4:]).corrections
        except NotFound as e:  # no run by that id, or several
            raise NotFound(f"--corrections {value}: no such run") from e
    data = read_json(Path(value).expanduser())
    if not isinstance(data, dict):
        raise InvalidInput(f"--corrections must be kept, none, run:<id> or a JSON file. Received: {value!r}")
    entries = data.get("corrections", data)
    kept = Corrections(str(dataset_root), {str(k): dict(v) for k, v in entries.items() if isinstance(v, dict)})
    return kept.effective() or None


def digest(effective: dict[str, dict[str, Any]] | None) -> str:
    """A short hash of the corrections a run applies ("" for none)."""
    if not effective:
        return ""
    return hashlib.sha256(canonical_json(effective).encode()).hexdigest()[:12]


def dataset_key(fingerprint: str, effective: dict[str, dict[str, Any]] | None) -> str:
    """What a run id hashes for its data: the photos' fingerprint, plus the corrections applied (if any).

    Without corrections it is the fingerprint alone, so runs made before corrections existed keep their ids.
    """
    tag = digest(effective)
    return f"{fingerprint}+corrections:{tag}" if tag else fingerprint


def apply(
    effective: dict[str, dict[str, Any]] | None,
    paths: list[str],
    labels: np.ndarray,
    classes: list[str],
    split,
) -> tuple[np.ndarray, Any, list[str]]:
    """Apply recorded corrections to one run's data after its split was drawn.

    Args:
        effective: {path: {"action": "relabel", "to": class} | {"action": "relabel", "labels": [...]} |
            {"action": "exclude"}}; a label list's relabel is counted here and applied by `relabel_lists`.
        paths, labels: the image cache's rows (positions index both).
        split: a `core.data.datasets.Split` of positions.

    Returns:
        (corrected labels (a copy), the split without excluded positions, notes in words).
    """
    labels = np.array(labels, copy=True)
    if not effective:
        return labels, split, []
    position = {path: i for i, path in enumerate(paths)}
    excluded, relabelled, missing = [], 0, []
    for path, entry in effective.items():
        i = position.get(path)
        if i is None:
            missing.append(path)  # unreadable now, or no longer in the folder
            continue
        if entry.get("action") == RELABEL and entry.get("to") in classes:
            labels[i] = classes.index(entry["to"])
            relabelled += 1
        elif entry.get("action") == RELABEL and "labels" in entry:  # a label list: relabel_lists gives it
            relabelled += 1
        elif entry.get("action") == EXCLUDE:
            excluded.append(i)
    drop = np.array(sorted(excluded), dtype=np.int64)
    by_split = {name: int(np.isin(getattr(split, name), drop).sum()) for name in ("train", "val", "test")}
    kept = replace(
        split,
        train=np.setdiff1d(split.train, drop),
        val=np.setdiff1d(split.val, drop),
        test=np.setdiff1d(split.test, drop),
        notes=list(split.notes),
    )
    where = ", ".join(f"{count} from {name}" for name, count in by_split.items() if count)
    excluded_text = f"{len(excluded)} excluded ({where})" if excluded else "none excluded"
    notes = [f"Label corrections: {relabelled} photo(s) relabelled, {excluded_text}."]
    if missing:
        notes.append(f"{len(missing)} corrected photo(s) are no longer in the dataset: ignored")
    kept.notes.extend(notes)
    return labels, kept, notes


def relabel_lists(
    effective: dict[str, dict[str, Any]] | None, paths: list[str], targets: LabelSets, names: list[str]
) -> LabelSets:
    """A multi-label run's label lists with its relabel marks applied: each marked photo takes its list `labels`
    (labels no longer among `names` dropped); the others keep theirs. `targets` are the lists of `paths`, in order.
    The split is drawn before (core.data.split_rule.next_split), as for a single-label run."""
    if not effective:
        return targets
    position = {path: i for i, path in enumerate(paths)}
    index = {name: j for j, name in enumerate(names)}
    lists = targets.lists()
    changed = False
    for path, entry in effective.items():
        i = position.get(path)
        if i is None or entry.get("action") != RELABEL or not isinstance(entry.get("labels"), list):
            continue
        lists[i] = sorted(index[name] for name in entry["labels"] if name in index)
        changed = True
    return LabelSets.from_lists(lists, targets.num_labels) if changed else targets
