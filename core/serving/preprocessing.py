"""How a photo becomes a model's input, one row per way: a trained run's and ImageNet's.

A trained run stretches the photo to its training size, exactly as its training data was resized; the
ImageNet dog classifier takes the standard ImageNet evaluation view, a centre crop. Each row also says
which part of the photo the model sees, so Grad-CAM can paint its heatmap back over the right pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.catalog import by_name
from core.imagenet import CENTRE_CROP_FRACTION, imagenet_eval_array
from core.images import resize_for_model

Box = tuple[float, float, float, float]
"""(left, top, right, bottom) in the photo's pixels."""


@dataclass(frozen=True)
class Preprocessing:
    """How a photo becomes a model input, and which part of the photo the model gets to see."""

    name: str
    description: str  # for people; ``{size}`` is replaced by the input size
    prepare: Callable[[Image.Image, int], np.ndarray]  # upright RGB photo, side -> float32 (side, side, 3) 0..255
    view_box: Callable[[int, int], Box]  # photo (width, height) -> (left, top, right, bottom) the model sees


def _stretch_as_in_training(image: Image.Image, size: int) -> np.ndarray:
    """What the training pipeline does: bilinear resize to a square (no crop), rounded to whole pixel values."""
    return np.rint(resize_for_model(image, size))


def _whole_photo(width: int, height: int) -> Box:
    return 0.0, 0.0, float(width), float(height)


def _imagenet_evaluation(image: Image.Image, size: int) -> np.ndarray:
    return imagenet_eval_array(image, size)


def _centre_crop(width: int, height: int) -> Box:
    """The square ``imagenet_eval_array`` crops: 87.5% of the shorter side, centred."""
    side = CENTRE_CROP_FRACTION * min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


PREPROCESSING: dict[str, Preprocessing] = by_name(
    Preprocessing(
        "stretch",
        "Stretched to {size} x {size} pixels, as the training images were",
        _stretch_as_in_training,
        _whole_photo,
    ),
    Preprocessing(
        "imagenet",
        "Centre crop (87.5% of the shorter side) resized to {size} x {size} pixels, ImageNet's evaluation view",
        _imagenet_evaluation,
        _centre_crop,
    ),
)
