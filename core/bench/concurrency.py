"""Concurrency: every shared store written by several processes of many threads at once, every write looked for after.

What a class does when it arrives together, at full speed: first sign-ins with distinct names (and a few names
claimed by many at once: exactly one first passphrase may win), sessions, presence, label marks from many people
and from one person, presets, a person's preferences, labelled photos (their records and the dataset's flora.json
list), feedback photos and who gave them, aliases, failed sign-ins of one name. Each process starts its threads
together on one store after another; the figures are writes kept of writes attempted and writes per second.

`python -m core bench --only concurrency` reports them; tests/test_shared_stores.py runs the same stress in the
suite. It works in a scratch folder and never touches the run store or data/.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from core.bench.common import Row
from core.data.corrections import EXCLUDE, Corrections
from core.data.datasets import LABELLED_IN_FLORA, META_FILE
from core.data.unlabelled import Unlabelled
from core.feedback import add_feedback, list_feedback
from core.paths import PROJECT_ROOT
from core.processes import exit_process
from core.runs.files import run_files
from core.runs.store import RunStore
from core.serving.aliases import AliasStore
from core.settings.config import AugmentConfig
from core.settings.presets import save_preset, saved_presets
from core.sharing import attempts, people, sessions
from core.workspace import preference, set_preference

CLASSES = ["daisy", "rose"]
RUN_ID = "concurrency0run"  # the run every alias points at
CONTESTED = 4  # names many people claim at once
TARGET = "target"  # the name every failed sign-in is counted for
# The stores, in the order each process writes them, and their bench keys ("flora.json" is written by "labelled")
STORES = {
    "names": "names",
    "contested": "contested_names",
    "sessions": "sessions",
    "presence": "presence",
    "marks (many people)": "marks_many_people",
    "marks (one person)": "marks_one_person",
    "presets": "presets",
    "workspace": "workspace",
    "labelled": "labelled",
    "flora.json": "flora_json",
    "feedback": "feedback",
    "aliases": "aliases",
    "sign-in failures": "sign_in_failures",
}


@dataclass(frozen=True)
class Plan:
    """How hard: `processes` x `threads`, each thread writing `per_thread` items into every store."""

    processes: int = 2
    threads: int = 16
    per_thread: int = 2

    @property
    def per_store(self) -> int:
        return self.processes * self.threads * self.per_thread

    def keys(self, process: int) -> list[tuple[int, str]]:
        """(thread, item key) of every write `process` makes to one store."""
        return [(t, f"{process}-{t}-{i}") for t in range(self.threads) for i in range(self.per_thread)]

    def all_keys(self) -> list[str]:
        return [key for p in range(self.processes) for _, key in self.keys(p)]


def prepare(workdir: Path, plan: Plan) -> dict[str, str]:
    """A data folder with a small dataset (one unlabelled photo per label write) and a run store with one run."""
    data, models = workdir / "data", workdir / "models"
    dataset = data / "flowers"
    for cls in CLASSES:
        _png(dataset / cls / "0.png", 0)
    for n, key in enumerate(plan.all_keys()):
        _png(dataset / "unlabelled" / f"{key}.png", n)
    store = RunStore(models)
    store.create(RUN_ID, {"config": {}})
    run_files(store.run_dir(RUN_ID)).model.write_bytes(b"")  # what an alias may point at
    return {"data": str(data), "models": str(models), "dataset": str(dataset)}


def _png(path: Path, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_png_bytes(n))


def _png_bytes(n: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (n % 256, (n // 256) % 256, 77)).save(out, format="PNG")
    return out.getvalue()


def _writes(where: dict[str, str], process: int) -> dict[str, Callable[[int, str], object]]:
    """Each store's write of one item (thread, key) -> what the write returned."""
    data, models, dataset = where["data"], where["models"], where["dataset"]

    def contested(thread: int, key: str) -> object:
        if not key.endswith("-0"):
            return None  # one try per thread
        name = f"contested {thread % CONTESTED}"
        try:
            people.claim_name(data, name, f"passphrase {process}-{thread}")
        except people.NameTaken:
            return None
        return [name, f"passphrase {process}-{thread}"]

    def mark(person: str, photo: str) -> None:
        marks = Corrections.load(data, dataset, person)
        marks.mark(photo, EXCLUDE)
        marks.save()

    return {
        "names": lambda t, key: people.claim_name(data, f"student {key}", f"passphrase {key}"),
        "contested": contested,
        "sessions": lambda t, key: [key, sessions.open_session(data, f"student {key}", admin=False)],
        "presence": lambda t, key: sessions.note_presence(data, f"student {key}"),
        "marks (many people)": lambda t, key: mark(f"student {key}", "rose/0.png"),
        "marks (one person)": lambda t, key: mark("teacher", f"rose/{key}.png"),
        "presets": lambda t, key: save_preset(data, f"preset {key}", AugmentConfig(rotation=5.0), owner=f"s{key}"),
        "workspace": lambda t, key: set_preference(data, f"pref {key}", key, person="teacher"),
        "labelled": lambda t, key: Unlabelled.load(data, dataset).label(f"unlabelled/{key}.png", "rose", CLASSES),
        "feedback": lambda t, key: (
            add_feedback(
                data, dataset, CLASSES, "rose", _png_bytes(100_000 + plan_index(key)), name="x.png", by=f"giver {key}"
            ).sha256
        ),
        "aliases": lambda t, key: AliasStore(models).set(f"alias-{key}", RUN_ID),
        "sign-in failures": lambda t, key: attempts.failed(data, attempts.name_key_of(TARGET), TARGET),
    }


