"""Request bodies parsed where they cannot stall the server.

A JSON body of pixel numbers (TF Serving's `instances`, an Open Inference Protocol `data` list) costs Python about
250 ns per number: 20 MB of them is 1-2 s in `json.loads` and `np.asarray`, each one C call that holds the GIL from
start to end, so a worker thread does not help: /healthz and every other request wait for it. A body with that many
numbers is parsed in a helper process (its own GIL); the rest (photos in base64, binary tensors, small JSON) in a worker
thread, where the trip to a process would cost more than it saves.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import anyio

from core.processes.workers import worker_context

T = TypeVar("T")

NUMBERS_FOR_A_PROCESS = 200_000  # ~50 ms of GIL in a thread; beyond, a helper process (its start: ~0.3 s, once)
HELPER_PROCESSES = 2


def separators(json_text: bytes) -> int:
    """How many numbers (or items) a JSON text can hold at most, from its commas; 0 when it is too short to matter."""
    if len(json_text) < 2 * NUMBERS_FOR_A_PROCESS:  # every number takes a digit and a comma
        return 0
    return json_text.count(b",")


class BodyParser:
    """Runs a parse function in a worker thread, or in a helper process when its JSON holds many numbers."""

    def __init__(self, numbers_for_a_process: int = NUMBERS_FOR_A_PROCESS, processes: int = HELPER_PROCESSES):
        self.numbers_for_a_process = numbers_for_a_process
        self.processes = processes
        self.in_a_process = 0  # bodies parsed in a helper process (the server's status and the tests read it)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    async def parse(self, function: Callable[..., T], json_text: bytes, *args: Any) -> T:
        """`function(*args)`, where it holds no GIL the server needs. `json_text`: the part of the body that is JSON.

        `function` must be a module-level function of a module that imports little (numpy, not Keras): a helper
        process imports it. Its exceptions reach the caller as they are."""
        if separators(json_text) < self.numbers_for_a_process:
            return await anyio.to_thread.run_sync(function, *args)
        pool = self._started()
        try:
            # OSError: the pool shutting its queues down (its helper died) while this submit starts a fresh helper
            future = pool.submit(function, *args)
        except (BrokenProcessPool, OSError):
            return await self._parse_here(pool, function, *args)
        try:
            result = await asyncio.wrap_future(future)
        except BrokenProcessPool:
            return await self._parse_here(pool, function, *args)
        self.in_a_process += 1
        return result

    async def _parse_here(self, broken: ProcessPoolExecutor, function: Callable[..., T], *args: Any) -> T:
        """The helper died (killed, out of memory): parse in a thread rather than lose the request; the next
        request starts a fresh helper."""
        self._discard(broken)
        return await anyio.to_thread.run_sync(function, *args)

    def _started(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # spawn, not fork: a forked child would copy the server's threads (batcher, log writer) mid-use
                self._pool = ProcessPoolExecutor(self.processes, mp_context=worker_context())
            return self._pool

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
