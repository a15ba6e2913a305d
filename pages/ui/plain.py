"""Show people's strings (class names, file names, dataset descriptions, user names) as the text they are.

Streamlit renders Markdown almost everywhere: a class named `**big**` came out bold, `:red[x]` red,
`$x$` as KaTeX, a link live, and a dataset description's image was fetched from an outside address.
`md(text)` escapes a string for use inside Markdown and `code(text)` makes it a code span (a path in monospace);
`chart(text)` escapes it for a Plotly label or hover text, which read a little HTML (<b>, <a href>, <br>). All three
show the invisible direction marks a file name can hide behind (U+202E turns "gpj.exe" into "exe.jpg") as their
codes, which `visible(text)` does alone.
"""

from __future__ import annotations

import html
import re

# CommonMark lets any ASCII punctuation be escaped with a backslash; these start Markdown, Streamlit's
# directives (:red[...], :material/...:), KaTeX ($), HTML (<, &) or autolinks.
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:&=\"'])")
# Direction overrides and isolates, zero-width characters, the byte-order mark; and the blanks a name could hide
# behind ("alice" + U+2800 or U+3164 read as a second alice): fillers, the soft hyphen, selectors, joiners, tags.
_INVISIBLE = re.compile(
    "[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff"
    "\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2060-\u2064\u2800\u3164\ufe00-\ufe0f\uffa0"
    "\U000e0000-\U000e01ef]"
)


def visible(text: object) -> str:
    """`text` with invisible direction and zero-width characters written as their codes (\\u202e)."""
    return _INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", str(text))


def md(text: object) -> str:
    """`text` escaped to read literally inside Markdown (and its invisible characters made visible)."""
    escaped = _SPECIAL.sub(r"\\\1", visible(text))
    return escaped.replace("\n", " ")


def code(text: object) -> str:
    """`text` as a Markdown code span (monospace, read literally): fenced by more backticks than it holds in a row,
    so a backtick in a file name cannot end the span early; its invisible characters made visible."""
    shown = visible(text).replace("\n", " ")
    longest = max((len(run) for run in re.findall("`+", shown)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if shown.startswith("`") or shown.endswith("`") else ""
    return f"{fence}{pad}{shown}{pad}{fence}"


def chart(text: object) -> str:
    """`text` for a Plotly label, legend entry or hover text: Plotly reads tags (<a href>, <b>, <br>) in them; here
    `<`, `>` and `&` are entities, which Plotly shows as the characters they are."""
    return html.escape(visible(text), quote=False)
