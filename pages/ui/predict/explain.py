"""The Predict page's "how sure, and why": whether the probabilities are calibrated (with a toggle back to the
raw softmax) and "Where it looked", a Grad-CAM overlay per top class. Keras is imported only when a map is drawn.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.data.imaging import ImageError
from core.results.evaluation.explain import Target, overlay, upsample
from core.results.probabilities.calibration_words import caveats as calibration_caveats
from pages.ui import gradcam, plain, run_models, teaching

OVERLAY_SIZE = 224  # the photo is shown at least this large, whatever the run's image size


def calibration_toggle(temperature: float, cal=None) -> bool:
    """Say whether the shown probabilities are calibrated (the served model's temperature), and only where the test
    photos support it (`cal`, the run's Calibration: the same caveats as Evaluate's) that '80%' means right about
    80% of the time; True to show raw ones."""
    if temperature == 1.0:
        st.caption(
            "These probabilities are the model's raw softmax: this run has no calibration temperature yet "
            "(`python -m core calibrate RUN` fits one), so they may be over-confident."
        )
        return True
    raw = st.toggle(
        "Raw probabilities",
        key="predict_raw",
        help="The model's own softmax, before temperature scaling; usually more confident than it should be.",
    )
    if raw:
        st.caption(f"Raw softmax, **not calibrated** (the run's temperature T = {temperature:.2f} is switched off).")
    else:
        st.caption(calibrated_words(temperature, cal))
    return raw


def calibrated_words(temperature: float, cal) -> str:
    """'80%' means right about 80% of the time only where the run's calibration supports it; otherwise the same
    caveats the Evaluate page gives, with the figures."""
    said = f"**Calibrated** probabilities: the logits divided by T = {temperature:.2f}"
    if cal is None:
        return said + ", fitted on the validation photos; how well it worked is not measured yet (Evaluate)."
    fitted = f", fitted on {cal.val_images} validation photos"
    measured = (
        f"on {cal.after.images} test photos the calibration error (ECE) is {cal.after.ece:.3f}, 95 % interval "
        f"{cal.after.ece_low:.3f}-{cal.after.ece_high:.3f}, and the worst confidence bin is off by {cal.after.mce:.3f}"
    )
    caveats = calibration_caveats(cal)
    if not caveats:
        return f"{said}{fitted} so that '80%' means right about 80% of the time: {measured}."
    return (
        f"{said}{fitted}. Whether '80%' means right about 80% of the time is not established here: {measured}. "
        + " ".join(caveats)  # Flora's own sentences, as Evaluate shows them
        + " (Evaluate → Calibration & sets)"
    )


def shown_top(answer, classes: list[str], raw: bool) -> list[tuple[str, float]]:
    """Every class with its shown probability (the served model's calibrated ones, or its raw softmax), best first."""
    chosen = answer.raw_probabilities if raw and answer.raw_probabilities is not None else answer.probabilities
    probabilities = np.asarray(chosen, dtype=np.float64)
    order = np.argsort(-probabilities, kind="stable")
    return [(classes[i], float(probabilities[i])) for i in order]


@st.cache_data(show_spinner="Computing where it looked…", max_entries=64)
def overlays(
    key: run_models.ModelKey, data: bytes, labels: tuple[str, ...], layer: str
) -> list[tuple[np.ndarray, float, bool]]:
    """(overlay image, explained logit, whether no area raised it) per class in `labels` for one photo."""
    from PIL import Image

    model = run_models.explainer(key)
    image = model.load(data)
    heatmaps = model.explain(image, [Target(model.class_index(label)) for label in labels], layer=layer)
    size = max(OVERLAY_SIZE, image.shape[0])
    photo = np.asarray(Image.fromarray(image.astype(np.uint8)).resize((size, size), Image.BILINEAR))
    return [(overlay(photo, upsample(h.values, size), signed=False), h.score, h.empty) for h in heatmaps]


def where_it_looked(run, data: bytes, labels: list[str], key: str) -> None:
    """An expander that computes the Grad-CAM overlays only once it is opened."""
    section = st.expander(
        "Where it looked", icon=":material/visibility:", key=f"predict_looked_{key}", on_change="rerun"
    )
    if not section.open:
        return
    with section:
        model_key = run_models.key_of(run)
        st.caption("Grad-CAM: which areas of the photo raised each class's score.")
        teaching.explain("gradcam", list(labels))
        layer = gradcam.layer_picker(run_models.explainer(model_key), key=f"predict_looked_layer_{key}")
        try:
            images = overlays(model_key, data, tuple(labels), layer)
        except (ImageError, KeyError, ValueError) as e:
            st.error(f"No heatmap for this photo: {plain.md(e)}")
            return
        columns = st.columns(len(images))
        for column, label, (picture, score, empty) in zip(columns, labels, images, strict=True):
            note = ": no area of the photo raised it" if empty else ""
            column.image(picture, caption=f"{plain.md(label)} (logit {score:.2f}){note}", width="stretch")
        st.caption(
            "Bright areas raised the class's score most, dark ones least. Each map is on its own scale: bright "
            "means 'counted most for this class', not a fixed amount, so compare places within a map, not across."
        )
