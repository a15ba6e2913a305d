"""Dataset: choose or add a dataset; its classes, photos, image sizes, split and health."""

from __future__ import annotations

from pathlib import PurePosixPath

import pandas as pd
import plotly.express as px
import streamlit as st

from core.data import roots as data_roots
from core.data.datasets import ADDED_BY, LAYOUT_SPLITS, SPLIT_NAMES, DatasetError
from core.data.imaging import GRAYSCALE_MODES
from core.data.split_rule import next_split
from core.health import image_table
from core.settings.config import IMBALANCE_RATIO
from core.train.jobs import dataset_corrections
from pages.ui import auth, common, dataset_choice, marks, photo_gallery, plain, teaching
from pages.ui.dataset import add as dataset_add
from pages.ui.dataset import caches as dataset_caches
from pages.ui.dataset import health as dataset_health
from pages.ui.dataset import multilabel as dataset_multilabel
from pages.ui.dataset.unlabelled import unlabelled_tab as unlabelled_view
from pages.ui.train import form as train_form

PAGE_SIZE = 24
MANY_CLASSES = 60  # beyond this many classes, the counts chart is sorted by size with no names under it
SOURCES = ["In the data folder", "A folder on this machine", "Add a dataset"]

st.title("Dataset")


@st.cache_data(show_spinner="Reading image headers…", max_entries=8)
def sizes_table(root: str, fingerprint: str) -> pd.DataFrame:
    """Width, height, mode, readability of every file (header reads; cached on disk too)."""
    return image_table(dataset_choice.scan(root), cache_root=dataset_choice.cache_root())


def interleaved(entries: list) -> list:
    """Entries taken from each class in turn, so every page of the sample grid shows every class."""
    by_class: dict[int, list] = {}
    for entry in entries:
        by_class.setdefault(entry.label, []).append(entry)
    queues = list(by_class.values())
    mixed = []
    for row in range(max((len(q) for q in queues), default=0)):
        mixed += [q[row] for q in queues if row < len(q)]
    return mixed


def _use_recent_folder() -> None:
    if st.session_state.get("dataset_recent"):
        st.session_state["dataset_folder"] = st.session_state["dataset_recent"]
        st.session_state["dataset_recent"] = None


dropped = dataset_choice.drop_folders_outside_roots()
if dropped:
    st.warning(
        f"Forgot {len(dropped)} remembered folder(s) outside the folders Flora may read datasets from: "
        + ", ".join(plain.md(common.shown_path(folder)) for folder in dropped),
        icon=":material/folder_off:",
    )

if "dataset_source" not in st.session_state:
    # Open where the person left off: a folder outside data/ picked last (this session or before)
    # comes back in the folder box, so a reload or a new tab shows the same dataset.
    last = dataset_choice.current_dataset()
    if dataset_choice.outside_data_root(last):
        st.session_state["dataset_source"] = SOURCES[1]
        st.session_state.setdefault("dataset_folder", last)
    else:
        st.session_state["dataset_source"] = SOURCES[0]
source = st.segmented_control("Dataset from", SOURCES, key="dataset_source", required=True)

chosen: str | None = None
if source == SOURCES[2]:
    dataset_add.render()
    st.stop()
elif source == SOURCES[0]:
    found = dataset_choice.datasets(include_folders=False)
    hidden = dataset_choice.linked_out() if auth.current_user().admin and common.shared() else []
    if hidden:  # an admin's note: a dataset linked in from outside the roots is in no list (walk of issue 38, 13)
        st.warning(
            f"Not offered to anyone: {', '.join(plain.code(name) for name in hidden)} in the data folder "
            f"{'is a link' if len(hidden) == 1 else 'are links'} to a folder outside the folders Flora may read "
            f"datasets from. {data_roots.LINK_RULE} Add the target's folder to {data_roots.ROOTS_ENV} (and restart), "
            "or copy the dataset into the data folder.",
            icon=":material/link_off:",
        )
    dataset_choice.show_hidden_for_links(include_folders=False)
    if not found:
        st.info(
            f"No dataset in {plain.code(common.shown_path(common.data_root()))} yet. Choose **Add a dataset** above "
            "(a download, a zip, or the offline demo set), or use a folder on this machine.",
            icon=":material/info:",
        )
    else:
        options = {d["path"]: dataset_choice.dataset_label(d) for d in found}
        paths = list(options)
        current = dataset_choice.current_dataset()
        if st.session_state.get("dataset_pick") not in paths:
            st.session_state["dataset_pick"] = current if current in paths else paths[0]
        chosen = st.selectbox("Dataset", paths, format_func=options.get, key="dataset_pick")