def plan_index(key: str) -> int:
    """A number unique to an item key (its photo's colour)."""
    process, thread, item = (int(part) for part in key.split("-"))
    return process * 10_000 + thread * 100 + item


def worker(where: dict[str, str], process: int, plan: Plan, go: Path) -> dict:
    """One process's share: its threads write every store, one store after another, all threads together."""
    writes = _writes(where, process)
    _ready(go, process).touch()
    while not go.exists():  # every process starts at once
        time.sleep(0.005)
    report: dict[str, dict] = {}
    for store in STORES:
        if store == "flora.json":
            continue  # written by the labelled photos' writes
        barrier = threading.Barrier(plan.threads)
        returned: list = []
        errors: list[str] = []
        started = time.time()

        def thread_writes(thread: int, store=store, barrier=barrier, returned=returned, errors=errors) -> None:
            barrier.wait()
            for t, key in plan.keys(process):
                if t != thread:
                    continue
                try:
                    returned.append(writes[store](t, key))
                except Exception as e:  # counted as not kept; the first few are shown
                    errors.append(f"{type(e).__name__}: {e}" if len(errors) > 3 else traceback.format_exc(limit=3))

        threads = [threading.Thread(target=thread_writes, args=(t,)) for t in range(plan.threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        report[store] = {"returned": returned, "errors": errors[:4], "started": started, "ended": time.time()}
    return report


def kept(where: dict[str, str], plan: Plan, reports: list[dict]) -> dict[str, int]:
    """How many of each store's writes are found now."""
    data, models, dataset = where["data"], where["models"], where["dataset"]
    keys = plan.all_keys()
    returned = {store: [r for report in reports for r in report[store]["returned"]] for store in reports[0]}
    found = {"names": len({f"student {key}" for key in keys} & people.token_names(data))}
    winners = [w for w in returned["contested"] if w]
    found["contested"] = sum(
        1 for k in range(CONTESTED) if _one_winner(data, [w for w in winners if w[0] == f"contested {k}"])
    )
    found["sessions"] = sum(
        1
        for key, sid in returned["sessions"]
        if getattr(sessions.session_user(data, sid), "id", "") == f"student {key}"
    )
    found["presence"] = len({f"student {key}" for key in keys} & set(sessions.last_seen(data)))
    found["marks (many people)"] = sum(
        1 for key in keys if Corrections.load(data, dataset, f"student {key}").action("rose/0.png") == EXCLUDE
    )
    teachers = Corrections.load(data, dataset, "teacher")
    found["marks (one person)"] = sum(1 for key in keys if teachers.action(f"rose/{key}.png") == EXCLUDE)
    found["presets"] = len({f"preset {key}" for key in keys} & set(saved_presets(data)))
    found["workspace"] = sum(1 for key in keys if preference(data, f"pref {key}", person="teacher") == key)
    labelled = Unlabelled.load(data, dataset).labelled
    found["labelled"] = sum(1 for key in keys if labelled.get(f"unlabelled/{key}.png") == "rose")
    meta = json.loads((Path(dataset) / META_FILE).read_text()) if (Path(dataset) / META_FILE).exists() else {}
    listed = set(meta.get(LABELLED_IN_FLORA) or [])
    found["flora.json"] = sum(1 for copy in returned["labelled"] if copy in listed and (Path(dataset) / copy).is_file())
    givers = {photo.sha256[:16]: photo.by for photo in list_feedback(data, dataset)}  # named by 16 hex digits
    found["feedback"] = sum(1 for key in keys if givers.get(_sha(100_000 + plan_index(key))[:16]) == f"giver {key}")
    found["aliases"] = len({f"alias-{key}" for key in keys} & set(AliasStore(models).all()))
    counted = {row["key"]: row["failures"] for row in attempts.troubled(data)}
    found["sign-in failures"] = min(plan.per_store, counted.get(attempts.name_key_of(TARGET), 0))
    return found


def _one_winner(data: str, winners: list) -> bool:
    """True when exactly one person was told the name is theirs, and the name still takes their passphrase (a
    second claim with it reads, it writes nothing)."""
    if len(winners) != 1:
        return False
    name, passphrase = winners[0]
    try:
        return people.claim_name(data, name, passphrase) == name
    except people.NameTaken:
        return False


def _ready(go: Path, process: int) -> Path:
    return go.with_name(f"{go.name}.ready{process}")


def _sha(n: int) -> str:
    return hashlib.sha256(_png_bytes(n)).hexdigest()


def stress(workdir: Path, plan: Plan = Plan(), timeout_s: float = 300.0) -> dict[str, dict]:
    """Run `plan.processes` worker processes at once on fresh stores in `workdir`; per store: attempted, kept,
    seconds (first start to last end over the processes), writes per second and the first errors."""
    workdir.mkdir(parents=True, exist_ok=True)
    where = prepare(workdir, plan)
    go = workdir / "go"
    argv = [sys.executable, "-m", "core.bench.concurrency", json.dumps(where), str(go)]
    plan_args = [str(plan.processes), str(plan.threads), str(plan.per_thread)]
    children = [
        subprocess.Popen([*argv, str(p), *plan_args], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
        for p in range(plan.processes)
    ]
    deadline = time.time() + 60
    while not all(_ready(go, p).exists() for p in range(plan.processes)) and time.time() < deadline:
        time.sleep(0.01)  # every process imported and waiting: then they start together
    go.touch()
    reports = []
    for child in children:
        out, _ = child.communicate(timeout=timeout_s)
        if child.returncode != 0:
            raise RuntimeError(f"a writer process failed (exit {child.returncode})")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    found = kept(where, plan, reports)
    result = {}
    for store in STORES:
        phase = "labelled" if store == "flora.json" else store
        attempted = CONTESTED if store == "contested" else plan.per_store
        seconds = max(r[phase]["ended"] for r in reports) - min(r[phase]["started"] for r in reports)
        writes = plan.processes * plan.threads if store == "contested" else plan.per_store
        result[store] = {
            "attempted": attempted,
            "kept": found[store],
            "seconds": round(seconds, 3),
            "writes_per_s": round(writes / seconds, 1) if seconds > 0 else None,
            "errors": [e for r in reports for e in r[phase]["errors"]][:3],
        }
    return result


def run(scale, dataset: Path, workdir: Path) -> list[Row]:
    """The bench item: attempted vs kept, and writes per second, for every store."""
    plan = Plan(per_thread=1 if scale.name == "tiny" else 2 if scale.name == "quick" else 4)
    result = stress(workdir, plan)
    rows = []
    how = f"{plan.processes} processes x {plan.threads} threads at once"
    for store, figures in result.items():
        key = f"concurrency.{STORES[store]}"
        lost = figures["attempted"] - figures["kept"]
        if store == "contested":
            what, unit = "names claimed by many at once that one first passphrase won", "names"
        else:
            what, unit = "writes kept of writes attempted", "writes"
        notes = f"{how}: {figures['kept']} of {figures['attempted']} kept" + (f", {lost} LOST" if lost else "")
        if figures["errors"]:
            notes += f"; first error: {figures['errors'][0].strip().splitlines()[-1]}"
        rows.append(
            Row(
                key,
                "concurrency",
                f"{store}: {what}",
                unit,
                float(figures["kept"]),
                float(figures["attempted"]),
                f"{unit} attempted",
                figures["kept"] / figures["attempted"],
                "all kept",
                figures["kept"] == figures["attempted"],
                notes=f"{notes}; {figures['writes_per_s']} writes/s over {figures['seconds']} s",
                extra=figures,
            )
        )
    return rows


def _main(argv: list[str]) -> int:
    where, go, process, processes, threads, per_thread = argv
    plan = Plan(int(processes), int(threads), int(per_thread))
    report = worker(json.loads(where), int(process), plan, Path(go))
    print(json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    exit_process(_main(sys.argv[1:]))
