"""Show people's strings (class names, file names, dataset descriptions, user names) as the text they are.

Streamlit renders Markdown almost everywhere: a class named `**big**` came out bold, `:red[x]` red,
`$x$` as KaTeX, a link live, and a dataset description's image was fetched from an outside address.
`md(text)` escapes a string for use inside Markdown (and keeps a web or e-mail address in it from becoming a live
link: escaping alone does not, since the page links `http://...`, `www....` and `a@b.c` in plain text), and
`code(text)` makes it a code span (a path in monospace);
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


# What the page's Markdown links in plain text (GitHub's autolink literals, found after escapes are read): a word
# joiner (U+2060, shown as nothing) after the scheme, the "www" or the "@" keeps the text as it reads, not a link.
_AUTOLINK = re.compile(r"(?i)\b(https?(?=:)|mailto(?=:)|xmpp(?=:)|www(?=\.))|@")
WORD_JOINER = "\u2060"


def _code_of(char: str) -> str:
    """A character as its escape: \\u202e, or \\U000e0061 beyond the first 65,536 (a tag character)."""
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def visible(text: object) -> str:
    """`text` with invisible direction and zero-width characters written as their codes (\\u202e, \\U000e0061)."""
    return _INVISIBLE.sub(lambda m: _code_of(m.group()), str(text))


def md(text: object) -> str:
    """`text` escaped to read literally inside Markdown (its invisible characters made visible, an address in it
    never a live link)."""
    unlinked = _AUTOLINK.sub(lambda m: m.group() + WORD_JOINER, visible(text))
    escaped = _SPECIAL.sub(r"\\\1", unlinked)
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
