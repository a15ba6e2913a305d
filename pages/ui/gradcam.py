"""Which Grad-CAM map to draw and what its grid can tell, shared by Evaluate's heatmaps, Predict's "Where it looked"
and Explore's label review.

At the sizes people train at on a CPU (32-96 px) the backbone's last block is a 1x1 to 3x3 grid: its map says
little and, stretched over the photo, shows almost nothing. There the block before the last (twice as fine) is
offered, and picked by default; the caption says the real grid at the run's size and what it can and cannot tell.
"""

from __future__ import annotations

import streamlit as st


def layer_picker(explainer, key: str) -> str:
    """The map's layer (the last block's, or the finer one before it when the last grid is coarse); its caption."""
    from core.results.explain import COARSE_GRID

    last = explainer.last_layer
    chosen = last
    if len(explainer.layers) > 1 and min(explainer.grid(last)) < COARSE_GRID:
        labels = {}
        for layer in explainer.layers:
            rows, columns = explainer.grid(layer)
            labels[layer] = f"{'last block' if layer == last else 'the block before'} ({rows}×{columns})"
        if st.session_state.get(key) not in labels:
            st.session_state[key] = explainer.default_layer
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
    return chosen
