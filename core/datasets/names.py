"""The names people give datasets and classes, checked so that every one is also a safe folder name everywhere.

A class name is a folder name on disk and in a downloaded zip, so it must not climb out of its folder (``..``,
``/``), hide (a leading dot), or be a name Windows refuses (``CON``, ``LPT1``...), or the zip would not unpack there.
"""

from __future__ import annotations

import unicodedata

from core.class_names import format_class_name
from core.errors import DatasetError

MAX_NAME_LENGTH = 60

WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
)
"""Names Windows will not create, with or without an extension ('con.txt' is refused too)."""

LAYOUT_WORDS = frozenset({"train", "test", "images"})
"""Folder names that mean a split or the Stanford Dogs layout in folders and zips, so never a class."""

WINDOWS_FORBIDDEN = '<>:"|?*'
"""Characters Windows refuses in file names: a zip holding them would not unpack there."""


def _problem(name: str) -> str | None:
    """What is wrong with a stripped name as a folder name, or None."""
    if not name:
        return "is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"is {len(name)} characters long; keep it to {MAX_NAME_LENGTH}"
    if "/" in name or "\\" in name:
        return "contains a slash"
    if any(unicodedata.category(char) == "Cc" for char in name):
        return "contains a control character"
    bad = sorted({char for char in name if char in WINDOWS_FORBIDDEN})
    if bad:
        return f"contains {' '.join(bad)}, which some computers do not allow in folder names"
    if name.startswith("."):
        return "starts with a dot (such folders are hidden)"
    if name.endswith("."):
        return "ends with a dot"
    if name.split(".")[0].strip().upper() in WINDOWS_RESERVED:
        return "is a name Windows reserves for devices"
    return None


def check_dataset_name(text: str) -> str:
    """The dataset name, stripped, or ``DatasetError`` saying what to change."""
    name = str(text).strip()
    problem = _problem(name)
    if problem:
        raise DatasetError(
            f"The dataset name {name!r} {problem}: use letters, digits, spaces and - _ ' ( ) , . (up to "
            f"{MAX_NAME_LENGTH} characters)."
        )
    return name


def check_class_name(text: str) -> str:
    """The class name, stripped, or ``DatasetError`` saying what to change."""
    name = str(text).strip()
    problem = _problem(name)
    if problem is None and name.lower() in LAYOUT_WORDS:
        problem = "means a split or a folder layout in datasets, not a class"
    if problem:
        raise DatasetError(
            f"The class name {name!r} {problem}: use letters, digits, spaces and - _ ' ( ) , . (up to "
            f"{MAX_NAME_LENGTH} characters), e.g. 'golden retriever'."
        )
    return name


def class_name_from_folder(folder: str) -> str:
    """A zip or folder's class folder as a class name: 'n02085620-Chihuahua' -> 'Chihuahua', checked."""
    return check_class_name(format_class_name(folder))
