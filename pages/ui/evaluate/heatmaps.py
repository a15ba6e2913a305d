"""Grad-CAM heatmaps for a misclassified photo on the Evaluate page: where the model looked for the
class it predicted, for the true class, and what tipped it (the contrast of the two).

The model is loaded once per run and process (pages.ui.run_models) and only when a photo is picked;
core.results.evaluation.explain caches each (image, class) map in the run folder. Keras is imported inside functions,
never when the page is imported."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from core.data.imaging import ImageError
from core.results.evaluation.explain import Target, overlay
from pages.ui import dataset_choice, gradcam, plain, run_models, teaching


@st.cache_data(show_spinner="Computing the heatmaps…", max_entries=64)
def overlays(key: run_models.ModelKey, path: str, true_name: str, predicted_name: str, layer: str):
    """(photo, predicted map, true map, contrast map) as display images, and the contrast score."""
    model = run_models.explainer(key)
    image = model.load(path)
    true, predicted = model.class_index(true_name), model.class_index(predicted_name)
    maps = model.explain(image, [Target(predicted), Target(true), Target(true, predicted)], layer=layer)
    shown = [gradcam.display(image)] + [gradcam.display(overlay(image, m.values, signed=m.signed)) for m in maps]
    return shown, maps[2].score, [m.empty for m in maps[:2]]


def section(run, dataset_root: Path, mistakes: list[tuple[str, str, str]], key: str) -> None:
    """Pick one of `mistakes` ((path relative to the dataset, true, predicted)) and see its heatmaps."""
    if not mistakes:
        return
    if not run.has_model:
        st.caption("Heatmaps need the run's saved model, which this run does not have.")
        return
    by_path = {path: (path, true_name, predicted_name) for path, true_name, predicted_name in mistakes}
    if st.session_state.get(key) not in by_path:  # another cell, page or run: nothing of the last pick stays
        st.session_state[key] = None
    with st.expander("Where did the model look? (heatmaps)", icon=":material/visibility:", expanded=True):
        pairs = {(true_name, predicted_name) for _, true_name, predicted_name in mistakes}
        (true_name, predicted_name), *others = sorted(pairs)
        picked = st.selectbox(
            "Misclassified photo"
            + ("" if others else f" ({plain.md(true_name)} predicted as {plain.md(predicted_name)})"),
            list(by_path),
            index=None,
            format_func=lambda p: f"{Path(p).name}: {by_path[p][1]} → {by_path[p][2]}",
            key=key,
            placeholder="Pick a photo to see its heatmaps",
        )
        if picked is None:
            st.caption("Grad-CAM shows which parts of the photo pushed the model towards a class.")
            return
        path, true_name, predicted_name = by_path[picked]
        full = dataset_root / path
        refused = dataset_choice.outside_reason(full)
        if refused:
            st.warning(f"{plain.md(Path(path).name)} is not shown: {refused}.", icon=":material/folder_off:")
            return
        teaching.explain("gradcam", [true_name, predicted_name])
        model_key = run_models.key_of(run)
        layer_key = f"{key}_layer"
        if st.session_state.get(f"{key}_layer_photo") != picked:  # another photo: start on its own clearest map
            st.session_state[f"{key}_layer_photo"] = picked
            st.session_state.pop(layer_key, None)

        def blank_maps(layer: str) -> int:  # cached per layer: the picker's look costs nothing more
            return sum(overlays(model_key, os.fspath(full), true_name, predicted_name, layer)[2])

        try:
            layer = gradcam.layer_picker(run_models.explainer(model_key), key=layer_key, blank_maps=blank_maps)
            images, score, empty = overlays(model_key, os.fspath(full), true_name, predicted_name, layer)
        except ImageError as e:
            st.warning(f"{plain.md(Path(path).name)} could not be read: {plain.md(e)}", icon=":material/broken_image:")
            return
        except (OSError, KeyError, ValueError) as e:
            st.warning(f"The heatmaps could not be computed: {plain.md(e)}", icon=":material/warning:")
            return
        cols = st.columns(4)
        nothing = " (no area raised it)"
        true_md, predicted_md = plain.md(true_name), plain.md(predicted_name)  # captions are Markdown
        captions = [
            "the photo",
            f"predicted: {predicted_md}" + (nothing if empty[0] else ""),
            f"true: {true_md}" + (nothing if empty[1] else ""),
            f"{true_md} rather than {predicted_md}",
        ]
        for col, image, caption in zip(cols, images, captions, strict=True):
            col.image(image, caption=caption, width="stretch")
        st.caption(
            f"The last map is the contrast: the {true_md} logit minus the {predicted_md} logit "
            f"({score:+.2f} on this photo). **Red** areas argued for {true_md}, **blue** areas for "
            f"{predicted_md}: the blue parts are what tipped the model into its mistake. The two maps before it "
            "show where the model found evidence for each class on its own (bright: counted most, dark: least, each "
            "map on its own scale; a photo left as it is: no area raised that class's score)."
        )
