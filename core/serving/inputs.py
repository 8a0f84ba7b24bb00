"""Whatever people hand in as a photo, opened as an upright RGB picture with a name for messages.

Pages pass uploads, the CLI passes paths, tests and scripts pass bytes or PIL images: ``open_input``
takes them all and raises ``ImageUnreadable`` with a sentence for anything that is not a readable picture.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PIL import Image

from core.errors import ImageUnreadable
from core.images import DEFAULT_LIMITS, DecodeLimits, decode_image, read_image_file

ImageInput = Any
"""``(name, bytes)``, ``(name, PIL image)``, an uploaded file (``.name`` + ``.getvalue()``), a path,
raw ``bytes`` or a PIL image (taken as already upright, as ``decode_image`` returns it)."""


def open_input(item: ImageInput, position: int = 0, limits: DecodeLimits = DEFAULT_LIMITS) -> tuple[str, Image.Image]:
    """(name, upright RGB image) for any accepted input; ``ImageUnreadable`` with a sentence otherwise."""
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
        name, content = item
    elif hasattr(item, "getvalue") and hasattr(item, "name"):
        name, content = str(item.name), item.getvalue()
    elif isinstance(item, (str, os.PathLike)):
        return str(item), read_image_file(item, limits)
    else:
        name, content = _default_name(item, position), item
    if isinstance(content, Image.Image):
        return name, as_rgb(content, name)
    if isinstance(content, (bytes, bytearray, memoryview)):
        return name, decode_image(bytes(content), name, limits)
    raise ImageUnreadable(f"{name} is a {type(content).__name__}, not image bytes, a file or a picture.")


def input_name(item: ImageInput, position: int) -> str:
    """The name ``open_input`` would give ``item``, found without reading it (for its error message)."""
    if isinstance(item, tuple) and item and isinstance(item[0], str):
        return item[0]
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    name = getattr(item, "name", None)
    return str(name) if isinstance(name, str) else _default_name(item, position)


def _default_name(item: Any, position: int) -> str:
    file_name = getattr(item, "filename", "") if isinstance(item, Image.Image) else ""
    return Path(file_name).name if file_name else f"image {position + 1}"


def as_rgb(image: Image.Image, name: str) -> Image.Image:
    """``image`` in RGB mode; ``ImageUnreadable`` naming ``name`` when its pixels cannot be loaded."""
    try:
        return image if image.mode == "RGB" else image.convert("RGB")
    except Exception as error:  # a lazily opened picture may fail to load here
        raise ImageUnreadable(
            f"{name} cannot be converted to RGB ({' '.join(str(error).split())[:120]}). Re-save it as JPEG or PNG."
        ) from error
