"""The widgets that change a dataset made in the app, shared by the pages that show its images.

Data, Evaluate and Classify all show images of such a dataset and all offer the same fixes (move an image to
another class, remove it to the trash, restore it): one set of widgets keeps the three pages behaving alike.
Every change is a single call to ``core.datasets``; a change another tab made first ends in a sentence, not a
crash.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from core import datasets
from core.errors import TransferLabError
from dashboard.messages import literal, show_error

THUMB_WIDTH = 96
"""Pixels: the size thumbnails are made at (``core.datasets.store``); shown larger they blur."""


def _attempt(change: Callable[[], str]) -> bool:
    """Run one change; a toast says what happened, or the error says why not (perhaps another tab was first)."""
    try:
        st.toast(change(), icon=":material/check:")
    except TransferLabError as error:
        st.toast(str(error), icon=":material/error:")
        return False
    return True


def _move(dataset: str, ref: str, key: str) -> None:
    new_class = st.session_state[key]

    def move() -> str:
        moved = datasets.move_image(dataset, ref, new_class)
        return f"Moved {literal(ref.rsplit('/', 1)[-1])} to '{literal(moved.class_name)}': the next run trains on it."

    if not _attempt(move):
        st.session_state[key] = ref.split("/", 1)[0]  # the image did not move: its label must not say it did


def _remove(dataset: str, ref: str) -> None:
    def remove() -> str:
        datasets.remove_image(dataset, ref)
        return f"Removed {literal(ref.rsplit('/', 1)[-1])} to the trash of '{literal(dataset)}'; it can be restored."

    _attempt(remove)


def image_fix(dataset: str, ref: str, class_names: list[str], key: str, container=None) -> None:
    """Under one image: its label (choosing another class moves the image at once) and a remove button."""
    where = container or st
    current = ref.split("/", 1)[0]
    label_key = f"{key}_label"
    if st.session_state.get(label_key) not in class_names:
        st.session_state.pop(label_key, None)
    where.selectbox(
        "Label",
        class_names,
        index=class_names.index(current) if current in class_names else 0,
        key=label_key,
        label_visibility="collapsed",
        on_change=_move,
        args=(dataset, ref, label_key),
        help="Choose the right class to move the image there; the next run trains on the new label.",
    )
    where.button(
        "Remove",
        key=f"{key}_remove",
        icon=":material/delete:",
        on_click=_remove,
        args=(dataset, ref),
        help="Moves the image to the dataset's trash, from which it can be restored.",
        width="stretch",
    )


def _restore(dataset: str, entry: str) -> None:
    def restore() -> str:
        restored = datasets.restore(dataset, entry)
        return f"Restored {literal(entry.rsplit('/', 1)[-1])} to '{literal(restored.class_name)}'."

    _attempt(restore)


def _empty(dataset: str) -> None:
    def empty() -> str:
        datasets.empty_trash(dataset)
        return f"Emptied the trash of '{literal(dataset)}'."

    _attempt(empty)


def trash_section(dataset: str, key: str, columns: int = 6) -> None:
    """The dataset's removed images, newest first, each with a Restore button; and Empty trash."""
    try:
        removed = datasets.trash(dataset)
    except TransferLabError as error:
        show_error(error)
        return
    # The key keeps the expander open while its label's count changes (a restore would otherwise close it).
    with st.expander(f"Trash ({len(removed)})", icon=":material/delete:", key=f"{key}_trash"):
        if not removed:
            st.caption("Removed images land here and can be restored.")
            return
        for start in range(0, len(removed), columns):
            row = removed[start : start + columns]
            for col, item in zip(st.columns(columns), row):
                # The thumbnail at its own size (stretched, it blurs), or the photo itself shrunk to that size.
                has_thumbnail = item.thumbnail_path.is_file()
                shown = item.thumbnail_path if has_thumbnail else item.path
                col.image(
                    str(shown), caption=f"was in {item.class_name}", width="content" if has_thumbnail else THUMB_WIDTH
                )
            for col, item in zip(st.columns(columns), row):  # a row of their own, aligned under tall and wide images
                col.button(
                    "Restore",
                    key=f"{key}_restore_{item.entry}",
                    icon=":material/restore_from_trash:",
                    on_click=_restore,
                    args=(dataset, item.entry),
                    width="stretch",
                )
        st.button(
            "Empty trash", key=f"{key}_empty_trash", icon=":material/delete_forever:", on_click=_empty, args=(dataset,)
        )
