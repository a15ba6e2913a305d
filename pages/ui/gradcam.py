"""Which Grad-CAM map to draw, what its grid can tell, and the size it is drawn at: shared by Evaluate's heatmaps (a
multi-label run's one label's too), Predict's "Where it looked" and Explore's label review.

At the sizes people train at on a CPU (32-96 px) the backbone's last block is a 1x1 to 3x3 grid: its map says
little and, stretched over the photo, shows almost nothing. There the block before the last (twice as fine) is
offered, and picked by default; the caption says the real grid at the run's size and what it can and cannot tell.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import streamlit as st

from core.results.evaluation.explain import COARSE_GRID

DISPLAY = 224  # overlays of a 32 px model are drawn at this size


def display(image: np.ndarray) -> np.ndarray:
    """A photo or an overlay at least DISPLAY px a side, to be seen (a 32 px one stretched, bilinear)."""
    from PIL import Image

    if image.shape[0] >= DISPLAY:
        return image
    return np.asarray(Image.fromarray(image).resize((DISPLAY, DISPLAY), Image.Resampling.BILINEAR))


def layer_picker(explainer, key: str, blank_maps: Callable[[str], int] | None = None) -> str:
    """The map's layer (the last block's, or the finer one before it when the last grid is coarse); its caption.

    `blank_maps(layer)`: how many of this photo's class maps come out blank (no area raised the class) from that
    layer. Given, the picker starts on the map that shows something (the finer one can be blank where the coarser
    is clear), and says so when the one picked shows less than the other.
    """
    last = explainer.last_layer
    chosen = last
    labels: dict[str, str] = {}  # the layers offered (none when the last block's grid is fine enough)
    if len(explainer.layers) > 1 and min(explainer.grid(last)) < COARSE_GRID:
        for layer in explainer.layers:
            rows, columns = explainer.grid(layer)
            labels[layer] = f"{'last block' if layer == last else 'the block before'} ({rows}×{columns})"
        if st.session_state.get(key) not in labels:
            st.session_state[key] = _first_that_shows(explainer.default_layer, list(labels), blank_maps)
        chosen = st.segmented_control(
            "Map from",
            list(labels),
            format_func=labels.get,
            key=key,
            required=True,
            help="The last block is what the head reads, but at this image size its grid is very coarse. The block "
            "before it sees the photo at twice the resolution; its map also explains the same logits.",
        )
    st.caption(explainer.grid_note(chosen))
    if labels and blank_maps is not None:
        other = next(layer for layer in labels if layer != chosen)
        if blank_maps(chosen) > blank_maps(other):
            st.info(
                f"On this photo the map from {labels[other]} shows more: {blank_maps(chosen)} of the maps below "
                "come out blank from this one. Switch *Map from* to see it.",
                icon=":material/visibility:",
            )
    return chosen


def _first_that_shows(default: str, layers: list[str], blank_maps: Callable[[str], int] | None) -> str:
    """The default layer, unless its maps come out blank on this photo and another layer's do not."""
    if blank_maps is None or not blank_maps(default):
        return default
    return min(layers, key=lambda layer: (blank_maps(layer), layer != default))
