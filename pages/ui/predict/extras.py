"""The Predict page's serving additions, kept apart from its layout: the logged classification
with its out-of-distribution flag, "wrong? it is ...", many photos or a zip as a table with a CSV
download, and retraining with the feedback.
"""

from __future__ import annotations

import streamlit as st

from core.data.imaging import ImageError
from core.feedback import add_feedback
from core.serving.holding_back import hold_back
from core.serving.log import PredictionLog
from pages.ui import auth, common, plain, run_models, teaching
from pages.ui.serving import sections as serving

MANY = 4  # from this many photos on, a table replaces the per-photo cards


def load_model(key: run_models.ModelKey):
    """The run's served model (calibrated, with its out-of-distribution check), loaded once per run and model file."""
    return run_models.served_model(key, str(common.data_root()))


@st.cache_data(show_spinner=False, max_entries=512)
def classify(key: run_models.ModelKey, upload_id: str, name: str, data: bytes, stamp: tuple = ()):
    """Every class's probability for one upload, once, logged once (source "ui"); the BatchItem.

    `upload_id` is the upload's own id, so uploading the same photo again classifies (and times) it again;
    `stamp` (ServedModel.follow_run) changes when the run's test-time augmentation or sets do.
    """
    # heavy: scikit-learn and scipy, loaded when a batch is predicted
    from core.serving.batch_predict import predict_many

    model = load_model(key)
    log = PredictionLog.of_store(common.models_root())
    return predict_many(model, [(name, data)], top_k=len(model.classes), log=log, source="ui")[0]


def ood_notice(item, model) -> None:
    """The 'none of these' flag with its reason, and how often the check wrongly flags the run's own photos."""
    answer = item.answer
    if answer is not None and answer.ood_flag:
        why = f" ({plain.md(answer.ood_why)})" if answer.ood_why else ""
        rates = f" ({plain.md(model.reference.detector.flag_words())})" if model.reference is not None else ""
        st.warning(
            f"This photo **does not look like any class the model knows**{why}: its answer and its set deserve "
            f"little trust. A flag is not proof{rates}.",
            icon=":material/help:",
        )
        teaching.explain("ood")


def ood_check_caption(model) -> None:
    """How far 'looks like no class it knows' can be trusted for this run, from what it was picked on."""
    if model.reference is None:
        if model.reference_note:
            st.caption(f"No 'looks like no class it knows' check for this run: {plain.md(model.reference_note)}")
        return
    detector = model.reference.detector
    names = [plain.md(c) for c in model.classes]
    known = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
    text = (
        "**'Looks like no class it knows'**: Flora flags a photo unlike everything the model was taught (a photo "
        f"of none of {known}), since a model always answers with one of its classes. {detector.summary()}"
    )
    if detector.weak:
        st.info(text, icon=":material/help:")
    else:
        st.caption(text)


def feedback_form(run, item, data: bytes, key: str) -> None:
    """'Wrong? It is …': the right label goes into the log and the photo into the feedback folder."""
    classes = [c for c in run.classes if c != item.answer.label]
    with st.popover("Wrong? It is …", icon=":material/edit:"):
        right = st.selectbox("The right class", classes, key=f"predict_feedback_label_{key}")
        if st.button("Save the correction", key=f"predict_feedback_save_{key}", icon=":material/save:"):
            try:
                photo = add_feedback(
                    common.data_root(),
                    run.dataset_path,
                    run.classes,
                    right,
                    data,
                    item.name,
                    run.train_config.val_fraction,
                    by=auth.current_user().id,
                    may_replace_any=auth.current_user().admin and auth.shared(),
                )
            except (ImageError, ValueError, OSError) as e:  # NotYourFeedback too: someone else's label
                st.error(plain.md(e))
                return
            log = PredictionLog.of_store(common.models_root())
            if item.log_id is not None:
                log.add_feedback(right, prediction_id=item.log_id)
            else:
                log.add_feedback(right, image_sha256=photo.sha256)
            st.success(f"Saved as **{plain.md(right)}** (kept for the {photo.split} split of a retrain).")


