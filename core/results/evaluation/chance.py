"""Whether an accuracy is better than chance: its Wilson 95% interval on the photos it was counted on, against
1 / number of classes (a model that guesses, on balanced classes). A random-start model on a small test split often
cannot be told from chance, and the words beside its figures must say so (the robustness report, the model card).
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # the normal's 97.5% quantile: a two-sided 95% interval


def wilson(right: int, photos: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for right / photos (scipy's `binomtest(...).proportion_ci(method='wilson')`)."""
    if photos <= 0:
        return 0.0, 1.0
    p = right / photos
    centre = (p + z * z / (2 * photos)) / (1 + z * z / photos)
    half = z * math.sqrt(p * (1 - p) / photos + z * z / (4 * photos * photos)) / (1 + z * z / photos)
    return max(0.0, centre - half), min(1.0, centre + half)


def chance_level(classes: int) -> float:
    return 1.0 / max(1, classes)


def no_better_than_chance(accuracy: float, photos: int, classes: int) -> bool:
    """Whether the accuracy's 95% interval on `photos` reaches down to chance (1 / `classes`)."""
    low, _ = wilson(round(accuracy * photos), photos)
    return low <= chance_level(classes)


def chance_words(accuracy: float, photos: int, classes: int) -> str:
    """'accuracy 0.50 on 40 photos (95% interval 0.35-0.65) includes chance, 0.50 for 2 classes'."""
    low, high = wilson(round(accuracy * photos), photos)
    return (
        f"accuracy {accuracy:.2f} on {photos} photos (95% interval {low:.2f}-{high:.2f}) includes chance, "
        f"{chance_level(classes):.2f} for {classes} classes"
    )
