"""Which folders the app may read datasets from: the data roots.

The Dataset page's "A folder on this machine" once scanned `/` (447,118 file names in 11 s, then again
at every visit, because the choice was remembered) and served images from `/usr/share/icons`. Folders
are now reachable only under the data roots: FLORA_DATA_ROOTS (folders separated by the system's path
separator), else, on a Flora used by one person, the data folder, their home folder and the folder Flora
sits in (so `../shared/data` beside a clone works), and on a shared one the data folder alone. Changing
them is a server setting, so only whoever runs the server (an admin) can. The CLI is not restricted: who
types commands can read the folders anyway.

Links, one rule at every depth (`LINK_RULE`): the app follows a symbolic link, be it the dataset folder,
a class folder, a subfolder or a photo, only when what it points to is inside the data roots too. A
dataset holding a link that points outside is not opened, and the message names the links; nothing of
it is listed, shown as a thumbnail or trained on from the app.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.paths import PROJECT_ROOT

ROOTS_ENV = "FLORA_DATA_ROOTS"
SCAN_MAX_FILES = 1_000_000  # file names the app reads in one folder scan before it stops and says so
SCAN_MAX_SECONDS = 30.0


LINK_RULE = (
    "A link (the dataset folder, a class folder or a photo) counts only when what it points to is inside them too."
)


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
    given = Path(path).expanduser()
    via = f" ({given} is a link to it)" if given.absolute() != resolved else ""
    raise OutsideDataRoots(
        f"{resolved}{via} is outside the folders Flora may read datasets from ({listed}). {LINK_RULE} Move or "
        f"copy the dataset into one of them, or have whoever runs this Flora add its folder to {ROOTS_ENV}."
    )


def check_links(dataset_root: str | os.PathLike, links: list[str], roots: list[Path]) -> None:
    """Raise OutsideDataRoots when any of a dataset's links (relative paths, core.data.datasets.DatasetIndex.links)
    points outside `roots`, naming the first few."""
    root = Path(dataset_root)
    outside = [link for link in links if not inside(root / link, roots)]
    if not outside:
        return
    named = ", ".join(f"{link} -> {(root / link).resolve()}" for link in outside[:3])
    more = f" and {len(outside) - 3} more" if len(outside) > 3 else ""
    listed = ", ".join(str(r) for r in roots)
    raise OutsideDataRoots(
        f"{root.name} holds {len(outside)} link(s) pointing outside the folders Flora may read datasets from "
        f"({listed}): {named}{more}. {LINK_RULE} Replace the links with the files (or links inside those folders), "
        f"or have whoever runs this Flora add the target folder to {ROOTS_ENV}."
    )
