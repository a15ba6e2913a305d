"""The Dataset page's Disk tab: the data folder's caches with their sizes, the stale ones removable."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.data.cache_disk import human_bytes
from core.health import caches as cache_inventory
from pages.ui import auth, dataset_choice, plain


def render(index) -> None:
    root = dataset_choice.cache_root()
    known = {d["fingerprint"]: d["path"] for d in dataset_choice.datasets() if d.get("fingerprint")}
    known[index.fingerprint] = str(index.root)
    entries = cache_inventory.inventory(root, known)
    if not entries:
        st.caption(f"No caches in {plain.code(root)} yet: training decodes each dataset there once.")
        return
    stale = [e for e in entries if e.removable]
    mine = [e for e in entries if e.fingerprint == index.fingerprint]
    total = sum(e.bytes for e in entries)
    cols = st.columns(3)
    cols[0].metric("Caches on disk", human_bytes(total), help=f"Everything under {plain.code(root)}.")
    cols[1].metric("This dataset's", human_bytes(sum(e.bytes for e in mine)))
    cols[2].metric("Stale (removable)", human_bytes(sum(e.bytes for e in stale)))
    st.caption(
        "Training decodes a dataset's photos once into squares of its image size (and keeps ResNet-50's "
        "features of them), so later runs start at once. An edited dataset gets new caches; the old ones, and "
        "those of datasets no longer on disk, only take space."
    )
    frame = pd.DataFrame(
        {
            "what": [e.kind for e in entries],
            "size": [human_bytes(e.bytes) for e in entries],
            "image size": [f"{e.size} px" if e.size else "" for e in entries],
            "dataset": [e.dataset or "?" for e in entries],
            "state": [e.state for e in entries],
            "folder": [e.path.name for e in entries],
        }
    )
    st.dataframe(frame, hide_index=True, key="dataset_caches_table")
    if not stale:
        st.caption("Nothing stale: every cache belongs to a dataset as it is now.")
        return
    if auth.shared() and not auth.current_user().admin:
        st.caption(":material/lock: An admin can remove the stale caches.")
        return
    if st.button(
        f"Remove the {len(stale)} stale cache(s) ({human_bytes(sum(e.bytes for e in stale))})",
        key="dataset_remove_stale_caches",
        icon=":material/delete_sweep:",
        help="Caches of datasets gone or changed, of older formats, or left by a stopped decode. Caches in use stay.",
    ):
        freed = cache_inventory.remove(stale, root)
        st.toast(f"Removed {len(stale)} stale cache(s): {human_bytes(freed)} freed.", icon=":material/delete_sweep:")
        st.rerun()
