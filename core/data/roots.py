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
it is listed, shown as a thumbnail or trained on from the app. A dataset folder under the data folder that is
itself a link out of the roots (`data/linkds -> /elsewhere`) is not listed either, and picking it any other way
(a remembered choice, a link to a page) is refused with the same rule (`OutsideDataRoots` is a `DatasetError`,
so every place that shows why a dataset cannot be used shows this too).

Imports from a server folder (Oxford 102, a table's images) read only inside the roots, and their refusal
(`check_source`) reads the same for a folder that exists, one that is a link and one that does not: it tells
nothing about what lies outside.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from core.data.datasets import DatasetError
from core.paths import PROJECT_ROOT

ROOTS_ENV = "FLORA_DATA_ROOTS"
SCAN_MAX_FILES = 1_000_000  # file names the app reads in one folder scan before it stops and says so
SCAN_MAX_SECONDS = 30.0


LINK_RULE = (
    "A link (the dataset folder, a class folder or a photo) counts only when what it points to is inside them too."
)


class OutsideDataRoots(DatasetError):
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


def typed_folder(typed: str, data_root: str | os.PathLike) -> Path:
    """A folder as a person typed it: `~` expanded, a short path taken from the data folder (`flowers`), or from
    above it when it starts with the data folder's own name (`data/flowers`, as the pages name the data folder on
    a shared Flora), never from the folder the app was started in."""
    given = Path(typed.strip()).expanduser()
    if given.is_absolute():
        return given
    root = Path(data_root).absolute()
    inner = root / given
    if given.parts and given.parts[0] == root.name and not inner.exists():
        return root.parent / given
    return inner


def check_inside(
    path: str | os.PathLike, roots: list[Path], shown: Callable[[Path], str] = str, typed: str | None = None
) -> Path:
    """`path` resolved, or OutsideDataRoots saying which folders are allowed. `shown(path)`: how the message writes
    a server path (a shared Flora: from the data folder on, core.paths.relative_to_data); `typed`: the folder as the
    person wrote it, which the message names instead of the path it led to (`~`, not the server's home)."""
    resolved = Path(path).expanduser().resolve()
    if inside(resolved, roots):
        return resolved
    listed = ", ".join(shown(root) for root in roots)
    given = Path(path).expanduser().absolute()
    # a link that lies in the roots (data/linkds) is named as one; where a path outside them leads is not said
    link = given != resolved and _lexically_inside(given, roots)
    what = "is a link pointing outside" if link else "is outside"
    named = shown(given) if link or typed is None else typed
    raise OutsideDataRoots(
        f"{named} {what} the folders Flora may read datasets from ({listed}). {LINK_RULE} Move or "
        f"copy the dataset into one of them, or have whoever runs this Flora add its folder to {ROOTS_ENV}."
    )


def _lexically_inside(path: Path, roots: list[Path]) -> bool:
    """`path` (made absolute, `..` and links not followed) lies under a root as written."""
    normal = Path(os.path.normpath(path))
    return any(normal == root or normal.is_relative_to(root) for root in roots)


def check_source(
    path: str | os.PathLike,
    roots: list[Path],
    base: str | os.PathLike | None = None,
    shown: Callable[[Path], str] | None = None,
) -> Path:
    """A server folder to import from (Oxford 102, a table's images), resolved, when it is inside `roots`.

    A relative path is taken from `base` (the data folder). Outside the roots, OutsideDataRoots says the same
    words whether the folder exists, is a link or is missing, and names only what was typed: an import's error
    must not tell a student what the server holds (`/root/.ssh` and `/root/nonexistent` read alike). With `shown`
    (how a page writes a server path, as in check_inside) it names the folders that are allowed, and what to do
    (walk 54: the refusal named FLORA_DATA_ROOTS but not the folders in force)."""
    given = Path(path).expanduser()
    if not given.is_absolute() and base is not None:
        given = Path(base) / given
    if inside(given, roots):
        return given.resolve()
    if shown is None:
        raise OutsideDataRoots(
            f"{path} is not a folder Flora may import from: imports read only inside the data folder (and the "
            f"other data roots whoever runs this Flora listed in {ROOTS_ENV}). {LINK_RULE} Put the files there first."
        )
    listed = ", ".join(shown(root) for root in roots[:6]) + (f" and {len(roots) - 6} more" if len(roots) > 6 else "")
    usual = f" (the data folder, {shown(Path(base))}, is the usual place)" if base is not None else ""
    raise OutsideDataRoots(
        f"{path} is not a folder Flora may import from: imports read only inside {listed}. {LINK_RULE} Copy or "
        f"move the photos into one of them{usual}, or have whoever runs this Flora add their folder to {ROOTS_ENV}."
    )


def check_links(
    dataset_root: str | os.PathLike, links: list[str], roots: list[Path], shown: Callable[[Path], str] = str
) -> None:
    """Raise OutsideDataRoots when any of a dataset's links (relative paths, core.data.datasets.DatasetIndex.links)
    points outside `roots`, naming the first few (`shown`: how a server path is written, as in check_inside)."""
    root = Path(dataset_root)
    outside = [link for link in links if not inside(root / link, roots)]
    if not outside:
        return
    named = ", ".join(f"{link} -> {shown((root / link).resolve())}" for link in outside[:3])
    more = f" and {len(outside) - 3} more" if len(outside) > 3 else ""
    listed = ", ".join(shown(r) for r in roots)
    raise OutsideDataRoots(
        f"{root.name} holds {len(outside)} link(s) pointing outside the folders Flora may read datasets from "
        f"({listed}): {named}{more}. {LINK_RULE} Replace the links with the files (or links inside those folders), "
        f"or have whoever runs this Flora add the target folder to {ROOTS_ENV}."
    )
