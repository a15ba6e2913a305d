"""Item 7, part: the Open Inference Protocol over gRPC against the same protocol over HTTP, one server.

`python -m core serve RUN --grpc-port P` in its own process; the same 32 clients send single photos as the
protocol's `image` BYTES tensor, first over HTTP (`/v2/models/RUN/infer`, the binary tensor extension, as
`tritonclient.http` sends it) and then over gRPC (`ModelInfer` with raw_input_contents, as `tritonclient.grpc`
sends it), each client on a connection (a channel) of its own, two rounds each way, alternating. Throughput
(the rounds' mean) and latency p50 / p95 (over both rounds).
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
import time
from pathlib import Path

import numpy as np

from core.bench.common import Row, rate_row, time_row
from core.bench.server_cpu import free_port
from core.serving.grpc_proto import SERVICE, message_class

ITEM = "7 serve"
ROUNDS = 2


def _target(protocol: str, url: str, grpc_port: int) -> str:
    return url if protocol == "http" else f"127.0.0.1:{grpc_port}"


def rows(models_root: Path, run_id: str, photos: list[bytes], requests: int, clients: int, start, ready) -> list[Row]:
    """The rows, with the serve item's own `start` (start_server) and `ready` (wait_ready)."""
    port, grpc_port = free_port(), free_port()
    command = ["-m", "core", "serve", run_id, "--port", str(port), "--grpc-port", str(grpc_port), "--max-batch"]
    command += ["32", "--max-wait-ms", "5", "--no-ood", "--models-dir", str(models_root)]
    command += ["--data-dir", str(models_root.parent / "data")]
    log_file = open(models_root.parent / "server-grpc.log", "wb")  # noqa: SIM115
    server = start([sys.executable, *command], log_file)
    url = f"http://127.0.0.1:{port}"
    try:
        ready(url, server, log_file.name)
        for protocol, load in _loads():  # warm the connections and the server
            asyncio.run(load(_target(protocol, url, grpc_port), run_id, photos, min(clients, 8) * 2, clients))
        measured: dict[str, list] = {"http": [], "grpc": []}
        for _ in range(ROUNDS):  # alternating, so a neighbour's load on the machine falls on both
            for protocol, load in _loads():
                started = time.perf_counter()
                latencies = asyncio.run(load(_target(protocol, url, grpc_port), run_id, photos, requests, clients))
                measured[protocol].append((requests / (time.perf_counter() - started), latencies))
        figures = {}
        for protocol, rounds in measured.items():
            every = np.concatenate([latencies for _, latencies in rounds])
            figures[protocol] = {
                "rate": float(np.mean([rate for rate, _ in rounds])),
                "p50": float(np.percentile(every, 50)),
                "p95": float(np.percentile(every, 95)),
            }
    finally:
        server.terminate()
        server.wait(60)
        log_file.close()
    what = (
        f"{requests} single-photo requests from {clients} concurrent clients, twice each way (alternating), image "
        "BYTES tensors, batching on"
    )
    out = [
        rate_row(
            "serve.grpc_vs_http",
            ITEM,
            "Open Inference Protocol throughput, gRPC vs HTTP",
            "req/s",
            figures["grpc"]["rate"],
            figures["http"]["rate"],
            "the same server over HTTP (/v2/.../infer, binary tensors)",
            notes=what,
        )
    ]
    for q in (50, 95):
        row = time_row(
            f"serve.grpc_p{q}",
            ITEM,
            f"request latency p{q} over gRPC",
            figures["grpc"][f"p{q}"] * 1000,
            figures["http"][f"p{q}"] * 1000,
            "the same requests over HTTP",
            notes=what,
        )
        row.unit = "ms"
        out.append(row)
    return out


def _loads():
    return (("http", _http), ("grpc", _grpc))


def _http_body(photo: bytes) -> tuple[bytes, str]:
    blob = struct.pack("<I", len(photo)) + photo
    head = {
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(blob)}}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
    }
    text = json.dumps(head).encode()
    return text + blob, str(len(text))


async def _http(url: str, run_id: str, photos: list[bytes], requests: int, clients: int) -> list[float]:
    import httpx

    bodies = [_http_body(p) for p in photos]
    latencies: list[float] = []
    counter = iter(range(requests))

    async def client() -> None:
        async with httpx.AsyncClient(timeout=120) as http:  # a connection of its own, as a grpc channel
            for i in counter:
                body, length = bodies[i % len(bodies)]
                started = time.perf_counter()
                response = await http.post(
                    f"{url}/v2/models/{run_id}/infer",
                    content=body,
                    headers={"Inference-Header-Content-Length": length, "Content-Type": "application/octet-stream"},
                )
                if response.status_code != 200:
                    raise RuntimeError(f"request failed: {response.status_code} {response.text[:200]}")
                latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies


async def _grpc(address: str, run_id: str, photos: list[bytes], requests: int, clients: int) -> list[float]:
    import grpc

    request_class, response_class = message_class("ModelInferRequest"), message_class("ModelInferResponse")
    messages = []
    for photo in photos:
        message = request_class(model_name=run_id)
        message.inputs.add(name="image", datatype="BYTES", shape=[1])
        message.outputs.add(name="probabilities")
        message.raw_input_contents.append(struct.pack("<I", len(photo)) + photo)
        messages.append(message)
    latencies: list[float] = []
    counter = iter(range(requests))

    async def client() -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            infer = channel.unary_unary(
                f"/{SERVICE}/ModelInfer",
                request_serializer=request_class.SerializeToString,
                response_deserializer=response_class.FromString,
            )
            for i in counter:
                started = time.perf_counter()
                await infer(messages[i % len(messages)], timeout=120)
                latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies
