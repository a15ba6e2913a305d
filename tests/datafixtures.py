"""Builders for the data tests: small images, archives of the published layouts, a local HTTP server.

The HTTP server speaks enough of HTTP/1.1 for the download code: Content-Length, ETag, Range and
If-Range, and it can misbehave on purpose (close the connection halfway once, send other bytes).
"""

from __future__ import annotations

import hashlib
import http.server
import io
import shutil
import stat
import tarfile
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import OXFORD

OXFORD_COUNT = 8189


def picture(seed: int, size: tuple[int, int] = (96, 80), gray: bool = False) -> Image.Image:
    """A distinct picture per seed: a smooth random colour field (no two seeds look alike)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    image = Image.fromarray(coarse, "RGB").resize(size, Image.Resampling.BICUBIC)
    return image.convert("L").convert("RGB") if gray else image


def jpeg_bytes(seed: int = 0, size: tuple[int, int] = (96, 80), quality: int = 90) -> bytes:
    out = io.BytesIO()
    picture(seed, size).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def tiny_jpeg() -> bytes:
    """An 8x8 JPEG: the placeholder for the Oxford photos we do not have."""
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 80, 120)).save(out, format="JPEG", quality=50)
    return out.getvalue()


def write_tgz(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    """A gzip tar of `members` (name -> bytes), plus symbolic links (name -> target) if given."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


def tgz_bytes(members: dict[str, bytes]) -> bytes:
    """A .tgz archive of `members` (name -> bytes), in memory."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def write_zip(path, entries: list[tuple[str, bytes]], symlinks: dict[str, str] | None = None, compress=True):
    """A zip of (name, bytes) entries, in order (so duplicates are possible), plus symlink entries."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in entries:
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=method)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def tf_flowers_members(per_class: int = 2) -> dict[str, bytes]:
    """The flower_photos/ layout of tf_flowers, small: 5 class folders of tiny photos and LICENSE.txt."""
    members = {"flower_photos/LICENSE.txt": b"All images in this archive are licensed under CC-BY.\n"}
    seed = 0
    for name in ("daisy", "dandelion", "roses", "sunflowers", "tulips"):
        for i in range(per_class):
            members[f"flower_photos/{name}/{1000 + i}_photo.jpg"] = jpeg_bytes(seed, (40, 32))
            seed += 1
    return members


def oxford_source(folder: Path, image_ids=None, as_tgz: bool = False) -> Path:
    """A folder as Oxford publishes it: jpg/ of placeholder JPEGs (or 102flowers.tgz) and the real .mat files."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(OXFORD / "imagelabels.mat", folder / "imagelabels.mat")
    shutil.copyfile(OXFORD / "setid.mat", folder / "setid.mat")
    ids = range(1, OXFORD_COUNT + 1) if image_ids is None else image_ids
    data = tiny_jpeg()
    if as_tgz:
        write_tgz(folder / "102flowers.tgz", {f"jpg/image_{i:05d}.jpg": data for i in ids})
    else:
        (folder / "jpg").mkdir(exist_ok=True)
        for i in ids:
            (folder / "jpg" / f"image_{i:05d}.jpg").write_bytes(data)
    return folder


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Served:
    """What the server sends for one path."""

    data: bytes
    cut_once_at: int | None = None  # first request only: send this many bytes, then drop the connection
    status: int = 200
    ranges: bool = True  # honour Range requests


@dataclass
class FileServer:
    """A local HTTP server in a thread; `files` maps URL paths ("/a.tgz") to what is served."""

    files: dict[str, Served] = field(default_factory=dict)
    requests: list[dict[str, str | None]] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, path: str, data: bytes, **kwargs) -> str:
        self.files[path] = Served(data, **kwargs)
        return self.url + path

    def start(self) -> FileServer:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                owner.requests.append(
                    {"path": self.path, "range": self.headers.get("Range"), "if_range": self.headers.get("If-Range")}
                )
                served = owner.files.get(self.path)
                if served is None or served.status != 200:
                    self.send_error(served.status if served else 404)
                    return
                data = served.data
                etag = f'"{sha256(data)[:16]}"'
                start = 0
                wanted = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if wanted and served.ranges and (if_range is None or if_range == etag):
                    start = int(wanted.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if served.cut_once_at is not None:
                    cut, served.cut_once_at = served.cut_once_at, None
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def tree(root: Path) -> list[str]:
    """Every path under `root`, relative, sorted (hidden ones included)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
