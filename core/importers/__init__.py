"""Datasets in, safely: fetch tf_flowers and Oxford 102, import Oxford 102 and zip uploads, draw a demo set.

Every importer writes into a hidden staging folder under `data/` and renames it into place at
the end, so a failed import leaves nothing half-written, and nothing is ever written outside
`data_root`. StageCallback callbacks receive (stage, done, total); none of this imports Streamlit.

    get_dataset(key, data_root, ...)          "tf_flowers" | "oxford102" | "demo"
    import_oxford102(source_dir, data_root)   jpg/ + imagelabels.mat + setid.mat, official split kept
    import_zip(archive, name, data_root)      class folders in a zip, hostile archives refused
    make_demo_dataset(data_root)              synthetic, offline
"""

from core.importers.archives import MAX_FILES, MAX_RATIO, MAX_TOTAL_BYTES, import_zip
from core.importers.common import (
    BYTE_STAGES,
    DownloadError,
    ImportCancelled,
    ImportRejected,
    ImportResult,
    StageCallback,
    validate_dataset_name,
)
from core.importers.demo import DEMO_CLASSES, make_demo_dataset
from core.importers.oxford import OXFORD102_NAMES, import_oxford102, read_labels_and_split
from core.importers.sources import KNOWN_SOURCES, DatasetSource, RemoteFile, downloads_dir, get_dataset

__all__ = [
    "BYTE_STAGES",
    "DEMO_CLASSES",
    "KNOWN_SOURCES",
    "MAX_FILES",
    "MAX_RATIO",
    "MAX_TOTAL_BYTES",
    "OXFORD102_NAMES",
    "DatasetSource",
    "DownloadError",
    "ImportCancelled",
    "ImportRejected",
    "ImportResult",
    "RemoteFile",
    "StageCallback",
    "downloads_dir",
    "get_dataset",
    "import_oxford102",
    "import_zip",
    "make_demo_dataset",
    "read_labels_and_split",
    "validate_dataset_name",
]
