"""The model server as a background job of the one job layer, so the app can start and stop it
and a page reload finds it again:

  models/.server/status.json   a ServerStatus: state, pid, url, the models, request counters
  models/.server/server.log    the server's output
  models/.server/STOP          present when someone asked it to stop

`python -m core serve ... --job-dir models/.server` is the process; `launch_server` starts it.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import Conflict, InvalidInput
from core.processes import JobFolder, JobState, JobStatus
from core.serving.aliases import PRODUCTION

SERVER_DIRNAME = ".server"
SERVER_LOG = "server.log"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8500
_MAX_LOG_BYTES = 5 * 1024 * 1024


class ServerRunning(Conflict):
    """A server is already running for this run store."""


@dataclass
class ServerStatus(JobStatus):
    """status.json of the model server: the job's fields, then where it listens and what it served."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    url: str | None = None
    names: list[str] = field(default_factory=list)  # the aliases / runs asked for
    models: list[dict[str, Any]] = field(default_factory=list)  # name, run_id, batching figures
    ready: bool = False
    counters: dict[str, Any] = field(default_factory=dict)  # requests, images, errors, rate...
    options: dict[str, Any] = field(default_factory=dict)  # max_batch, max_wait_ms, max_bytes, auth
    log_rows: int | None = None  # prediction-log rows written
    swaps: list[dict[str, Any]] = field(default_factory=list)  # alias moves seen while running
    grpc: str | None = None  # host:port of the Open Inference Protocol's gRPC service, when it serves one

    def answering(self, name: str) -> str | None:
        """The run the server answers with for model name `name` now; None when it does not serve that name."""
        return next((m["run_id"] for m in self.models if m.get("name") == name), None)

    def client_name(self) -> str | None:
        """The model name to give clients: `production` when served, else another alias, else the first name."""
        served = [m["name"] for m in self.models] or list(self.names)
        aliases = [m["name"] for m in self.models if m.get("alias")]
        if PRODUCTION in aliases:
            return PRODUCTION
        return (aliases or served or [None])[0]

    def switched_at(self, name: str, run_id: str) -> float | None:
        """When the server moved `name` to `run_id` (its last such swap), if it did while running."""
        moves = [s for s in self.swaps if s.get("alias") == name and s.get("to") == run_id]
        return moves[-1].get("at") if moves else None


def server_folder(models_root: str | os.PathLike) -> JobFolder:
    return JobFolder(Path(models_root) / SERVER_DIRNAME, SERVER_LOG, ServerStatus)


def server_status(models_root: str | os.PathLike) -> ServerStatus:
    """The server's status (stopped when none was ever started); one whose process died is shown failed."""
    folder = server_folder(models_root)
    if not folder.status_path.exists():
        return ServerStatus(state=JobState.STOPPED)
    return folder.refresh(what="the model server")


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def launch_server(
    models_root: str | os.PathLike,
    data_root: str | os.PathLike,
    names: list[str],
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    max_batch: int = 32,
    max_wait_ms: float = 5.0,
    max_bytes: int | None = None,
    api_key: str | None = None,
    grpc_port: int | None = None,
) -> ServerStatus:
    """Start `python -m core serve` detached for this run store; return its status at once. `grpc_port`: the
    Open Inference Protocol's gRPC service there too.

    `api_key` reaches the server process through its environment (FLORA_API_KEY), never its command line.

    Raises:
        ServerRunning: one is already running.
        InvalidInput: no model named, or the port is taken.
    """
    if not names:
        raise InvalidInput("pick at least one run or alias to serve")
    folder = server_folder(models_root)
    current = server_status(models_root)
    if current.active:
        raise ServerRunning(f"a server is already {current.state} at {current.url} (pid {current.pid}); stop it first")
    if not port_free(host, port):
        raise InvalidInput(f"port {port} on {host} is in use; choose another port")
    if grpc_port is not None and (grpc_port == port or not port_free(host, grpc_port)):
        raise InvalidInput(f"port {grpc_port} on {host} is in use; choose another gRPC port")
    folder.directory.mkdir(parents=True, exist_ok=True)
    folder.clear_stop()
    if folder.log_path.exists() and folder.log_path.stat().st_size > _MAX_LOG_BYTES:
        folder.log_path.unlink()
    folder.write(
        ServerStatus(
            state=JobState.QUEUED,
            queued_at=time.time(),
            host=host,
            port=int(port),
            url=f"http://{host}:{port}",
            names=list(names),
            stage="starting",
        )
    )
    command = [
        sys.executable,
        "-m",
        "core",
        "serve",
        *names,
        "--host",
        host,
        "--port",
        str(port),
        "--max-batch",
        str(max_batch),
        "--max-wait-ms",
        str(max_wait_ms),
        "--models-dir",
        str(Path(models_root).resolve()),
        "--data-dir",
        str(Path(data_root).resolve()),
        "--job-dir",
        str(folder.directory.resolve()),
    ]
    if max_bytes:
        command += ["--max-bytes", str(int(max_bytes))]
    if grpc_port is not None:
        command += ["--grpc-port", str(int(grpc_port))]
    env = {"FLORA_API_KEY": api_key} if api_key else None
    folder.launch(command, env=env)
    return server_status(models_root)


def stop_server(models_root: str | os.PathLike) -> None:
    """Ask the server to stop: it finishes the requests in hand, then exits."""
    server_folder(models_root).request_stop()
