"""The serve bench's load generator: N keep-alive HTTP/1.1 connections sending single-photo multipart POSTs.

A minimal client in the manner of `wrk` or `hey`: each request's bytes are built once before the clock starts,
and a response is read by its Content-Length, so the clients (on the same 2 cores as the server) cost well under
a millisecond of CPU per request. httpx, the general-purpose client the bench used before, spent 6-7.6 CPU-ms per
request here (measured with `time.process_time` over 1,200 requests), a sixth of the server's whole budget per
photo at 128 px: the bench then measured the client as much as the server. `tests/bench/test_http_load.py`
checks it against a real server: every request answered 200 and parsed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from urllib.parse import urlsplit

BOUNDARY_PREFIX = "flora-bench-"


class LoadError(RuntimeError):
    """A request the server did not answer with 200 (its status and the start of its body), or a broken answer."""


def multipart_request(host: str, path: str, photo: bytes, filename: str = "p.jpg") -> bytes:
    """The whole bytes of one `POST path` whose multipart body holds `photo` as the form field `file`."""
    boundary = BOUNDARY_PREFIX + uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + photo
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: flora-bench\r\nAccept: application/json\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        elif name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
            raise LoadError("a chunked answer: the bench's client reads answers by their Content-Length")
    if length is None:
        raise LoadError(f"an answer without Content-Length: {head[:200]!r}")
    return status, await reader.readexactly(length)


async def post_photos(url: str, path: str, photos: list[bytes], requests: int, clients: int) -> list[float]:
    """Send `requests` single-photo POSTs over `clients` keep-alive connections (photo i % len(photos) for the
    i-th request); return each one's latency in seconds. Raises LoadError on any answer but 200."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    prepared = [multipart_request(f"{host}:{port}", path, photo) for photo in photos]
    counter = iter(range(requests))
    latencies: list[float] = []

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in counter:
                started = time.perf_counter()
                writer.write(prepared[i % len(prepared)])
                status, body = await _read_response(reader)
                if status != 200:
                    raise LoadError(f"request failed: {status} {body[:200].decode(errors='replace')}")
                latencies.append(time.perf_counter() - started)
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies
