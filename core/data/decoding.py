"""Which decoder each listed file takes: TensorFlow's own, in parallel, or the safe reader of ``core.images``.

``core.images.read_image_file`` handles every file we accept, but it runs in Python: inside a ``tf.data`` map
(through ``tf.numpy_function``) it holds the GIL, so files decode one at a time while the backbone waits.
TensorFlow's decoders run in parallel, yet they know nothing of our rules: EXIF orientation, transparency made
white, CMYK and 16-bit modes, WebP, TIFF, the JPEG scan limit. So each file is routed by its header alone (read
with Pillow, as cheap as the listing's probe): an 8-bit RGB or grey baseline JPEG that needs no rotation, a
progressive one within the scan limit, or an 8-bit RGB or grey PNG without transparency, within the size limits,
goes to TensorFlow (``TENSORFLOW_DECODERS``); every other file to the safe reader. Both resize like
``core.images.resize_for_model`` (bilinear, half-pixel centres, no antialiasing) and round to uint8, so a file
gives the same pixels either way (up to float rounding in the resize: a grey level here and there).

PIL and numpy at import time; TensorFlow only inside ``decode_in_parallel``.
"""

from __future__ import annotations

import warnings
from functools import partial
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.images import DEFAULT_LIMITS, MAX_JPEG_SCANS, DecodeLimits

DECODER_VERSION = 1
"""Bump when decoding changes what a file becomes: caches of decoded images are keyed by it."""

SAFE, JPEG, PNG = 0, 1, 2
"""Decoders, by their index in ``decode_in_parallel``'s branches."""

TENSORFLOW_DECODERS: dict[tuple[str, str], int] = {
    ("JPEG", "RGB"): JPEG,
    ("JPEG", "L"): JPEG,
    ("PNG", "RGB"): PNG,
    ("PNG", "L"): PNG,
}
"""(format, raw mode of the stored pixels) -> the TensorFlow decoder that reads it as Pillow does: 8-bit RGB or
grey. JPEGs use the accurate integer IDCT, Pillow's (TensorFlow's default, the fast one, is off by up to 5 levels)."""

_EXIF_ORIENTATION = 0x0112
_JPEG_START_OF_SCAN = b"\xff\xda"


def decoder_for(path: str | PathLike[str], limits: DecodeLimits = DEFAULT_LIMITS) -> int:
    """The decoder that gives this file the pixels the safe reader would: a TensorFlow one, else ``SAFE`` whenever
    in doubt (the safe reader then decides, and refuses a broken file with its own reason)."""
    try:
        with open(path, "rb") as file, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(file, formats=("JPEG", "PNG")) as image:
                raw_mode = image.tile[0].args[0] if image.format == "JPEG" else image.tile[0].args
                decoder = TENSORFLOW_DECODERS.get((image.format, raw_mode), SAFE) if len(image.tile) == 1 else SAFE
                if "transparency" in image.info or image.width * image.height > limits.max_pixels:
                    return SAFE
                if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
                    return SAFE
                progressive = image.format == "JPEG" and "progression" in image.info
            if decoder == SAFE or Path(path).stat().st_size > limits.max_bytes:
                return SAFE
            if progressive:
                file.seek(0)
                return decoder if file.read().count(_JPEG_START_OF_SCAN) <= MAX_JPEG_SCANS else SAFE
            return decoder
    except Exception:  # the boundary: whatever Pillow or the file system raises, the safe reader decides
        return SAFE


def decode_in_parallel(paths: list[str], labels: Any, decoders: list[int], image_size: int, safe_decode: Any) -> Any:
    """A ``tf.data`` pipeline of ``(uint8 image, int64 label)`` in listing order: each file through its decoder
    (``decoder_for``), TensorFlow's in parallel, the safe one as ``safe_decode(path_bytes) -> (image, ok)``; a
    file that fails either way is left out, and the others keep their order."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((paths, labels, np.asarray(decoders, dtype=np.int32)))

    def resized(image):
        image = tf.image.resize(image, (image_size, image_size), method="bilinear", antialias=False)
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8), tf.constant(True)

    def with_safe_reader(path):
        image, ok = tf.numpy_function(safe_decode, [path], [tf.uint8, tf.bool])
        return tf.ensure_shape(image, (image_size, image_size, 3)), tf.ensure_shape(ok, ())

    def with_jpeg(path):
        return resized(tf.io.decode_jpeg(tf.io.read_file(path), channels=3, dct_method="INTEGER_ACCURATE"))

    def with_png(path):
        return resized(tf.io.decode_png(tf.io.read_file(path), channels=3, dtype=tf.uint8))

    def load(path, label, decoder):
        branches = {SAFE: with_safe_reader, JPEG: with_jpeg, PNG: with_png}
        image, ok = tf.switch_case(decoder, {index: partial(branch, path) for index, branch in branches.items()})
        return image, label, ok

    def decoded(image, label, ok):
        return ok

    def drop_flag(image, label, ok):
        return image, label

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors()
    return ds.filter(decoded).map(drop_flag)
