"""The serve bench's load generator against a real HTTP server on loopback: every photo arrives whole in a
multipart body over keep-alive connections, each answer is read by its length, and a failed answer stops the load."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from core.bench.http_load import LoadError, multipart_request, post_photos


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn answers
    received: ClassVar[list[bytes]] = []
    connections: ClassVar[set] = set()
    fail_on: ClassVar[bytes | None] = None

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body
        )
        (part,) = list(message.iter_parts())
        photo = part.get_payload(decode=True)
        type(self).received.append(photo)
        type(self).connections.add(self.client_address)
        status = 500 if photo == type(self).fail_on else 200
        answer = json.dumps({"bytes": len(photo), "name": part.get_filename()}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.received, _Handler.connections, _Handler.fail_on = [], set(), None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_every_photo_arrives_whole_over_keep_alive_connections(server):
    photos = [bytes([i]) * (1000 + i) + b"\r\n--not-a-boundary\r\n" for i in range(5)]
    latencies = asyncio.run(post_photos(server, "/predict", photos, requests=23, clients=4))
    assert len(latencies) == 23 and min(latencies) > 0
    assert sorted(_Handler.received) == sorted(photos[i % 5] for i in range(23))
    assert len(_Handler.connections) <= 4  # kept alive: one connection a client, not one a request


def test_a_failed_answer_stops_the_load_with_its_status(server):
    photos = [b"good", b"bad"]
    _Handler.fail_on = b"bad"
    with pytest.raises(LoadError, match="request failed: 500"):
        asyncio.run(post_photos(server, "/predict", photos, requests=4, clients=1))


def test_the_request_says_its_length_and_boundary():
    request = multipart_request("127.0.0.1:8500", "/predict", b"\xff\xd8photo")
    head, _, body = request.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:8500")
    assert f"Content-Length: {len(body)}".encode() in head
    boundary = head.split(b"boundary=")[1].split(b"\r\n")[0]
    assert body.startswith(b"--" + boundary) and body.endswith(b"--" + boundary + b"--\r\n")
