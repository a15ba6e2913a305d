"""Grad-CAM for one label of a multi-label run, on Evaluate's "One label" view: for a photo behind a cell of the label's
2x2 counts (or among its top losses), the map of what raised THAT label's score, with the label's probability and
threshold beside it.

A multi-label model's labels do not compete (a sigmoid each), so the map is of the label's own logit
(core.results.evaluation.explain: Target(j)); the model is loaded once per run and process (pages.ui.run_models), the
maps cached in the run folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from core.data.imaging import ImageError
from core.results.evaluation.explain import Target, label_probability, overlay
from pages.ui import dataset_choice, gradcam, plain, run_models

SHOWN = 24  # photos of each list offered


@st.cache_data(show_spinner="Computing the heatmap…", max_entries=64)
def label_overlay(key: run_models.ModelKey, path: str, label: str, layer: str):
    """(the photo, its map for `label`) as display images, the label's probability, and whether the map is blank."""
    model = run_models.explainer(key)
    image = model.load(path)
    heatmap = model.explain(image, [Target(model.class_index(label))], layer=layer)[0]
    shown = [gradcam.display(image), gradcam.display(overlay(image, heatmap.values))]
    return shown, label_probability(heatmap.score), heatmap.empty


def choices(cell_rows: pd.DataFrame, cell: str, losses: pd.DataFrame) -> dict[str, str]:
    """The photos to offer, by path: the picked cell's first SHOWN, then the top losses not among them; each with
    where it came from."""
    offered: dict[str, str] = {}
    for rows, where in ((cell_rows, cell), (losses, "top loss")):
        for row in rows.head(SHOWN).itertuples():
            offered.setdefault(row.path, f"{Path(row.path).name} · {where} · score {row.score:.2f}")
    return offered


def section(run, label: str, threshold: float, tuned: float, offered: dict[str, str], root: Path, key: str) -> None:
    """Pick one of `offered` ({path relative to the dataset: its description}) and see where the model found `label`."""
    with st.expander(f"Where did the model look for '{plain.md(label)}'? (Grad-CAM)", icon=":material/visibility:"):
        if not run.has_model:
            st.caption("Heatmaps need the run's saved model, which this run does not have.")
            return
        if not offered:
            st.caption("No test photo to explain here.")
            return
        if st.session_state.get(key) not in offered:  # another label, cell or run: nothing of the last pick stays
            st.session_state[key] = None
        picked = st.selectbox(
            "Photo (from the cell above, then the top losses)",
            list(offered),
            index=None,
            format_func=offered.get,
            key=key,
            placeholder="Pick a photo to see its heatmap for this label",
        )
        if picked is None:
            st.caption(
                f"Grad-CAM shows which parts of a photo raised the model's score for '{plain.md(label)}' (the other "
                "labels' scores are their own: each label has a map of its own)."
            )
            return
        full = root / picked
        refused = dataset_choice.outside_reason(full)
        if refused:
            st.warning(f"{plain.md(Path(picked).name)} is not shown: {refused}.", icon=":material/folder_off:")
            return
        model_key = run_models.key_of(run)
        layer_key = f"{key}_layer"
        if st.session_state.get(f"{key}_photo") != picked:  # another photo: start on its own clearest map
            st.session_state[f"{key}_photo"] = picked
            st.session_state.pop(layer_key, None)

        def blank_maps(layer: str) -> int:
            return int(label_overlay(model_key, os.fspath(full), label, layer)[2])

        try:
            layer = gradcam.layer_picker(run_models.explainer(model_key), key=layer_key, blank_maps=blank_maps)
            images, probability, empty = label_overlay(model_key, os.fspath(full), label, layer)
        except ImageError as e:
            st.warning(
                f"{plain.md(Path(picked).name)} could not be read: {plain.md(e)}", icon=":material/broken_image:"
            )
            return
        except (OSError, KeyError, ValueError) as e:
            st.warning(f"The heatmap could not be computed: {plain.md(e)}", icon=":material/warning:")
            return
        name = plain.md(label)
        photo_col, map_col, words_col = st.columns([2, 2, 3])
        photo_col.image(images[0], caption="the photo", width="stretch")
        map_col.image(images[1], caption=f"'{name}'" + (" (no area raised it)" if empty else ""), width="stretch")
        answered = probability >= threshold
        with words_col:
            st.metric(f"Probability of '{name}'", f"{probability:.3f}")
            st.markdown(
                f"Threshold **{threshold:.3f}**"
                + ("" if abs(threshold - tuned) <= 1e-9 else f" (its tuned one: {tuned:.3f})")
                + f": the model {'answers' if answered else 'does not answer'} '{name}' for this photo."
            )
            st.caption(
                f"The map is of the score of '{name}' alone (its logit, before the sigmoid): bright areas raised it "
                "most, dark ones least, on the map's own scale; a photo left as it is: no area raised it. It shows "
                "what this model uses for the label, which on a weak model need not be the thing the label names."
            )
