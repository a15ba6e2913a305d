"""JavaScript runtimes from the npm registry, fetched once into a cache and copied into an export.

The web export ships ONNX Runtime Web inside its folder, so the page needs no network. The package is
fetched with npm's own client (`npm pack NAME@VERSION`: the registry and proxy the user's npm is set up
for), checked against the integrity hash pinned here (the registry's sha512, as a lockfile pins it), and
kept in the cache: `$FLORA_NPM_CACHE`, else `$XDG_CACHE_HOME/flora/npm`, else `~/.cache/flora/npm`. A
machine without npm can put the tarball there by hand; it is checked all the same.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.errors import Unavailable

CACHE_ENV = "FLORA_NPM_CACHE"
NPM_TIMEOUT = 600


class NpmError(Unavailable):
    """A package could not be fetched or did not match its pinned hash; the message says what to do."""


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    integrity: str  # the registry's `dist.integrity`: "sha512-<base64>"
    files: tuple[str, ...]  # paths inside the tarball's package/ folder that an export needs

    @property
    def tarball(self) -> str:
        return f"{self.name.lstrip('@').replace('/', '-')}-{self.version}.tgz"


# ONNX Runtime Web's WebAssembly build: the UMD script, its Emscripten glue and the SIMD wasm binary (the
# page sets numThreads to 1 unless it is cross-origin isolated, which a plain static server is not).
ORT_WEB = NpmPackage(
    "onnxruntime-web",
    "1.30.0",
    "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ==",
    ("dist/ort.wasm.min.js", "dist/ort-wasm-simd-threaded.mjs", "dist/ort-wasm-simd-threaded.wasm", "package.json"),
)


def cache_dir() -> Path:
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flora" / "npm"


def _matches(path: Path, integrity: str) -> bool:
    algorithm, _, expected = integrity.partition("-")
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return base64.b64encode(digest.digest()).decode() == expected


def fetch(package: NpmPackage) -> Path:
    """The package's tarball in the cache, fetched with `npm pack` when it is not there (or does not match).

    Raises:
        NpmError: npm is missing or failed, or the tarball does not match the pinned integrity.
    """
    cache = cache_dir()
    cached = cache / package.tarball
    if cached.is_file() and _matches(cached, package.integrity):
        return cached
    npm = shutil.which("npm")
    if npm is None:
        raise NpmError(
            f"the web export ships {package.name} {package.version} from the npm registry and npm is not installed "
            f"here: install Node.js's npm (apt-get install npm), or put {package.tarball} (npm pack "
            f"{package.name}@{package.version}) into {cache}"
        )
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".fetch-") as staging:
        done = subprocess.run(
            [npm, "pack", f"{package.name}@{package.version}", "--pack-destination", staging, "--silent"],
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT,
            cwd=staging,
        )
        fetched = Path(staging) / package.tarball
        if done.returncode != 0 or not fetched.is_file():
            raise NpmError(
                f"npm pack {package.name}@{package.version} failed (exit {done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-600:]}"
            )
        if not _matches(fetched, package.integrity):
            raise NpmError(
                f"{package.tarball} from the registry does not match the integrity pinned in Flora "
                f"({package.integrity[:24]}...): refusing to ship it"
            )
        os.replace(fetched, cached)
    return cached


def vendor(package: NpmPackage, destination: Path) -> list[Path]:
    """Copy the package's `files` (flat, by file name) into `destination`; returns the paths written."""
    tarball = fetch(package)
    destination.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(tarball, "r:gz") as archive:
        for member in package.files:
            source = archive.extractfile(f"package/{member}")
            if source is None:
                raise NpmError(f"{package.tarball} has no {member}")
            target = destination / Path(member).name
            with source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
            written.append(target)
    return written
