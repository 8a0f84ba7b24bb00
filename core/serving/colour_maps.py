"""Heatmaps in colour, and painted over the photo they explain.

A heatmap in 0..1 is coloured with Turbo (dark blue for nothing, red for the strongest evidence) and
blended over the photo with integer arithmetic, so a 12-megapixel photo costs little time and memory.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from core.errors import ConfigError
from core.serving.inputs import as_rgb

DEFAULT_OPACITY = 0.45

_TURBO_POLYNOMIAL = np.array(
    [  # Google's fit of the Turbo colour map: coefficients of 1, x, ..., x^5 per channel
        [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
        [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
        [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],
    ]
)
_LEVELS = np.linspace(0.0, 1.0, 256)
TURBO: np.ndarray = np.clip(
    np.rint(np.stack([_LEVELS**p for p in range(6)], axis=-1) @ _TURBO_POLYNOMIAL.T * 255), 0, 255
).astype(np.uint8)
"""The Turbo colour map as 256 uint8 RGB rows (dark blue, cyan, green, yellow, red): a lookup table, so
colouring a 12-megapixel heatmap costs one indexing pass."""


def colourise(heatmap: np.ndarray) -> np.ndarray:
    """A 0..1 heatmap as uint8 RGB in the Turbo colour map; values outside 0..1 are clipped."""
    levels = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0.0, 1.0)
    return TURBO[np.rint(levels * 255).astype(np.uint8)]


def overlay(image: Image.Image | np.ndarray, heatmap: np.ndarray, opacity: float = DEFAULT_OPACITY) -> np.ndarray:
    """The photo with the coloured heatmap blended over it: uint8 RGB of the photo's size.

    ``opacity`` 0 shows the photo only, 1 the heatmap only. A heatmap of another size is stretched to fit.
    """
    if isinstance(opacity, bool) or not isinstance(opacity, (int, float)) or not 0.0 <= opacity <= 1.0:
        raise ConfigError(f"Opacity must be between 0 and 1 (got {opacity!r}).")
    pixels = np.asarray(as_rgb(image, "This picture") if isinstance(image, Image.Image) else image)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ConfigError(f"Expected an RGB image of shape (height, width, 3), got {pixels.shape}.")
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape != pixels.shape[:2]:
        heatmap = np.asarray(
            Image.fromarray(heatmap, mode="F").resize((pixels.shape[1], pixels.shape[0]), Image.Resampling.BILINEAR),
            dtype=np.float32,
        )
    weight = np.uint16(round(opacity * 256))  # integer blend: 4x less memory than floats on big photos
    blended = pixels.astype(np.uint16) * (256 - weight) + colourise(heatmap).astype(np.uint16) * weight + 128
    return (blended >> 8).astype(np.uint8)
