"""The models a server answers for, by name, and the swap when an alias moves.

Each name given at start (an alias or a run) is resolved to a run; each run is loaded once, with
its own batcher, warmed before the server says ready. A watcher re-reads the aliases file when it
changes: the new run is loaded and warmed while the old one keeps answering, then the name points
at the new one. Requests already queued on the old model finish there; none is dropped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

from core.errors import Busy, InvalidInput, NotFound
from core.runs.record import RunNotFound
from core.runs.store import RunStore
from core.serving.aliases import AliasStore, resolve
from core.serving.batching import DynamicBatcher
from core.serving.engine import ServedModel

log = logging.getLogger("flora")
WATCH_INTERVAL = 0.2  # a read of the aliases' version: cheap; part of how soon a switch starts
SPARE_RUNS = 1  # runs kept loaded after no name points at them (a rollback is then immediate)


class UnknownModel(NotFound):
    def __str__(self) -> str:
        name, served = self.args
        return f"unknown model {name!r}; this server answers for: {', '.join(served) or 'nothing yet'}"


class NotReady(Busy):
    """The server is still loading and warming its models."""


@dataclass
class BatchOptions:
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 512


@dataclass
class Loaded:
    """A run loaded for serving, with its batcher."""

    model: ServedModel
    batcher: DynamicBatcher
    loaded_at: float = field(default_factory=time.time)

    @property
    def run_id(self) -> str:
        return self.model.run_id


@dataclass(frozen=True)
class Route:
    """What a request's model name reached: the name, the loaded run, and the alias if any."""

    name: str
    loaded: Loaded
    alias: str | None


