"""Which folders the app may read datasets from: the data roots.

The Dataset page's "A folder on this machine" once scanned `/` (447,118 file names in 11 s, then again
at every visit, because the choice was remembered) and served images from `/usr/share/icons`. Folders
are now reachable only under the data roots: FLORA_DATA_ROOTS (folders separated by the system's path
separator), else, on a Flora used by one person, the data folder, their home folder and the folder Flora
sits in (so `../shared/data` beside a clone works), and on a shared one the data folder alone. Changing
them is a server setting, so only whoever runs the server (an admin) can. The CLI is not restricted: who
types commands can read the folders anyway.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.paths import PROJECT_ROOT

ROOTS_ENV = "FLORA_DATA_ROOTS"
SCAN_MAX_FILES = 1_000_000  # file names the app reads in one folder scan before it stops and says so
SCAN_MAX_SECONDS = 30.0


class OutsideDataRoots(ValueError):
    """A folder outside the data roots; the message names the roots and how to add one."""


def data_roots(data_root: str | os.PathLike, shared: bool) -> list[Path]:
    """The folders datasets may come from, resolved, without repeats."""
    configured = os.environ.get(ROOTS_ENV, "").strip()
    if configured:
        roots = [Path(part).expanduser() for part in configured.split(os.pathsep) if part.strip()]
        roots.append(Path(data_root))  # the data folder always
    elif shared:
        roots = [Path(data_root)]
    else:
        roots = [Path(data_root), Path.home(), PROJECT_ROOT.parent]
    unique: list[Path] = []
    for root in roots:
        resolved = root.resolve()
        if resolved not in unique:
            unique.append(resolved)
    return unique


def inside(path: str | os.PathLike, roots: list[Path]) -> bool:
    """True when `path` (symlinks resolved) is one of `roots` or below one."""
    resolved = Path(path).expanduser().resolve()
    return any(resolved == root or resolved.is_relative_to(root) for root in roots)


def check_inside(path: str | os.PathLike, roots: list[Path]) -> Path:
    """`path` resolved, or OutsideDataRoots saying which folders are allowed."""
    resolved = Path(path).expanduser().resolve()
    if inside(resolved, roots):
        return resolved
    listed = ", ".join(str(root) for root in roots)
    raise OutsideDataRoots(
        f"{resolved} is outside the folders Flora may read datasets from ({listed}). Move or link the dataset "
        f"into one of them, or have whoever runs this Flora add its folder to {ROOTS_ENV}."
    )
