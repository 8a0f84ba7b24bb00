"""Errors on pages, shown as written.

``st.error`` renders markdown, and messages carry what people typed: folder paths, file and run names.
Shown raw, ``photos/beagle/*.jpg`` loses its ``*`` and ``my_dogs_2`` turns italic, so pages show errors
through ``show_error``, which escapes everything but the messages' own `code spans`.
"""

from __future__ import annotations

import re
from typing import Any

import streamlit as st

from core.errors import TransferLabError

_CODE_SPAN = re.compile(r"(`[^`\n]+`)")
_INLINE = re.compile(r"([\\`*_\[\]<$~|:&])")  # emphasis, links, HTML, maths, tables, Streamlit's :directives:
_LINE_MARKER = re.compile(r"^([ \t]*)([#>+=-])", re.MULTILINE)  # headings, quotes, bullets, underlines
_LINE_NUMBER = re.compile(r"^([ \t]*\d+)([.)])", re.MULTILINE)  # numbered lists


def literal(text: str) -> str:
    """``text`` as markdown that shows exactly ``text``; its `code spans` still show as code."""
    parts = _CODE_SPAN.split(text)
    escaped = "".join(part if index % 2 else _INLINE.sub(r"\\\1", part) for index, part in enumerate(parts))
    return _LINE_NUMBER.sub(r"\1\\\2", _LINE_MARKER.sub(r"\1\\\2", escaped))


def show_error(error: TransferLabError | str, container: Any = st, *, icon: str | None = None) -> None:
    """``st.error`` for a typed error (or a message built from one), with its text kept literal."""
    container.error(literal(str(error)), icon=icon)
