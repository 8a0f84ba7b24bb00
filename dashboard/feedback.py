"""Feedback while core works: the one way a page shows a core function's progress.

Core functions that take a while accept ``progress(done, total, message)``; ``progress_to(bar)`` is that
callback for an ``st.progress`` bar, so every page's bar fills the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def progress_to(bar: Any) -> Callable[[int, int, str], None]:
    """A ``progress(done, total, message)`` callback that fills ``bar`` (from ``st.progress``) and shows the
    message. A total of 0 (not known yet, or nothing to do) shows an empty bar instead of dividing by zero,
    and a count that overshoots its total never overfills the bar."""

    def report(done: int, total: int, message: str) -> None:
        bar.progress(min(done / total, 1.0) if total else 0.0, text=message)

    return report
