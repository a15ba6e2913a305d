"""Photos on a page: thumbnails (cached by file and time, a placeholder with the reason for a file that cannot be
read) and a paged gallery with captions.
"""

from __future__ import annotations

import os

import numpy as np
import streamlit as st

from core.data.imaging import ImageError
from core.data.thumbnails import placeholder, thumbnail
from pages.ui import dataset_choice, plain


@st.cache_data(show_spinner=False, max_entries=2048)
def _thumbnail_cached(path: str, size: int, mtime: float) -> np.ndarray:
    return thumbnail(path, size)


def thumb(path: str | os.PathLike, size: int = 160) -> tuple[np.ndarray, str | None]:
    """(image, error) for a gallery: a placeholder and the reason when the file cannot be read, or when a shared
    Flora may not read it (outside the data roots: core.data.roots)."""
    refused = dataset_choice.outside_reason(path)
    if refused:
        return placeholder(size, "not shown"), refused
    try:
        mtime = os.stat(path).st_mtime
        return _thumbnail_cached(str(path), size, mtime), None
    except (ImageError, OSError) as e:
        return placeholder(size), str(e) if isinstance(e, ImageError) else "file not found"


def gallery(
    items: list[tuple[str | os.PathLike, str]], size: int = 160, columns: int | str = "auto", key: str | None = None
) -> None:
    """Thumbnails with captions in a responsive grid (in a container with `key`, when given).

    A caption is plain text (class and file names), escaped here line by line: an image's caption is Markdown."""
    if not items:
        return
    grid = (
        st.container(key=key).grid(columns, min_column_width=size + 16)
        if key
        else st.grid(columns, min_column_width=size + 16)
    )
    for path, caption in items:
        image, error = thumb(path, size)
        with grid:
            text = f"{caption} — {error}" if error else caption
            st.image(image, caption="\n".join(plain.md(line) for line in text.split("\n")), width=size)
