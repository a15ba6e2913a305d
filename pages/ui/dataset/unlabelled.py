"""A dataset's unlabelled photos on a page: how many wait, a look at them, and adding more (files or a zip)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.data.unlabelled import UNLABELLED_DIR, Unlabelled
from core.importers.common import ImportRejected
from core.importers.unlabelled import add_files, add_zip
from pages.ui import common, photo_gallery, plain
from pages.ui.navigation import page_file

SHOWN = 48  # thumbnails of waiting photos on the Dataset page


def _add_uploaded(dataset_root: str | Path, files: list, key: str) -> None:
    """Button callback: add the uploaded files before the page is drawn again, so every count and gallery drawn
    after it (above the uploader too) already has them; the uploader is emptied so one click adds them once."""
    added, skipped, error = [], [], None
    try:
        images = [(f.name, f) for f in files if not f.name.lower().endswith(".zip")]
        result = add_files(dataset_root, images)
        added += result.added
        skipped += result.skipped
        for archive in (f for f in files if f.name.lower().endswith(".zip")):
            result = add_zip(dataset_root, archive)
            added += result.added
            skipped += result.skipped
    except (ImportRejected, OSError) as e:
        error = str(e)
    st.session_state[f"{key}_outcome"] = {"added": len(added), "skipped": skipped, "error": error}
    st.session_state[f"{key}_round"] = st.session_state.get(f"{key}_round", 0) + 1  # a fresh, empty uploader


def upload_section(dataset_root: str | Path, expanded: bool, key: str) -> None:
    """Add photos without a label: image files or a zip, into the dataset's unlabelled/ folder."""
    outcome = st.session_state.pop(f"{key}_outcome", None)
    with st.expander(
        "Add unlabelled photos", icon=":material/add_photo_alternate:", expanded=expanded or bool(outcome)
    ):
        st.caption(
            f"They go into {plain.code(common.shown_path(Path(dataset_root) / UNLABELLED_DIR))}, beside the class "
            "folders: never trained on until you give them a class. (Copying photos into that folder works too.)"
        )
        if outcome:
            if outcome["error"]:
                st.error(f"Nothing more was added: {plain.md(outcome['error'])}", icon=":material/error:")
            if outcome["added"]:
                st.success(f"Added {outcome['added']} photo(s).", icon=":material/check:")
            for item in outcome["skipped"][:20]:
                left_out = f"Left out {plain.code(item['path'])}: {plain.md(item['reason'])}"
                st.warning(left_out, icon=":material/warning:")
        files = st.file_uploader(
            "Photos, or a zip of photos",
            type=["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "zip"],
            accept_multiple_files=True,
            key=f"{key}_{st.session_state.get(f'{key}_round', 0)}",
        )
        if files:
            st.button(
                "Add them", key=f"{key}_add", icon=":material/upload:", on_click=_add_uploaded,
                args=(dataset_root, files, key),
            )  # fmt: skip


def unlabelled_tab(dataset_root: str | Path) -> None:
    """The Dataset page's view of the photos waiting for a label: apart from the classes, never trained on."""
    waiting = Unlabelled.load(common.data_root(), dataset_root)
    if not waiting.photos:
        st.markdown(
            "No unlabelled photos. Photos without a label go in a folder named **unlabelled** inside the dataset's "
            "folder, beside the class folders (or add them below). Flora keeps them apart, never trains on them, "
            "and ranks them on the Explore page (**Label next**) by how much labelling each would teach a run."
        )
    else:
        st.markdown(
            f"**{len(waiting.pending)}** photo(s) waiting for a label · {len(waiting.labelled)} labelled (copied "
            f"into their class folders; the originals stay in unlabelled/) · {len(waiting.set_aside)} set aside as "
            "none of the classes. They are not part of the classes above, the split or any run until labelled."
        )
        if st.button("Rank and label them (Explore, Label next)", icon=":material/arrow_forward:", key="to_label_next"):
            st.session_state["explore_tab"] = "Label next"  # the tab opens on arrival
            st.switch_page(page_file("explore"))
        photo_gallery.gallery(
            [(Path(waiting.dataset_root) / p, Path(p).name) for p in waiting.pending[:SHOWN]],
            size=120,
            key="dataset_unlabelled_gallery",
        )
        if len(waiting.pending) > SHOWN:
            st.caption(f"The first {SHOWN} of {len(waiting.pending)}.")
    upload_section(dataset_root, expanded=not waiting.photos, key="dataset_unlabelled_upload")
