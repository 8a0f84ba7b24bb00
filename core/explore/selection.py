"""What a selection on the map points at: the rows of the points picked by click, box or lasso.

Every trace of the map (``core.figures.feature_map``) gives each point its map row as ``customdata``, so a
selection maps back to rows, files and classes whatever trace a point is in. Streamlit hands a point's
``customdata`` over as a list, a number, or a dict of typed-array slices (``{"0": row}``): all three are read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from core.explore.features import MapFeatures


class Selected(NamedTuple):
    """One selected image: its map row, file, class, and split."""

    row: int
    file: Path
    class_name: str
    split: str


def _row(data: Any) -> int | None:
    if isinstance(data, Mapping):
        data = data.get("0", data.get(0))
    if isinstance(data, (list, tuple)):
        data = data[0] if data else None
    if isinstance(data, bool) or data is None:
        return None
    try:
        return int(data)
    except (TypeError, ValueError):
        return None


def selected_rows(selection: Mapping[str, Any] | None, count: int) -> list[int]:
    """The map rows of the selected points, in selection order, each once; rows outside ``0..count-1`` dropped."""
    rows: list[int] = []
    for point in (selection or {}).get("points") or []:
        row = _row(point.get("customdata"))
        if row is not None and 0 <= row < count and row not in rows:
            rows.append(row)
    return rows


def describe_rows(features: MapFeatures, rows: Sequence[int]) -> list[Selected]:
    """The file, class and split behind each row."""
    return [
        Selected(
            int(row),
            features.files[row],
            features.class_names[features.labels[row]],
            "test" if features.is_test[row] else "train",
        )
        for row in rows
    ]


def thumbnail(path: Path, size: int = 160) -> np.ndarray:
    """The image of a file, at most ``size`` pixels on its longer side, as a uint8 array (for the galleries)."""
    from core.images import read_image_file

    image = read_image_file(path)
    image.thumbnail((size, size))
    return np.asarray(image.convert("RGB"))
