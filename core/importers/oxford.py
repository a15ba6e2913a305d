"""Oxford 102 Flowers: the 102 names in label order, the official split, and the import.

As published (https://www.robots.ox.ac.uk/~vgg/data/flowers/102/): `102flowers.tgz` holds
`jpg/image_00001.jpg` .. `jpg/image_08189.jpg`; `imagelabels.mat` gives each image's class 1..102;
`setid.mat` the official split: `trnid` 1,020 train, `valid` 1,020 validation, `tstid` 6,149 test.
The import writes one folder per class, named after the flower, and records the official split
in the dataset's flora.json so that training uses it instead of a random split.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.data.roots import check_source
from core.importers.archives import Budget, copy_limited, safe_target, tar_files
from core.importers.common import (
    ImportCancelled,
    ImportRejected,
    ImportResult,
    finish,
    report,
    staging_folder,
    validate_dataset_name,
    write_meta,
)
from core.progress import StageCallback

HOMEPAGE = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
IMAGES_ARCHIVE = "102flowers.tgz"
LABELS_FILE = "imagelabels.mat"
SETID_FILE = "setid.mat"
SPLIT_KEYS = {"trnid": "train", "valid": "val", "tstid": "test"}
IMAGE_COUNT = 8189
CITATION = (
    "Nilsback, M-E. and Zisserman, A. Automated flower classification over a large number of classes. "
    "Proceedings of the Indian Conference on Computer Vision, Graphics and Image Processing (2008)"
)

# Label 1..102 in order. The dataset ships numbers only; these are the names in common use
# (the community cat_to_name.json and TensorFlow Datasets agree, bar two typos fixed here:
# "pink-yellow dahlia?" and "lotus lotus").
OXFORD102_NAMES: tuple[str, ...] = (
    "pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea", "english marigold",
    "tiger lily", "moon orchid", "bird of paradise", "monkshood", "globe thistle",
    "snapdragon", "colt's foot", "king protea", "spear thistle", "yellow iris",
    "globe-flower", "purple coneflower", "peruvian lily", "balloon flower", "giant white arum lily",
    "fire lily", "pincushion flower", "fritillary", "red ginger", "grape hyacinth",
    "corn poppy", "prince of wales feathers", "stemless gentian", "artichoke", "sweet william",
    "carnation", "garden phlox", "love in the mist", "mexican aster", "alpine sea holly",
    "ruby-lipped cattleya", "cape flower", "great masterwort", "siam tulip", "lenten rose",
    "barbeton daisy", "daffodil", "sword lily", "poinsettia", "bolero deep blue",
    "wallflower", "marigold", "buttercup", "oxeye daisy", "common dandelion",
    "petunia", "wild pansy", "primula", "sunflower", "pelargonium",
    "bishop of llandaff", "gaura", "geranium", "orange dahlia", "pink-yellow dahlia",
    "cautleya spicata", "japanese anemone", "black-eyed susan", "silverbush", "californian poppy",
    "osteospermum", "spring crocus", "bearded iris", "windflower", "tree poppy",
    "gazania", "azalea", "water lily", "rose", "thorn apple",
    "morning glory", "passion flower", "lotus", "toad lily", "anthurium",
    "frangipani", "clematis", "hibiscus", "columbine", "desert-rose",
    "tree mallow", "magnolia", "cyclamen", "watercress", "canna lily",
    "hippeastrum", "bee balm", "ball moss", "foxglove", "bougainvillea",
    "camellia", "mallow", "mexican petunia", "bromelia", "blanket flower",
    "trumpet creeper", "blackberry lily",
)  # fmt: skip
_IMAGE_NAME = re.compile(r"image_(\d{5})\.jpg")


def class_folder(label: int) -> str:
    """Folder name of official label `label` (1..102): the flower's name, safe on any filesystem."""
    name = OXFORD102_NAMES[label - 1]
    return re.sub(r'[<>:"/\\|?*]', "", name).strip()