else:
    typed = st.text_input(
        "Folder",
        key="dataset_folder",
        placeholder="/path/to/photos (class folders inside, or train/val/test)",
        help="A folder of class folders (DATA/<class>/<image>), or one already split into train/val/test.",
    ).strip()
    runs_elsewhere = len(dataset_choice.roots()) - len(dataset_choice.base_roots())
    st.caption(
        "Folders Flora may read datasets from: "
        + ", ".join(plain.code(common.shown_path(root)) for root in dataset_choice.base_roots())
        + (f", and the {runs_elsewhere} other folder(s) its runs were trained on" if runs_elsewhere else "")
        + f" (and below). {data_roots.LINK_RULE}"
    )
    recent = [folder for folder in dataset_choice.remembered_folders() if folder != typed]
    if recent:
        st.pills(
            "Used before",
            recent,
            format_func=plain.md,  # a pill's text is Markdown: a folder's name is shown as it is
            key="dataset_recent",
            on_change=_use_recent_folder,
            help="Folders you picked here before (remembered in the data folder's .flora/shared.sqlite).",
        )
    if typed:
        folder = dataset_choice.typed_folder(typed)  # a short path from the data folder, as the hint names it
        if not data_roots.inside(folder, dataset_choice.roots()) or folder.is_dir():
            chosen = str(folder)  # outside the roots, the scan's refusal: the same whether the folder exists or not
        else:
            st.error(f"No folder at {plain.md(typed)}.", icon=":material/folder_off:")

index = dataset_choice.try_scan(chosen, typed=typed if source == SOURCES[1] else None)
if index is None:
    st.stop()
dataset_choice.set_current_dataset(index.root)

if index.meta.get("synthetic"):
    st.warning(
        "This is a **synthetic** demo set, drawn by a program so you can try Flora without internet. "
        "It is not real photos; accuracy on it says nothing about flowers.",
        icon=":material/science:",
    )
description = index.meta.get("description")
if description:
    st.caption(plain.md(description))  # the dataset's own words: text, never Markdown (no outside images)
if common.shared() and index.meta.get(ADDED_BY):
    st.caption(
        f":material/person: Added by {plain.md(index.meta[ADDED_BY])}. Datasets are never replaced or deleted from "
        "the app: anyone may train on it, nobody can change it here."
    )

counts = index.class_counts()
sizes = pd.Series(counts)
if index.multilabel:  # several labels a photo: its own figures (pages/ui/dataset/multilabel.py)
    label_stats = dataset_multilabel.headline(index)
else:
    cols = st.columns(4)
    cols[0].metric("Classes", len(index.classes))
    cols[1].metric("Images", len(index.entries))
    cols[2].metric("Largest / smallest class", f"{sizes.max()} / {sizes.min()}")
    cols[3].metric("Split", SPLIT_NAMES["dataset" if index.has_split else "random"], help=LAYOUT_SPLITS[index.layout])
if index.empty_classes:
    st.warning(
        f"Empty class folder(s) left out: {', '.join(plain.md(c) for c in index.empty_classes)}",
        icon=":material/folder_off:",
    )
if index.ignored_files:
    with st.expander(f"{len(index.ignored_files)} file(s) ignored: not images by their name"):
        st.write(index.ignored_files[:200])

classes_tab, samples_tab, sizes_tab, split_tab, health_tab, unlabelled_tab, disk_tab = st.tabs(
    [
        "Labels" if index.multilabel else "Classes",
        "Samples",
        "Image sizes",
        "Split",
        "Health check",
        "Unlabelled",
        "Disk",
    ],
    key="dataset_tab",
    on_change="rerun",
)

if index.multilabel:
    with classes_tab:
        dataset_multilabel.labels_tab(index, label_stats)