def many_photos_table(
    run,
    key: run_models.ModelKey,
    files: list[tuple[str, str, bytes]],
    top_k: int,
    set_level: float | None = None,
    max_error: float | None = None,
) -> list:
    """A table of every photo's top-k, prediction set (at `set_level`), whether it is answered (at `max_error`, and
    under the run's class thresholds) and OOD flag (unreadable files get their reason) and a CSV download."""
    # heavy: scikit-learn and scipy, loaded when a batch is predicted
    from core.serving.batch_predict import csv_text, table_rows
    from core.serving.holding_back import held_back_counts

    progress = st.progress(0.0, text="Classifying…")
    items = []
    stamp = load_model(key).follow_run()
    for i, (upload_id, name, data) in enumerate(files):
        items.append(classify(key, upload_id, name, data, stamp))
        progress.progress((i + 1) / len(files), text=f"Classifying {i + 1} / {len(files)}")
    progress.empty()
    model = load_model(key)
    for item in items:  # the cached answers carry every class; the table shows the top k
        if item.answer is not None:
            item.answer.top = item.answer.top[:top_k]
            item.answer.prediction_set = model.set_of(item.answer, set_level) if set_level else None
            item.answer.set_level = set_level if item.answer.prediction_set is not None else None
            hold_back([item.answer], model.selective, max_error, model.class_thresholds)
    rows = table_rows(items, top_k, run.train_config.image_size)
    flagged = sum(1 for item in items if item.answer is not None and item.answer.ood_flag)
    bad = sum(1 for item in items if item.error)
    small = sum(1 for row in rows if row.get("warning"))
    unlike = f"{flagged} that look like no class the model knows"
    if flagged:
        unlike += " (their answers and sets are not to be trusted"
        unlike += f"; {plain.md(model.reference.detector.flag_words())})" if model.reference is not None else ")"
    answers = [item.answer for item in items if item.answer is not None]
    held, alone = held_back_counts(answers, model.selective, max_error, model.class_thresholds)
    held_words = f", {held} held back"
    if alone:
        held_words += f" ({alone} by your saved per-class thresholds alone" + (
            ", which the guarantee does not cover)" if max_error is not None else ")"
        )
    st.markdown(
        f"**{len(items)} photos**: {bad} unreadable, {unlike}{held_words}"
        + (f", {small} far smaller than the model's input." if small else ".")
    )
    first = ["path", "answered", "held_back_because", "out_of_distribution"]  # walk 52: they were off to the right
    present = list(dict.fromkeys(key for row in rows for key in row))
    st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        column_order=[k for k in first if k in present] + [k for k in present if k not in first],
        column_config={  # words a person reads (the CSV keeps the column names), long reasons wrapped
            "path": st.column_config.TextColumn("photo", width="medium"),
            **{
                f"label_{i + 1}": st.column_config.TextColumn("best guess" if i == 0 else f"guess {i + 1}")
                for i in range(top_k)
            },
            **{
                f"probability_{i + 1}": st.column_config.NumberColumn(
                    "how sure" if i == 0 else f"guess {i + 1}, how sure", format="percent"
                )
                for i in range(top_k)
            },
            "prediction_set": st.column_config.TextColumn(
                f"could be (at {set_level:.0%})" if set_level else "could be",
                help="The prediction set: the classes the right one is among, as often as the level says.",
            ),
            "set_size": st.column_config.NumberColumn("classes in the set"),
            "set_level": None,
            "set_trusted": st.column_config.CheckboxColumn(
                "set to be trusted?",
                help="Unchecked: the photo looks like none of the classes, so the set's promise (about photos like the "
                "test photos) does not cover it. Checked means only that it was not flagged: the check lets some "
                "photos of other kinds through.",
            ),
            "answered": st.column_config.CheckboxColumn(
                "answered?", help="Unchecked: held back, not sure enough (see why in the next column)."
            ),
            "held_back_because": st.column_config.TextColumn("held back because", width="large"),
            "out_of_distribution": st.column_config.CheckboxColumn(
                "unlike the training photos?", help="Looks like no class the model knows: its answer means little."
            ),
            "ood_score": None,
            "error": st.column_config.TextColumn("error", width="large"),
            "warning": st.column_config.TextColumn("warning", width="large"),
        },
    )
    csv_button(run, csv_text(rows))
    return items


def csv_button(run, text: str) -> None:
    """The many-photo table as a CSV download (single- and multi-label runs alike)."""
    st.download_button(
        "Download as CSV",
        text,
        file_name=f"predictions-{run.run_id}.csv",
        mime="text/csv",
        icon=":material/download:",
        key="predict_csv",
    )


def expand_uploads(uploads) -> list[tuple[str, str, bytes]]:
    """(upload id, name, bytes) of each uploaded file, a zip opened into its files (refused if too large to open
    safely)."""
    # heavy: scikit-learn and scipy, loaded when a batch is predicted
    from core.serving.batch_predict import zip_members

    files = []
    for upload in uploads or []:
        data = upload.getvalue()
        if upload.name.lower().endswith(".zip"):
            try:
                files += [
                    (f"{upload.file_id}/{name}", f"{upload.name}/{name}", content)
                    for name, content in zip_members(data)
                ]
            except ValueError as e:
                st.error(f"**{plain.md(upload.name)}**: {plain.md(e)}")
        else:
            files.append((upload.file_id, upload.name, data))
    return files


def retrain_panel(run) -> None:
    with st.expander("Retrain with the corrections", icon=":material/restart_alt:"):
        serving.retrain_section(key="predict", run=run)
