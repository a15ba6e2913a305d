"""Run the model server in this process: load and warm the models, serve with uvicorn, report.

With a job folder (the app's background server), the status is written every second (URL, models,
request counters) and a stop request (the STOP file) shuts the server down gracefully.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

from core.processes import JobFolder, JobState
from core.runs.store import RunStore
from core.serving.app import API_KEY_ENV, DEFAULT_MAX_BYTES, create_app
from core.serving.decode_budget import (
    DEFAULT_BUDGET_BYTES,
    DEFAULT_REQUEST_PIXELS,
    DecodeBudget,
    return_large_blocks_to_the_system,
)
from core.serving.job import SERVER_LOG, ServerStatus, port_free
from core.serving.log import LogWriter, PredictionLog
from core.serving.quota import FeedbackQuota
from core.serving.registry import BatchOptions, ModelRegistry
from core.serving.service import Service
from core.sharing import is_loopback

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
    allow_anonymous: bool = False,
    limits: ServerLimits | None = None,
    grpc_port: int | None = None,
) -> int:
    """Serve until stopped (Ctrl-C, SIGTERM, or the job's stop flag); return an exit status.

    `grpc_port`: also serve the Open Inference Protocol's gRPC service there (core.serving.grpc_v2).

    Beyond loopback the server needs an API key (`api_key` or FLORA_API_KEY), or `allow_anonymous` to
    answer predictions without one (feedback then stays closed).
    """
    import uvicorn

    options = options or BatchOptions()
    limits = limits or ServerLimits()
    folder = JobFolder(job_dir, SERVER_LOG, ServerStatus) if job_dir else None
    url = f"http://{host}:{port}"
    if folder:
        folder.claim(state=JobState.RUNNING, started_at=time.time(), url=url, host=host, port=port, names=names)
    api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
    if not is_loopback(host):
        if not api_key and not allow_anonymous:
            return _failed(
                folder,
                f"refusing to listen on {host} without an API key: anyone who reaches this port could use the "
                f"models. Set {API_KEY_ENV} (clients send 'Authorization: Bearer <key>'), or pass "
                "--allow-anonymous to serve predictions to anyone (feedback stays closed).",
            )
        if api_key:
            log.warning("listening on %s: reachable from the network; every route but health needs the key", host)
        else:
            log.warning(
                "listening on %s WITHOUT an API key (--allow-anonymous): anyone who reaches this port can ask for "
                "predictions; feedback is closed",
                host,
            )
    if not port_free(host, port):
        return _failed(folder, f"port {port} on {host} is in use; choose another port (--port)")
    if grpc_port is not None and (grpc_port == port or not port_free(host, grpc_port)):
        return _failed(folder, f"port {grpc_port} on {host} is in use; choose another port (--grpc-port)")
    return_large_blocks_to_the_system()
    registry = ModelRegistry(store, names, options, data_root, ood=ood)
    writer = LogWriter(PredictionLog.of_store(store.root))
    service = limits.service(registry, writer, data_root)
    app = create_app(service, api_key, max_bytes, host=host)
    config = limits.uvicorn_config(app, host, port, log_level="info", timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    failure: list[str] = []
    rpc = None
    if grpc_port is not None:
        from core.serving.grpc_v2 import GrpcServer  # heavy: grpc

        rpc = GrpcServer(service, host, grpc_port, api_key, max_bytes, options.max_queue).start()
        if folder:
            folder.update(grpc=rpc.address)
        log.info("gRPC (Open Inference Protocol) on %s", rpc.address)

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
        if rpc is not None:
            rpc.stop()
        registry.close()
        writer.close()
        service.close()
    if failure:
        return _failed(folder, failure[0])
    if folder:
        _write_status(folder, registry, service, options, api_key, max_bytes)
        folder.update(state=JobState.STOPPED, finished_at=time.time(), stage=None, ready=False)
    return 0


@dataclass(frozen=True)
class ServerLimits:
    """What the server takes on at once: decoding memory, pixels per request, feedback per client and in all."""

    decode_budget_bytes: int = DEFAULT_BUDGET_BYTES
    max_request_pixels: int = DEFAULT_REQUEST_PIXELS
    feedback_per_client: int = FeedbackQuota.per_client
    feedback_total: int = FeedbackQuota.total
    trusted_proxies: str = ""  # comma-separated addresses whose X-Forwarded-For is believed ("": nobody's)

    def uvicorn_config(self, app, host: str, port: int, **options):
        """The server's uvicorn settings. X-Forwarded-For names the client (the feedback quota's key) only from
        the proxies the operator named: uvicorn's default believes it from 127.0.0.1, so any local process
        (or a proxy that passes the header through) could pose as a fresh client after a 429."""
        import uvicorn

        return uvicorn.Config(
            app,
            host=host,
            port=port,
            access_log=False,
            proxy_headers=bool(self.trusted_proxies),
            forwarded_allow_ips=self.trusted_proxies or None,
            **options,
        )

    def service(self, registry: ModelRegistry, writer: LogWriter | None, data_root) -> Service:
        quota = FeedbackQuota(per_client=self.feedback_per_client, total=self.feedback_total)
        return Service(
            registry,
            writer,
            data_root,
            budget=DecodeBudget(self.decode_budget_bytes),
            max_request_pixels=self.max_request_pixels,
            quota=quota,
        )


def _failed(folder: JobFolder | None, message: str) -> int:
    log.error(message)
    if folder:
        folder.update(state=JobState.FAILED, error=message, finished_at=time.time(), stage=None, ready=False)
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
        limits: ServerLimits | None = None,
        grpc: bool = False,
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
        limits = limits or ServerLimits()
        self.service = limits.service(self.registry, self.writer, data_root)
        app = create_app(self.service, api_key, max_bytes)
        config = limits.uvicorn_config(app, "127.0.0.1", port, log_level="warning")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="flora-server", daemon=True)
        self.grpc = None
        if grpc:  # the gRPC service beside it, on a free port (`grpc.address`)
            from core.serving.grpc_v2 import GrpcServer  # heavy: grpc

            options = options or BatchOptions()
            self.grpc = GrpcServer(self.service, "127.0.0.1", 0, api_key or None, max_bytes, options.max_queue)

    def __enter__(self) -> BackgroundServer:
        self.registry.start()
        if self.grpc is not None:
            self.grpc.start()
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
        if self.grpc is not None:
            self.grpc.stop()
        self.registry.close()
        if self.writer:
            self.writer.close()
        self.service.close()
