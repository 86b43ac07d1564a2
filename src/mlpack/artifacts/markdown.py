"""Text from configs and data, made safe for Markdown (the wheel's README, which PyPI renders).

As text, every ASCII punctuation character is backslash-escaped: CommonMark then shows it
literally, so `<script>` is text and never a tag, and `*`, `_`, `[` start nothing. As code, the
span's fence is longer than any run of backticks inside. Line breaks become spaces: a value is one
line of the document. `|` is left to `table`: in GFM tables it splits cells before code spans are
read, so every cell escapes it there, once.
"""

from __future__ import annotations

import re

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{}~])")  # ASCII punctuation but '|'


def text(value: object) -> str:
    return _PUNCTUATION.sub(r"\\\1", " ".join(str(value).split()))


def code(value: object) -> str:
    shown = " ".join(str(value).split())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", shown)), default=0) + 1)
    pad = " " if shown.startswith("`") or shown.endswith("`") else ""
    return f"{fence}{pad}{shown}{pad}{fence}"