else:
    with classes_tab:
        ratio = float(sizes.max() / max(sizes.min(), 1))
        frame = pd.DataFrame({"class": sizes.index, "images": sizes.values})
        frame["note"] = ["small" if n < sizes.max() / IMBALANCE_RATIO else "" for n in frame["images"]]
        many = len(frame) > MANY_CLASSES
        if many:  # names under 1,000 bars are unreadable: the bars sorted by size, the names in a table to search
            frame = frame.sort_values(["images", "class"], ascending=[False, True], kind="stable")
        bars = frame.assign(**{"class": frame["class"].map(plain.chart)})  # names as text: Plotly reads tags in them
        figure = px.bar(
            bars,
            x="class",
            y="images",
            color="note",
            color_discrete_map={"": "#b8336a", "small": "#e8a33d"},
            height=380 if len(frame) <= 30 else 520,
        )
        figure.update_traces(hovertemplate="%{x}: %{y} images<extra></extra>")  # not plotly's "note=" line
        figure.update_layout(
            showlegend=ratio > IMBALANCE_RATIO, margin={"l": 10, "r": 10, "t": 10, "b": 10}, legend_title_text=""
        )
        if many:
            figure.update_xaxes(
                showticklabels=False,
                title_text=f"{len(frame):,} classes, largest first",
                categoryorder="array",
                categoryarray=list(bars["class"]),
            )
            figure.update_traces(marker_line_width=0)
        st.plotly_chart(figure, key="dataset_counts", config={"displayModeBar": False})
        if many:
            st.caption(
                f"{len(frame):,} classes, largest first: hover a bar for its class. The table lists them all (click a "
                "column to sort; the search in its toolbar finds a class)."
            )
            st.dataframe(
                frame[["class", "images", "note"]],
                hide_index=True,
                key="dataset_class_table",
                height=300,
                width="stretch",
            )
        if ratio > IMBALANCE_RATIO:
            st.warning(
                f"Imbalanced: the largest class has {ratio:.1f}x the images of the smallest "
                f"({plain.md(sizes.idxmax())}: {sizes.max()}, {plain.md(sizes.idxmin())}: {sizes.min()}). Training "
                'turns on class weights ("auto"), so rare classes are not ignored; the per-class metrics will show how '
                "they fare.",
                icon=":material/balance:",
            )
        else:
            st.caption(f"Balanced enough: largest / smallest = {ratio:.2f}.")

if samples_tab.open and index.multilabel:
    with samples_tab:
        dataset_multilabel.samples_tab(index, sizes_table(str(index.root), index.fingerprint).set_index("path"))