class ModelRegistry:
    """Names -> loaded runs; thread-safe; hot-swaps aliases."""

    def __init__(
        self,
        store: RunStore,
        names: list[str],
        options: BatchOptions | None = None,
        data_root: str | os.PathLike | None = None,
        warm: bool = True,
        ood: bool = True,
    ):
        if not names:
            raise InvalidInput("a server needs at least one model: a run id, a prefix or an alias")
        self.store = store
        self.names = list(dict.fromkeys(names))
        self.options = options or BatchOptions()
        self.data_root = data_root
        self.warm = warm
        self.ood = ood
        self.aliases = AliasStore(store.root)
        self._routes: dict[str, str] = {}  # name -> run id
        self._alias_names: set[str] = set()
        self._loaded: dict[str, Loaded] = {}
        # Runs no name points at any more, kept loaded (the newest SPARE_RUNS): moving an alias back (a rollback
        # after a promote) is then a switch, not an 18 s load.
        self._spares: dict[str, Loaded] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.swaps: list[dict] = []

    # ------------------------------------------------------------------ life

    def start(self) -> None:
        """Resolve and load every name (warming each model), then watch the aliases."""
        stamp = self.aliases.stamp()
        for name in self.names:
            resolved = resolve(self.store, name)
            self._load(resolved.run.run_id)
            with self._lock:
                self._routes[name] = resolved.run.run_id
                if resolved.alias:
                    self._alias_names.add(name)
        self._ready.set()
        self._watcher = threading.Thread(target=self._watch, args=(stamp,), name="alias-watcher", daemon=True)
        self._watcher.start()

    def close(self) -> None:
        self._stop.set()
        if self._watcher:
            self._watcher.join(5)
        for loaded in [*self._loaded.values(), *self._spares.values()]:
            loaded.batcher.close()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def _load(self, run_id: str, warm_in_background: bool = False) -> Loaded:
        with self._lock:
            if run_id in self._loaded:
                return self._loaded[run_id]
            if run_id in self._spares:  # retired a moment ago, still warm
                self._loaded[run_id] = self._spares.pop(run_id)
                return self._loaded[run_id]
        run = self.store.get(run_id)
        started = time.perf_counter()
        # A reference the run lacks is fitted in the background: the run answers without waiting for it.
        model = ServedModel(run, self.data_root, with_reference=self.ood, reference_later=True)
        batcher = DynamicBatcher(
            model.forward,
            (model.image_size, model.image_size, 3),
            self.options.max_batch,
            self.options.max_wait_ms,
            self.options.max_queue,
            name=f"batcher-{run_id}",
            pads=lambda: model.fixed_shapes,
            workers=lambda: model.batches_at_once,
        )
        if self.warm:  # a switch compiles in the background: the new run answers meanwhile, op by op
            model.warm(batcher.sizes, background=warm_in_background)
        batcher.start()
        loaded = Loaded(model, batcher)
        log.info("loaded run %s in %.1fs (batch sizes %s)", run_id, time.perf_counter() - started, batcher.sizes)
        with self._lock:
            return self._loaded.setdefault(run_id, loaded)

    # ------------------------------------------------------------------ lookups

    def get(self, name: str) -> Route:
        """The loaded run for a model name: a served name, or the id (or a unique prefix) of a loaded run.

        Raises:
            NotReady: still loading.
            UnknownModel: nothing served by that name.
        """
        if not self._ready.is_set():
            raise NotReady("the server is still loading its models; retry shortly")
        with self._lock:
            run_id = self._routes.get(name)
            if run_id is not None:
                return Route(name, self._loaded[run_id], name if name in self._alias_names else None)
            matches = [rid for rid in self._loaded if rid.startswith(name)] if name else []
            if len(matches) == 1:
                return Route(name, self._loaded[matches[0]], None)
            raise UnknownModel(name, list(self._routes))

    def default(self) -> Route:
        return self.get(self.names[0])

    def models(self) -> list[dict]:
        """Each served name with its run, alias-ness and batching figures."""
        with self._lock:
            routes = dict(self._routes)
            aliases = set(self._alias_names)
            loaded = dict(self._loaded)
        out = []
        for name, run_id in routes.items():
            entry = loaded[run_id]
            out.append(
                {
                    "name": name,
                    "run_id": run_id,
                    "alias": name in aliases,
                    "classes": len(entry.model.classes),
                    "task": "multilabel" if entry.model.multilabel else "single",
                    "image_size": entry.model.image_size,
                    "ood_method": entry.model.ood_method,
                    "ood_summary": entry.model.reference.detector.summary() if entry.model.reference else None,
                    "batching": entry.batcher.stats.to_dict(),
                    "queued": entry.batcher.queued,
                }
            )
        return out

    # ------------------------------------------------------------------ hot swap

    def _watch(self, stamp: float) -> None:
        while not self._stop.wait(WATCH_INTERVAL):
            current = self.aliases.stamp()
            if current == stamp:
                continue
            stamp = current
            try:
                self.sync_aliases()
            except Exception:  # a bad edit must not kill the watcher; the old routes keep serving
                log.exception("could not apply the changed aliases")

    def sync_aliases(self) -> list[tuple[str, str, str]]:
        """Point every served alias at its current run (loading and warming it first); return the swaps."""
        swaps = []
        targets = self.aliases.all()
        for name in list(self._alias_names):
            entry = targets.get(name)
            if entry is None:
                continue  # an alias removed while served keeps its last run until restart
            new_id = entry["run_id"]
            old_id = self._routes.get(name)
            if new_id == old_id:
                continue
            try:
                self.store.get(new_id)
            except RunNotFound:
                log.warning("alias %s points at missing run %s; still serving %s", name, new_id, old_id)
                continue
            started = time.perf_counter()
            self._load(new_id, warm_in_background=True)  # loaded before the switch: the old run answers meanwhile
            seconds = round(time.perf_counter() - started, 2)
            with self._lock:
                self._routes[name] = new_id
            swaps.append((name, old_id, new_id))
            self.swaps.append({"alias": name, "from": old_id, "to": new_id, "at": time.time(), "load_seconds": seconds})
            log.info("alias %s now serves run %s (was %s; %.1f s to load it)", name, new_id, old_id, seconds)
            self._retire(old_id)
        return swaps

    def _retire(self, run_id: str | None) -> None:
        """Unload a run no name points at any more, once its queued requests are done."""
        if run_id is None:
            return
        closing = []
        with self._lock:
            if run_id in self._routes.values():
                return
            loaded = self._loaded.pop(run_id, None)
            if loaded is not None:
                self._spares[run_id] = loaded
            while len(self._spares) > SPARE_RUNS:
                closing.append(self._spares.pop(next(iter(self._spares))))
        for old in closing:
            threading.Thread(target=old.batcher.close, name=f"retire-{old.run_id}", daemon=True).start()
