"""Dataset health check: what is wrong with the data, before an hour of training on it.

Each file is read once: its bytes hashed (SHA-256: exact duplicates) and decoded the way
training decodes it (`core.data.imaging.load_square`, so "unreadable" here means skipped there) into
a 32 px thumbnail for a perceptual hash (near duplicates) and a colour check (grayscale).
Duplicates that straddle the train/val/test split are reported as leakage: under the dataset's
own split when it has one, else under the seeded split training would make (TrainConfig's
defaults). Per-file results are cached by dataset fingerprint, so a second check is instant.

    image_table(index)        one row per image file from its header: sizes, modes, formats
    check_dataset(path)       a HealthReport: findings (errors first, each listing its files) and stats
"""

from core.health.check import check_dataset, saved_report
from core.health.findings import EXTREME_ASPECT, IMBALANCE_RATIO, MIN_CLASS_IMAGES, STRONG_IMBALANCE, TINY_SIDE
from core.health.hashing import (
    GRAY_MEAN_CHROMA,
    GRAY_PEAK_CHROMA,
    NEAR_BITS,
    NEAR_CORRELATION,
    CheckCancelled,
)
from core.health.report import SEVERITIES, Finding, HealthReport
from core.health.table import TABLE_COLUMNS, image_table

__all__ = [
    "EXTREME_ASPECT",
    "GRAY_MEAN_CHROMA",
    "GRAY_PEAK_CHROMA",
    "IMBALANCE_RATIO",
    "MIN_CLASS_IMAGES",
    "NEAR_BITS",
    "NEAR_CORRELATION",
    "SEVERITIES",
    "STRONG_IMBALANCE",
    "TABLE_COLUMNS",
    "TINY_SIDE",
    "CheckCancelled",
    "Finding",
    "HealthReport",
    "check_dataset",
    "image_table",
    "saved_report",
]
