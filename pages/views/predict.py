"""Predict: upload photos (or take one) and see a run's top-k classes with their probabilities."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from core.data.imaging import IMAGE_EXTENSIONS
from core.results.probabilities import calibration
from core.serving.batch_predict import size_note
from pages.ui import auth, common, device_status, last_run, plain, run_models, steps, teaching
from pages.ui.navigation import page_file
from pages.ui.predict import explain as predict_explain
from pages.ui.predict import extras as predict_extras
from pages.ui.predict import labels as predict_labels
from pages.ui.predict import sets as predict_sets
from pages.ui.predict import sure as predict_sure
from pages.ui.serving import sections as serving

st.title("Predict")
st.caption("Classify your own photos with a trained run. The photo is prepared exactly as the test images were.")


def top_k_chart(top: list[tuple[str, float]], in_set: set[str] | None = None):
    """Bars of the classes shown, best at the top; with a prediction set, its classes dark and the others pale."""
    labels = [plain.chart(label) for label, _ in top][::-1]  # class names as text (Plotly reads tags in them)
    values = [p for _, p in top][::-1]
    names = [label for label, _ in top][::-1]
    if in_set is None:
        colours = ["#b8336a" if i == len(values) - 1 else "#d9a3bb" for i in range(len(values))]
    else:
        colours = ["#b8336a" if name in in_set else "#d9d9d9" for name in names]
    figure = go.Figure(
        go.Bar(
            x=values,
            y=labels,
            orientation="h",
            text=[f"{p:.1%}" for p in values],
            textposition="auto",
            marker_color=colours,
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

CLASSES_IN_A_LINE = 20
by_run = serving.aliases_by_run()
labels = {run.run_id: serving.with_aliases(run, by_run) for run in runs}
production = serving.aliases().get(serving.DEFAULT_ALIAS)
me = auth.current_user().id
mine = [run for run in runs if run.owner == me]  # shared: your own newest model first
newest = (mine or runs)[0].run_id
last_run.follow_link("predict_run", list(labels))
if st.session_state.get("predict_run") not in labels:
    # The run being studied on Evaluate or Explore; else the one production serves; else your newest (or the newest).
    usual = production if production in labels else newest
    st.session_state["predict_run"] = last_run.opening_run(
        list(labels), usual, across_reloads=production not in labels, key="predict_run"
    )
controls = st.columns([3, 1])
run_id = controls[0].selectbox(
    "Model (run)", list(labels), format_func=labels.get, key="predict_run", bind="query-params"
)
last_run.remember_run(run_id, key="predict_run")
run = common.store().get(run_id)
if production == run_id:
    st.caption(f"The run *{serving.DEFAULT_ALIAS}* points at: what the model server answers with under that name.")
elif production in labels:
    st.caption(
        f"Not the production model: *{serving.DEFAULT_ALIAS}* points at run {production}. Pick it above to see "
        "what clients of the model server get."
    )
elif run_id == newest:  # walk 51: the page moved to a newer run between two uploads without a word
    st.caption(
        f"No run is called *{serving.DEFAULT_ALIAS}* yet, so this page opens on the run you last picked on Evaluate "
        "or Explore, else on the newest finished run (yours first): it moves to a newer one when that finishes. Pick "
        f"a run above to keep it (the address keeps it too), or name one *{serving.DEFAULT_ALIAS}* on the Serve page."
    )
if run.multilabel:  # every label a photo has, each against its own threshold: no top k
    predict_labels.about_run(run)
else:
    top_k = controls[1].slider("Top k", 1, min(10, len(run.classes)), min(3, len(run.classes)), key="predict_top_k")
if run.multilabel:
    pass
elif len(run.classes) <= CLASSES_IN_A_LINE:
    st.caption(f"Classes: {', '.join(plain.md(c) for c in run.classes)}")
else:  # 1,000 species do not fit a line: all of them, searchable
    with st.expander(f"The {len(run.classes)} classes this model knows", icon=":material/list:"):
        st.dataframe({"class": run.classes}, hide_index=True, height=240, key="predict_classes")
        st.caption("Search with the table's magnifier (top right), or sort by the column.")

source = st.segmented_control("Photo from", ["Upload", "Camera"], default="Upload", key="predict_source", required=True)
files = []
if source == "Camera":
    shot = st.camera_input("Take a photo", key="predict_camera")
    if shot is not None:
        files = [(shot.file_id, "camera photo", shot.getvalue())]
else:
    uploads = st.file_uploader(
        "Photos",
        type=[*sorted(ext.lstrip(".") for ext in IMAGE_EXTENSIONS), "zip"],
        accept_multiple_files=True,
        key="predict_upload",
        help="One or more photos, or a zip of them; each is classified on its own. Many give a table with a CSV.",
    )
    files = predict_extras.expand_uploads(uploads)

if not files:
    st.caption("Upload a photo to classify it.")
    st.stop()

model_key = run_models.key_of(run)
served = predict_extras.load_model(model_key)
answer_stamp = served.follow_run(every=0.0)  # test-time augmentation measured or sets refitted since it loaded
common.random_start_notice(run)
steps.mark_predicted()  # the photos are classified below: Home ticks its Predict step
if run.multilabel:  # its labels against their thresholds: no temperature, sets, holding back or OOD check yet
    predict_labels.show(
        run,
        files,
        lambda upload_id, name, data: predict_extras.classify(model_key, upload_id, name, data, answer_stamp),
        served.thresholds,
    )
    st.stop()
predict_extras.ood_check_caption(served)
teaching.explain("prediction")
raw = predict_explain.calibration_toggle(served.temperature, calibration.load(run.directory))
predict_sets.views_caption(served)
set_level = predict_sets.level_slider(served)
max_error = predict_sure.level_control(served)


def photo_card(index: int, upload_id: str, name: str, data: bytes, item) -> None:
    """One photo: its answer, how sure (calibrated or raw), where it looked, and "Wrong?"."""
    if item.error:
        st.error(
            f"**{plain.md(name)}** could not be classified: {plain.md(item.error)}", icon=":material/broken_image:"
        )
        return
    result = item.answer
    predict_sure.apply(served, result, max_error)  # held back under the level, or under its class's threshold
    image_col, chart_col = st.columns([1, 2], vertical_alignment="center")
    image_col.image(data, caption=plain.md(name), width=240)
    top = predict_explain.shown_top(result, run.classes, raw)
    with chart_col:
        label, probability = top[0]
        held = predict_sure.notice(result)
        unsure = held or result.ood_flag  # a photo like none of the classes gets a guess, not an answer
        st.markdown(f"{'Best guess' if unsure else 'Most likely'} **{plain.md(label)}** ({probability:.1%})")
        in_set = predict_sets.set_line(served, result, set_level)
        small = size_note(item.decoded, run.train_config.image_size)
        if small:
            st.warning(f"This photo is {small}.", icon=":material/photo_size_select_small:")
        predict_extras.ood_notice(item, served)
        shown = top[:top_k] + [item for item in top[top_k:] if in_set and item[0] in in_set]
        st.plotly_chart(
            top_k_chart(shown, in_set),
            key=f"predict_chart_{index}_{len(data)}",
            config={"displayModeBar": False},
        )
        st.caption(
            f"Predicted in {item.seconds * 1000:.0f} ms (decode + forward pass) on "
            f"{device_status.device_info().label}; logged for the Monitor page"
        )
        predict_extras.feedback_form(run, item, data, key=f"{index}_{len(data)}")
    predict_explain.where_it_looked(run, data, [c for c, _ in top[:top_k]], key=f"{index}_{len(data)}")


if len(files) >= predict_extras.MANY:
    items = predict_extras.many_photos_table(run, model_key, files, top_k, set_level, max_error)
    st.caption("Each photo's answer in full (how sure, where it looked, and a correction if it is wrong):")
    for index, ((upload_id, name, data), item) in enumerate(zip(files, items, strict=True)):
        answer = f"{plain.md(item.answer.label)} ({item.answer.max_probability:.0%})" if item.answer else "unreadable"
        if item.answer is not None and item.answer.ood_flag:  # the walk: 'noise.png: tulip (58%)' read as the surest
            answer = f"looks like none of the classes (best guess {answer})"
        elif item.answer is not None and item.answer.abstained:
            answer = f"held back (best guess {answer})"
        heading = f"{plain.md(name)}: {answer}"
        with st.expander(heading):
            photo_card(
                index, upload_id, name, data, predict_extras.classify(model_key, upload_id, name, data, answer_stamp)
            )
else:
    for index, (upload_id, name, data) in enumerate(files):
        with st.container(border=True):
            photo_card(
                index, upload_id, name, data, predict_extras.classify(model_key, upload_id, name, data, answer_stamp)
            )
predict_extras.retrain_panel(run)
