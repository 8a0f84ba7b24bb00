"""Small photo-like test images: one colour with seeded noise, so every image has bytes (and a content hash) of
its own, which the datasets store needs (it keeps one copy per content)."""

import io

import numpy as np
from PIL import Image


def noisy_pixels(colour, seed: int, shape: tuple[int, int] = (32, 32), spread: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.array(colour) + rng.integers(-spread, spread, (*shape, 3)), 0, 255).astype(np.uint8)


def noisy_png(colour, seed: int, shape: tuple[int, int] = (32, 32), spread: int = 40) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(noisy_pixels(colour, seed, shape, spread)).save(buffer, "PNG")
    return buffer.getvalue()
