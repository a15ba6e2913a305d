"""Predict: upload photos (or take one) and see a run's top-k classes with their probabilities."""

from __future__ import annotations

import os

import plotly.graph_objects as go
import streamlit as st

from core.imaging import IMAGE_EXTENSIONS
from core.inference import Prediction, Predictor
from pages.ui import common, teaching
from pages.ui.navigation import page_file

st.title("Predict")
st.caption("Classify your own photos with a trained run. The photo is prepared exactly as the test images were.")


@st.cache_resource(show_spinner="Loading the model (first time only)…", max_entries=3)
def load_predictor(run_dir: str, stamp: float) -> Predictor:
    run_id = os.path.basename(run_dir)
    return Predictor(common.store().get(run_id))


@st.cache_data(show_spinner=False, max_entries=256)
def predict_photo(run_dir: str, stamp: float, upload_id: str, name: str, data: bytes) -> Prediction:
    """Every class's probability for one upload, once: moving the Top k slider only re-slices it.

    `upload_id` is the upload's own id, so uploading the same photo again classifies (and times) it again.
    """
    predictor = load_predictor(run_dir, stamp)
    return predictor.predict([data], top_k=len(predictor.classes), names=[name])[0]


def top_k_chart(top: list[tuple[str, float]]):
    labels = [label for label, _ in top][::-1]
    values = [p for _, p in top][::-1]
    figure = go.Figure(
        go.Bar(
            x=values,
            y=labels,
            orientation="h",
            text=[f"{p:.1%}" for p in values],
            textposition="auto",
            marker_color=["#b8336a" if i == len(values) - 1 else "#d9a3bb" for i in range(len(values))],
        )
    )
    figure.update_layout(
        height=60 + 34 * len(top),
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis={"range": [0, 1], "tickformat": ".0%", "title": "probability"},
    )
    return figure


runs = [run for run in common.runs() if run.has_model]
if not runs:
    st.info("No trained model yet. Train a run first; its model appears here.", icon=":material/model_training:")
    st.page_link(page_file("train"), label="Go to Train", icon=":material/arrow_forward:")
    st.stop()

labels = {run.run_id: common.run_label(run) for run in runs}
if st.session_state.get("predict_run") not in labels:
    st.session_state["predict_run"] = runs[0].run_id
controls = st.columns([3, 1])
run_id = controls[0].selectbox(
    "Model (run)", list(labels), format_func=labels.get, key="predict_run", bind="query-params"
)
run = common.store().get(run_id)
top_k = controls[1].slider("Top k", 1, min(10, len(run.classes)), min(3, len(run.classes)), key="predict_top_k")
st.caption(f"Classes: {', '.join(run.classes[:20])}{' …' if len(run.classes) > 20 else ''}")

source = st.segmented_control("Photo from", ["Upload", "Camera"], default="Upload", key="predict_source", required=True)
files = []
if source == "Camera":
    shot = st.camera_input("Take a photo", key="predict_camera")
    if shot is not None:
        files = [(shot.file_id, "camera photo", shot.getvalue())]
else:
    uploads = st.file_uploader(
        "Photos",
        type=sorted(ext.lstrip(".") for ext in IMAGE_EXTENSIONS),
        accept_multiple_files=True,
        key="predict_upload",
        help="One or more photos; each is classified on its own.",
    )
    files = [(upload.file_id, upload.name, upload.getvalue()) for upload in uploads or []]

if not files:
    st.caption("Upload a photo to classify it.")
    st.stop()

model_stamp = (str(run.directory), run.model_mtime)
predictor = load_predictor(*model_stamp)
common.random_start_notice(run)
teaching.explain("prediction")
for upload_id, name, data in files:
    result = predict_photo(*model_stamp, upload_id, name, data)
    with st.container(border=True):
        if not result.ok:
            st.error(f"**{name}** could not be classified: {result.error}", icon=":material/broken_image:")
            continue
        image_col, chart_col = st.columns([1, 2], vertical_alignment="center")
        image_col.image(data, caption=name, width=240)
        with chart_col:
            label, probability = result.top[0]
            st.markdown(f"Most likely **{label}** ({probability:.1%})")
            st.plotly_chart(
                top_k_chart(result.top[:top_k]),
                key=f"predict_chart_{name}_{len(data)}",
                config={"displayModeBar": False},
            )
            st.caption(
                f"Predicted in {result.seconds * 1000:.0f} ms (decode + forward pass) on {predictor.device_label}"
            )
