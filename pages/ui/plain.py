"""Show people's strings (class names, file names, dataset descriptions, user names) as the text they are.

Streamlit renders Markdown almost everywhere: a class named `**big**` came out bold, `:red[x]` red,
`$x$` as KaTeX, a link live, and a dataset description's image was fetched from an outside address.
`md(text)` escapes a string for use inside Markdown; `visible(text)` also shows the invisible
direction marks a file name can hide behind (U+202E turns "gpj.exe" into "exe.jpg") as their codes.
"""

from __future__ import annotations

import re

# CommonMark lets any ASCII punctuation be escaped with a backslash; these start Markdown, Streamlit's
# directives (:red[...], :material/...:), KaTeX ($), HTML (<, &) or autolinks.
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:&=\"'])")
# Direction overrides and isolates, zero-width characters, the byte-order mark.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def visible(text: object) -> str:
    """`text` with invisible direction and zero-width characters written as their codes (\\u202e)."""
    return _INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", str(text))


def md(text: object) -> str:
    """`text` escaped to read literally inside Markdown (and its invisible characters made visible)."""
    escaped = _SPECIAL.sub(r"\\\1", visible(text))
    return escaped.replace("\n", " ")