elif samples_tab.open:
    with samples_tab:
        filters = st.columns([3, 1])
        picked = filters[0].multiselect(
            "Classes", index.classes, default=index.classes[: min(5, len(index.classes))], key="dataset_sample_classes"
        )
        size = filters[1].select_slider("Thumbnail", [96, 128, 160, 200], value=128, key="dataset_thumb")
        entries = interleaved([e for e in index.entries if index.classes[e.label] in set(picked)])
        marked = marks.of_dataset(index.root)
        only_marked = marks.sample_filter(marked, [e.path for e in entries], "dataset_only_marked")
        if only_marked:
            entries = [e for e in entries if e.path in marked]
        if not entries:
            if not picked or not only_marked:  # else the filter said why the grid is empty
                st.caption("Pick at least one class.")
        else:
            table = sizes_table(str(index.root), index.fingerprint).set_index("path")
            pages = max(1, -(-len(entries) // PAGE_SIZE))
            page = st.pagination(pages, key="dataset_page") if pages > 1 else 1
            chunk = entries[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
            said = "size, file name and your marks" if marked else "size and file name"
            photos = f"{len(entries)} photo" + ("" if len(entries) == 1 else "s")
            st.caption(f"{photos} · page {page} of {pages} · captions give each photo's {said}")
            items = []
            for entry in chunk:
                row = table.loc[entry.path] if entry.path in table.index else None
                dims = f"{row.width}×{row.height}" if row is not None and row.width else "?"
                caption = f"{index.classes[entry.label]} · {dims}{marks.caption_of(marked, entry.path)}"
                caption += f"\n{PurePosixPath(entry.path).name}"
                items.append((index.absolute(entry), caption))
            photo_gallery.gallery(items, size=size)

if sizes_tab.open:
    with sizes_tab:
        table = sizes_table(str(index.root), index.fingerprint)
        readable = table[table["readable"]]
        if readable.empty:
            st.error("No image in this dataset could be read.")
        else:
            shorter = readable[["width", "height"]].min(axis=1)
            aspect = readable["width"] / readable["height"]
            cols = st.columns(4)
            cols[0].metric("Median size", f"{int(readable['width'].median())}×{int(readable['height'].median())}")
            cols[1].metric("Smallest side", f"{int(shorter.min())} px")
            cols[2].metric("Largest side", f"{int(readable[['width', 'height']].max(axis=1).max())} px")
            cols[3].metric(
                "Stored as grayscale",
                int(readable["mode"].isin(GRAYSCALE_MODES).sum()),
                help="Files in a grayscale mode. The health check also counts colour files whose pixels are all "
                "gray, so its figure can be higher.",
            )
            if shorter.nunique() == 1 and aspect.nunique() == 1:  # one size: a histogram would be a single bar
                width, height = int(readable["width"].iloc[0]), int(readable["height"].iloc[0])
                st.caption(f"Every readable image is {width}×{height} px.")
            else:
                left, right = st.columns(2)
                left.plotly_chart(
                    px.histogram(
                        x=shorter,
                        nbins=40,
                        labels={"x": "shorter side (px)"},
                        height=300,
                        color_discrete_sequence=["#b8336a"],
                    ).update_layout(margin={"t": 10}, yaxis_title="images"),
                    key="dataset_shorter_side",
                    config={"displayModeBar": False},
                )
                right.plotly_chart(
                    px.histogram(
                        x=aspect,
                        nbins=40,
                        labels={"x": "aspect ratio (width / height)"},
                        height=300,
                        color_discrete_sequence=["#2f6db5"],
                    ).update_layout(margin={"t": 10}, yaxis_title="images"),
                    key="dataset_aspect",
                    config={"displayModeBar": False},
                )
            st.caption(
                "Training resizes each photo's shorter side and crops its centre square, so very wide or tall "
                "photos lose their sides; photos smaller than the training size are enlarged (blurry)."
            )
        unreadable = table[~table["readable"]]
        if len(unreadable):
            st.error(
                f"{len(unreadable)} file(s) cannot be read and will be skipped by training:",
                icon=":material/broken_image:",
            )
            st.dataframe(unreadable[["path", "reason"]], hide_index=True)
        else:
            st.caption(
                "Every file's header reads as an image. (The health check also decodes each one, which finds "
                "truncated files too.)"
            )

if split_tab.open and index.multilabel:
    with split_tab:
        teaching.explain("split")
        readable = sizes_table(str(index.root), index.fingerprint).set_index("path")["readable"]
        dataset_multilabel.split_tab(
            index, [i for i, e in enumerate(index.entries) if bool(readable.get(e.path, True))]
        )
elif split_tab.open:
    with split_tab:
        teaching.explain("split")
        # Training splits the images it can read; so does this preview (header reads, cached).
        readable = sizes_table(str(index.root), index.fingerprint).set_index("path")["readable"]
        kept = [i for i, e in enumerate(index.entries) if bool(readable.get(e.path, True))]
        left_out = len(index.entries) - len(kept)
        try:  # the very rule the next run draws with: labelled-in-Flora photos to training, your marks applied
            defaults, whose = train_form.starting_config(str(index.root))
            given = [index.entries[i].split for i in kept] if index.has_split else None
            labels, split = next_split(
                index.labels[kept],
                [index.entries[i].path for i in kept],
                index,
                defaults.val_fraction,
                defaults.test_fraction,
                defaults.split_draw_seed,
                given,
                dataset_corrections(common.data_root(), index.root, auth.current_user().id),
            )
        except DatasetError as e:
            st.error(f"This dataset cannot be split for training: {plain.md(e)}", icon=":material/call_split:")
        else:
            table = pd.DataFrame(split.counts_by_class(labels, index.classes)).T
            if split.source == "dataset":
                what = "the dataset's own split"
            elif defaults.split_seed is not None:
                what = (
                    f"a stratified split drawn with split seed {defaults.split_seed} (seed {defaults.seed} starts the "
                    "network)"
                )
            else:
                what = f"a stratified split drawn with seed {defaults.seed} (no split seed set)"
            sizes_text = ", ".join(f"{n} {name}" for name, n in split.sizes().items())
            st.markdown(f"The next run with {whose} uses {what}: {sizes_text}.")
            keep = (
                ""
                if split.source == "dataset" or defaults.split_seed is not None
                else f"; a *Split seed* of {defaults.split_draw_seed} there keeps this split while another seed "
                "changes only the start"
            )
            st.caption(
                "Drawn by the rule every run draws with: photos labelled in Flora join training, the rest split as "
                "before they came, and your label corrections applied (excluded photos leave their split). Another "
                f"seed or other fractions on the Train page draw another split{keep}."
            )
            for note in split.notes:
                st.caption(plain.md(note))
            if left_out:
                st.caption(f"{left_out} file(s) that cannot be read are left out, as training leaves them out.")
            st.dataframe(table, key="dataset_split_table")

if health_tab.open:
    with health_tab:
        teaching.explain("health")
        dataset_health.render(index)

if unlabelled_tab.open:
    with unlabelled_tab:
        if index.multilabel:
            st.caption(
                "Photos waiting for a label are a single-label feature (a photo is labelled by filing it under its "
                "class): a multi-label dataset takes its labels from its table, so add photos there and import again."
            )
        else:
            unlabelled_view(index.root)
if disk_tab.open:
    with disk_tab:
        dataset_caches.render(index)
