"""What a test split of n photos can tell: the margin of an accuracy measured on it, and the note a small one gets.

Moved out of core.data.datasets (which still offers them) so the multi-label split (core.data.multilabel_split) says
the same thing the same way.
"""

from __future__ import annotations

import numpy as np

# Below this many test photos an accuracy moves by a point or more per photo: the split says so.
SMALL_TEST_SPLIT = 100


def accuracy_margin(n: int, accuracy: float = 0.5) -> float:
    """Half the width of a 95% interval of an accuracy measured on `n` photos (normal approximation)."""
    return 1.96 * float(np.sqrt(max(accuracy * (1 - accuracy), 0.25 / max(n, 1)) / max(n, 1)))


def small_test_note(n: int, accuracy: float | None = None) -> str:
    """'Small test split: 37 photos, ...': what such a split can and cannot tell (a sentence of its own)."""
    margin = accuracy_margin(n, 0.5 if accuracy is None else accuracy)
    return (
        f"Small test split: {n} photos, so one photo is {100 / max(n, 1):.1f} points of accuracy and a test accuracy "
        f"is known to about ±{100 * margin:.0f} points (95%); differences between runs smaller than that may be "
        f"chance. More test photos (a larger test fraction, or more photos) give a firmer figure."
    )