def read_labels_and_split(labels_path: str | os.PathLike, setid_path: str | os.PathLike):
    """Read imagelabels.mat and setid.mat.

    Returns:
        (labels, split): labels[i] is the 1-based class of image i+1; split[i] is "train",
        "val", "test", or None for an image the split file does not list.

    Raises:
        ImportRejected: a file is missing, unreadable, or not shaped like the published one.
    """
    from scipy.io import loadmat

    labels = _load_mat_vector(loadmat, labels_path, "labels")
    if labels.size == 0 or labels.min() < 1 or labels.max() > len(OXFORD102_NAMES):
        raise ImportRejected(f"{LABELS_FILE}: labels must be class numbers 1..{len(OXFORD102_NAMES)}")
    split: list[str | None] = [None] * len(labels)
    for key, name in SPLIT_KEYS.items():
        ids = _load_mat_vector(loadmat, setid_path, key)
        if ids.size and (ids.min() < 1 or ids.max() > len(labels)):
            raise ImportRejected(f"{SETID_FILE}: {key} lists image numbers outside 1..{len(labels)}")
        for image_id in ids.tolist():
            if split[image_id - 1] is not None:
                raise ImportRejected(f"{SETID_FILE}: image {image_id} is in two splits")
            split[image_id - 1] = name
    return labels.astype(np.int64), split


def _load_mat_vector(loadmat, path, key: str) -> np.ndarray:
    try:
        data = loadmat(path)
    except FileNotFoundError:
        raise ImportRejected(f"{Path(path).name} not found at {path}") from None
    except Exception as e:
        raise ImportRejected(f"{Path(path).name} is not a readable MATLAB file ({e})") from None
    if key not in data:
        found = ", ".join(k for k in data if not k.startswith("__")) or "nothing"
        raise ImportRejected(f"{Path(path).name} has no {key!r} array (found: {found})")
    array = np.asarray(data[key])
    if array.ndim > 2 or (array.ndim == 2 and min(array.shape) != 1) or not np.issubdtype(array.dtype, np.number):
        raise ImportRejected(f"{Path(path).name}: {key!r} is not a vector of numbers (shape {array.shape})")
    return array.reshape(-1).astype(np.int64)


def import_oxford102(
    source_dir: str | os.PathLike,
    data_root: str | os.PathLike,
    name: str = "oxford102",
    progress: StageCallback | None = None,
    overwrite: bool = False,
    should_stop: Callable[[], bool] | None = None,
    roots: list[Path] | None = None,
) -> ImportResult:
    """Import Oxford 102 Flowers from a folder holding the published files.

    `source_dir` holds `imagelabels.mat`, `setid.mat`, and the images: a `jpg/` folder (the
    archive unpacked) or `102flowers.tgz` itself. The source is only read. `roots` (the app's data roots,
    core.data.roots; None from the command line): the folder must lie inside them, a relative one is taken from
    the data folder, and outside them the refusal is the same whether the folder exists or not.

    Raises:
        ImportRejected: files missing or malformed, or the name is invalid or taken.
        OutsideDataRoots: `roots` given and the folder is not inside them.
    """
    source = Path(source_dir).expanduser()
    if roots is not None:
        source = check_source(source_dir, roots, base=data_root)
    if not source.is_dir():
        raise ImportRejected(f"Oxford 102 source folder not found: {source}")
    missing = [f for f in (LABELS_FILE, SETID_FILE) if not (source / f).is_file()]
    has_jpg, has_tgz = (source / "jpg").is_dir(), (source / IMAGES_ARCHIVE).is_file()
    if missing or not (has_jpg or has_tgz):
        absent = missing + ([] if has_jpg or has_tgz else ["jpg/ (or 102flowers.tgz)"])
        raise ImportRejected(
            f"{source} is missing {', '.join(absent)}: it must hold jpg/, {LABELS_FILE} and {SETID_FILE} "
            f"as published at {HOMEPAGE}"
        )
    name = validate_dataset_name(name, data_root, overwrite)
    labels, split = read_labels_and_split(source / LABELS_FILE, source / SETID_FILE)
    with staging_folder(data_root, name, overwrite) as staging:
        if has_jpg:
            found, skipped = _copy_from_folder(source / "jpg", staging, labels, progress, should_stop)
        else:
            found, skipped = unpack_images(source / IMAGES_ARCHIVE, staging, labels, progress, should_stop)
        for file_name in (LABELS_FILE, SETID_FILE):  # provenance: the dataset keeps its label files
            shutil.copyfile(source / file_name, staging / file_name)
        return build(staging, name, data_root, labels, split, found, skipped)


