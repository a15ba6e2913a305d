"""Run the model server in this process: load and warm the models, serve with uvicorn, report.

With a job folder (the app's background server), the status is written every second (URL, models,
request counters) and a stop request (the STOP file) shuts the server down gracefully.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from core.processes import JobFolder, RunState
from core.runs import RunStore
from core.serving.app import DEFAULT_MAX_BYTES, create_app
from core.serving.job import SERVER_LOG, ServerStatus, port_free
from core.serving.log import LogWriter, PredictionLog
from core.serving.registry import BatchOptions, ModelRegistry
from core.serving.service import Service

log = logging.getLogger("flora")
STATUS_INTERVAL = 1.0


def serve(
    store: RunStore,
    names: list[str],
    host: str = "127.0.0.1",
    port: int = 8500,
    options: BatchOptions | None = None,
    data_root: str | os.PathLike | None = None,
    api_key: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    job_dir: str | os.PathLike | None = None,
    ood: bool = True,
) -> int:
    """Serve until stopped (Ctrl-C, SIGTERM, or the job's stop flag); return an exit status."""
    import uvicorn

    options = options or BatchOptions()
    folder = JobFolder(job_dir, SERVER_LOG, ServerStatus) if job_dir else None
    url = f"http://{host}:{port}"
    if folder:
        folder.claim(state=RunState.RUNNING, started_at=time.time(), url=url, host=host, port=port, names=names)
    if not port_free(host, port):
        return _failed(folder, f"port {port} on {host} is in use; choose another port (--port)")
    registry = ModelRegistry(store, names, options, data_root, ood=ood)
    writer = LogWriter(PredictionLog.of_store(store.root))
    service = Service(registry, writer, data_root)
    app = create_app(service, api_key, max_bytes)
    config = uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False, timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    failure: list[str] = []

    def load() -> None:
        try:
            if folder:
                folder.update(stage="loading and warming the models")
            registry.start()
            log.info("ready: %s serves %s", url, ", ".join(f"{m['name']} -> {m['run_id']}" for m in registry.models()))
        except Exception as e:  # a bad name or a broken model: say so and stop the server
            log.exception("could not load the models")
            failure.append(f"{type(e).__name__}: {e}")
            server.should_exit = True

    def report() -> None:
        while not server.should_exit:
            if folder:
                if folder.stop_requested():
                    log.info("stop requested; shutting down")
                    server.should_exit = True
                    break
                _write_status(folder, registry, service, options, api_key, max_bytes)
            time.sleep(STATUS_INTERVAL)

    threading.Thread(target=load, name="load-models", daemon=True).start()
    threading.Thread(target=report, name="server-status", daemon=True).start()
    try:
        server.run()
    except SystemExit as e:  # uvicorn exits when it cannot bind
        failure.append(f"the server could not start (exit {e.code}); see its log")
    finally:
        registry.close()
        writer.close()
    if failure:
        return _failed(folder, failure[0])
    if folder:
        _write_status(folder, registry, service, options, api_key, max_bytes)
        folder.update(state=RunState.STOPPED, finished_at=time.time(), stage=None, ready=False)
    return 0


def _failed(folder: JobFolder | None, message: str) -> int:
    log.error(message)
    if folder:
        folder.update(state=RunState.FAILED, error=message, finished_at=time.time(), stage=None, ready=False)
    return 1


def _write_status(folder, registry, service, options, api_key, max_bytes) -> None:
    try:
        folder.update(
            ready=registry.ready,
            stage="serving" if registry.ready else "loading and warming the models",
            models=registry.models() if registry.ready else [],
            counters=service.counters.to_dict(),
            options={
                "max_batch": options.max_batch,
                "max_wait_ms": options.max_wait_ms,
                "max_queue": options.max_queue,
                "max_bytes": max_bytes,
                "auth": bool(api_key or os.environ.get("FLORA_API_KEY")),
            },
            log_rows=service.writer.written if service.writer else None,
            swaps=registry.swaps[-20:],
        )
    except OSError as e:
        log.warning("could not write the server status: %s", e)


class BackgroundServer:
    """A server in a thread of this process, on 127.0.0.1 (for the bench and the tests).

    with BackgroundServer(store, ["production"]) as server: httpx.get(server.url + "/v2/health/ready")
    """

    def __init__(
        self,
        store: RunStore,
        names: list[str],
        options: BatchOptions | None = None,
        data_root: str | os.PathLike | None = None,
        api_key: str | None = "",
        max_bytes: int = DEFAULT_MAX_BYTES,
        port: int | None = None,
        log_predictions: bool = True,
    ):
        import socket

        import uvicorn

        if port is None:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.registry = ModelRegistry(store, names, options or BatchOptions(), data_root)
        self.writer = LogWriter(PredictionLog.of_store(store.root)) if log_predictions else None
        self.service = Service(self.registry, self.writer, data_root)
        app = create_app(self.service, api_key, max_bytes)
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="flora-server", daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.registry.start()
        self._thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            if time.time() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self._thread.join(30)
        self.registry.close()
        if self.writer:
            self.writer.close()