def build(staging: Path, name: str, data_root, labels, split, found: set[int], skipped) -> ImportResult:
    """Record the names and official split of the placed images, then describe the dataset."""
    if not found:
        raise ImportRejected(
            f"none of the {len(labels):,} images listed in {LABELS_FILE} was found (expected jpg/image_00001.jpg ...)"
        )
    for image_id in range(1, len(labels) + 1):
        if image_id not in found:
            skipped.append({"path": f"jpg/{_file_name(image_id)}", "reason": f"listed in {LABELS_FILE} but missing"})
    splits = {}
    for image_id in sorted(found):
        if split[image_id - 1] is not None:
            splits[f"{class_folder(int(labels[image_id - 1]))}/{_file_name(image_id)}"] = split[image_id - 1]
    write_meta(
        staging,
        {
            "name": name,
            "title": "Oxford 102 Flowers",
            "source": "oxford102",
            "homepage": HOMEPAGE,
            "citation": CITATION,
            "description": "102 flower categories common in the UK, 40 to 258 photos each, with the official split.",
            "labels": {class_folder(i): i for i in range(1, len(OXFORD102_NAMES) + 1)},
            "splits": splits,
        },
    )
    counts = {s: sum(1 for v in splits.values() if v == s) for s in ("train", "val", "test")}
    notes = [
        f"official split: {counts['train']} train / {counts['val']} val / {counts['test']} test",
        "class folders are named after the flowers; flora.json 'labels' maps each to its official number (1..102)",
    ]
    unlisted = len(found) - len(splits)
    if unlisted:
        notes.append(f"{unlisted} images are in no official split: training puts them in train")
    return finish(staging, name, data_root, "oxford102", skipped, notes)


def _file_name(image_id: int) -> str:
    return f"image_{image_id:05d}.jpg"


def _target(staging: Path, labels, file_name: str) -> tuple[int, Path] | None:
    match = _IMAGE_NAME.fullmatch(file_name)
    if not match:
        return None
    image_id = int(match.group(1))
    if not 1 <= image_id <= len(labels):
        return None
    folder = staging / class_folder(int(labels[image_id - 1]))
    folder.mkdir(exist_ok=True)
    return image_id, folder / file_name


def _copy_from_folder(jpg: Path, staging: Path, labels, progress, should_stop) -> tuple[set[int], list]:
    found: set[int] = set()
    skipped: list[dict[str, str]] = []
    names = sorted(os.listdir(jpg))
    for done, file_name in enumerate(names, 1):
        if should_stop and should_stop():
            raise ImportCancelled("import stopped on request")
        path = jpg / file_name
        if file_name.startswith(".") or not path.is_file():
            continue
        placed = _target(staging, labels, file_name)
        if placed is None:
            skipped.append({"path": f"jpg/{file_name}", "reason": f"not an image listed in {LABELS_FILE}"})
            continue
        image_id, target = placed
        shutil.copyfile(path, target)
        found.add(image_id)
        report(progress, "copying", done, len(names))
    return found, skipped


def unpack_images(
    archive: Path,
    staging: Path,
    labels,
    progress: StageCallback | None,
    should_stop: Callable[[], bool] | None,
) -> tuple[set[int], list[dict[str, str]]]:
    """Stream 102flowers.tgz straight into the class folders (no intermediate copy)."""
    found: set[int] = set()
    skipped: list[dict[str, str]] = []
    budget = Budget(max_total_bytes=2 * 1024**3, max_files=2 * IMAGE_COUNT)
    total = archive.stat().st_size
    try:
        for tar, member, parts, read in tar_files(archive, should_stop, "import stopped on request"):
            placed = _target(staging, labels, parts[-1]) if parts[:-1] == ("jpg",) else None
            if placed is None:
                skipped.append({"path": "/".join(parts), "reason": "not an image listed in imagelabels.mat"})
                continue
            image_id, target = placed
            safe_target(staging, target.relative_to(staging).parts)
            budget.add_file()
            copy_limited(tar.extractfile(member), target, budget, limit=member.size)
            found.add(image_id)
            report(progress, "unpacking", read, total)
    except FileExistsError as e:
        raise ImportRejected(f"{archive.name} holds the same image twice ({Path(e.filename).name})") from None
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ImportRejected(f"{archive.name} is not a readable tar archive ({e})") from None
    return found, skipped
