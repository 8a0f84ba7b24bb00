"""Decoding image files we did not make: uploads, folder datasets, photos to classify.

Every byte string either becomes a fully loaded RGB image or raises ``ImageUnreadable`` with a
sentence naming the file, what is wrong and what to do. Nothing else escapes, so callers can
show the message or skip the file without guarding against Pillow's many exception types.

Safety, in the order the checks run: the byte size is checked before anything is parsed; only
the plugins of the supported formats are tried (other Pillow plugins are where crafted files
have looped); the pixel count declared in the header is checked before decoding (decompression
bombs); JPEGs with absurd numbers of progressive scans are refused (each scan is another pass
over the whole image). Pillow's own ``DecompressionBombWarning`` is silenced because our limit, which
is checked right after the header is read, is the one that counts; its hard
``DecompressionBombError`` becomes our "too large" message.

PIL and numpy only: pages import this without paying for TensorFlow.

One module on purpose (about 470 lines): every check above guards the same ``decode_image`` path, and the
messages share their wording helpers, so splitting it would scatter one safety argument over files.
"""

from __future__ import annotations

import io
import os
import re
import stat
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageChops

from core.config import Config, setting
from core.errors import ConfigError, ImageUnreadable

SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
"""Pillow plugin names we let parse untrusted bytes."""

SUPPORTED_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
"""Lower-case file suffixes worth trying when scanning a folder (compare with ``is_image_path``)."""

SUPPORTED_NAMES = "JPEG, PNG, WebP, BMP, GIF or TIFF"

MAX_JPEG_SCANS = 500
"""Photos have 1 (baseline) to ~12 (progressive) scans; libjpeg-turbo suggests a limit of 500."""

_PIL_HARD_LIMIT = 170_000_000  # below Pillow's DecompressionBombError threshold (~179 M pixels)

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
"""Leading bytes of the supported formats (WebP is checked apart: RIFF....WEBP)."""

_OTHER_KINDS: tuple[tuple[re.Pattern[bytes], str], ...] = (
    (
        re.compile(rb"....ftyp(heic|heix|hevc|hevx|heim|heis|mif1|msf1)", re.S),
        "a HEIC/HEIF photo (the iPhone default; choose 'Most Compatible' in the camera settings or export it as JPEG)",
    ),
    (re.compile(rb"....ftyp(avif|avis)", re.S), "an AVIF image"),
    (re.compile(rb"....ftyp", re.S), "a video or other media file"),
    (re.compile(rb"%PDF-"), "a PDF document"),
    (re.compile(rb"8BPS"), "a Photoshop (PSD) file"),
    (re.compile(rb"\x00\x00\x00\x0cjP  |\xff\x4f\xff\x51"), "a JPEG 2000 image"),
    (re.compile(rb"PK\x03\x04"), "a ZIP archive (or an Office document)"),
    (re.compile(rb"\s*<(svg|[^\x00]*?<svg)", re.I), "an SVG drawing"),  # linear: no nested repeats
)
"""Files people upload by mistake, named so the message can say what the file really is."""

_OS_ERROR_REASONS: tuple[tuple[type[OSError], str], ...] = (
    (FileNotFoundError, "the file does not exist"),
    (IsADirectoryError, "it is a folder, not a file"),
    (PermissionError, "permission denied"),
)

_NOT_REGULAR: tuple[tuple[Callable[[int], bool], str], ...] = (
    (stat.S_ISDIR, "a folder, not a file"),
    (stat.S_ISFIFO, "a named pipe, not a regular file"),
    (stat.S_ISSOCK, "a socket, not a regular file"),
    (stat.S_ISCHR, "a device, not a regular file"),
    (stat.S_ISBLK, "a device, not a regular file"),
)

_ORIENTATION_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""EXIF orientation tag value -> the transpose that shows the photo upright (as ImageOps does)."""

_EXIF_ORIENTATION = 0x0112

_NOMINAL_RANGES: tuple[float, ...] = (1.0, 255.0, 65535.0)
"""Value ranges tried, in order, for 32-bit integer and float images whose range is unknown."""

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


@dataclass(frozen=True)
class DecodeLimits(Config):
    """How big a file we agree to decode; the defaults suit uploads and folder datasets."""

    max_pixels: int = setting(
        40_000_000,
        "Largest image (pixels)",
        "Larger images are refused before decoding (40 megapixels is a 7,000 x 5,700 photo).",
        min=1,
        max=_PIL_HARD_LIMIT,
    )
    max_bytes: int = setting(
        25 * 2**20,
        "Largest file (bytes)",
        "Larger files are refused before reading; 25 MB matches the upload limit.",
        min=1,
        max=2**31,
    )


DEFAULT_LIMITS = DecodeLimits()


@dataclass(frozen=True)
class ImageHeader:
    """What the header of an image file says, read without decoding its pixels."""

    format: str
    width: int
    height: int
    mode: str
    n_bytes: int


def is_image_path(path: str | PathLike[str]) -> bool:
    """Whether a file's suffix (any case) is one of ``SUPPORTED_SUFFIXES``."""
    return Path(path).suffix.lower() in SUPPORTED_SUFFIXES


def decode_image(data: bytes, name: str | None = None, limits: DecodeLimits = DEFAULT_LIMITS) -> Image.Image:
    """A fully loaded, upright RGB image from untrusted bytes; ``ImageUnreadable`` otherwise.

    ``name`` (e.g. the uploaded file's name) is used in messages. Animated files give their
    first frame; transparency is composited on white.
    """
    data = bytes(data)
    subject = _subject(name)
    _check_byte_count(len(data), subject, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS) as image:
                _check_header(image, subject, limits)
                if image.format in ("JPEG", "MPO"):
                    _check_jpeg_scans(data, subject)
                image.load()
                transpose = _ORIENTATION_TRANSPOSE.get(_orientation(image))
                rgb = _to_rgb(image, subject)
            upright = rgb.transpose(transpose) if transpose is not None else rgb
            upright.info.pop("exif", None)  # already applied: a later exif_transpose must not turn it again
            return upright
    except ImageUnreadable:
        raise
    except Image.UnidentifiedImageError:
        raise ImageUnreadable(_not_an_image_message(data, subject)) from None
    except Image.DecompressionBombError as error:
        raise ImageUnreadable(_bomb_message(error, subject, limits)) from error
    except MemoryError:
        raise ImageUnreadable(
            f"{subject} is too large to decode with the memory available. Resize it to a smaller image and try again."
        ) from None
    except Exception as error:  # the boundary: Pillow raises many types on crafted bytes
        raise ImageUnreadable(_corrupt_message(error, subject)) from error


def decode_image_array(data: bytes, name: str | None = None, limits: DecodeLimits = DEFAULT_LIMITS) -> np.ndarray:
    """``decode_image`` as a writable uint8 array of shape (height, width, 3)."""
    return np.array(decode_image(data, name, limits), dtype=np.uint8)


def read_image_file(path: str | PathLike[str], limits: DecodeLimits = DEFAULT_LIMITS) -> Image.Image:
    """``decode_image`` for a file, refusing one over the byte limit before reading it."""
    subject = Path(path).name or str(path)
    try:
        with _open_regular_file(path, subject) as file:
            _check_byte_count(_file_size(file), subject, limits)
            data = file.read(limits.max_bytes + 1)
    except OSError as error:
        raise ImageUnreadable(_os_error_message(error, subject)) from error
    return decode_image(data, subject, limits)


def inspect_image_file(path: str | PathLike[str], limits: DecodeLimits = DEFAULT_LIMITS) -> ImageHeader:
    """The header of an image file, checked against the limits, without decoding its pixels.

    Cheap enough to scan big folders; a file that passes may still turn out truncated when
    decoded, so the loader must also handle ``ImageUnreadable`` from ``read_image_file``.
    """
    subject = Path(path).name or str(path)
    try:
        with _open_regular_file(path, subject) as file:
            n_bytes = _file_size(file)
            _check_byte_count(n_bytes, subject, limits)
            head = file.read(4096)
            file.seek(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(file, formats=SUPPORTED_FORMATS) as image:
                    _check_header(image, subject, limits)
                    return ImageHeader(str(image.format), image.width, image.height, image.mode, n_bytes)
    except ImageUnreadable:
        raise
    except OSError as error:
        if isinstance(error, Image.UnidentifiedImageError):
            raise ImageUnreadable(_not_an_image_message(head, subject)) from None
        if error.errno is not None:
            raise ImageUnreadable(_os_error_message(error, subject)) from error
        raise ImageUnreadable(_corrupt_message(error, subject)) from error
    except Image.DecompressionBombError as error:
        raise ImageUnreadable(_bomb_message(error, subject, limits)) from error
    except Exception as error:  # the boundary, as in decode_image
        raise ImageUnreadable(_corrupt_message(error, subject)) from error


def probe_image_file(path: str | PathLike[str], limits: DecodeLimits = DEFAULT_LIMITS) -> bool:
    """Whether ``inspect_image_file`` accepts the file: a quick filter for folder scans."""
    try:
        inspect_image_file(path, limits)
    except ImageUnreadable:
        return False
    return True


def resize_for_model(image: Image.Image | np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """A float32 (height, width, 3) array in 0..255, resized like ``tf.image.resize`` (bilinear).

    Half-pixel centres and no antialiasing, as TensorFlow does by default, so arrays prepared
    here match what a Keras pipeline computes. ``size`` is one side or (height, width). Values
    are not divided by 255: the Keras applications rescale inside the model.
    """
    height, width = (size, size) if isinstance(size, int) else size
    if not all(isinstance(side, (int, np.integer)) and side > 0 for side in (height, width)):
        raise ConfigError(f"Image size must be positive whole pixels (got {size!r}).")
    if isinstance(image, Image.Image):
        pixels = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    else:
        pixels = np.asarray(image)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or 0 in pixels.shape:
        raise ConfigError(f"Expected an RGB image of shape (height, width, 3), got {pixels.shape}.")
    y_low, y_high, y_frac = _bilinear_taps(pixels.shape[0], height)
    x_low, x_high, x_frac = _bilinear_taps(pixels.shape[1], width)
    rows_low = pixels[y_low]
    rows_high = pixels[y_high]
    top_left = rows_low[:, x_low].astype(np.float32)
    top_right = rows_low[:, x_high].astype(np.float32)
    bottom_left = rows_high[:, x_low].astype(np.float32)
    bottom_right = rows_high[:, x_high].astype(np.float32)
    x_frac = x_frac[None, :, None]
    top = top_left + (top_right - top_left) * x_frac
    bottom = bottom_left + (bottom_right - bottom_left) * x_frac
    return top + (bottom - top) * y_frac[:, None, None]


def _bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights for half-pixel-centre bilinear sampling along one axis."""
    scale = np.float32(n_in / n_out)
    source = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    source = np.clip(source, 0, n_in - 1)
    low = np.floor(source).astype(np.intp)
    high = np.minimum(low + 1, n_in - 1)
    return low, high, (source - low).astype(np.float32)


def _subject(name: str | None) -> str:
    return name if name else "This file"


def _check_byte_count(n_bytes: int, subject: str, limits: DecodeLimits) -> None:
    if n_bytes == 0:
        raise ImageUnreadable(
            f"{subject} is empty (0 bytes). Choose the file again; if it stays empty, "
            "export the image again from where it came from."
        )
    if n_bytes > limits.max_bytes:
        raise ImageUnreadable(
            f"{subject} is too large: {_describe_bytes(n_bytes)}, and the limit is "
            f"{_describe_bytes(limits.max_bytes)}. Save a smaller copy (e.g. as JPEG) and try "
            "again."
        )


def _check_header(image: Image.Image, subject: str, limits: DecodeLimits) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageUnreadable(
            f"{subject} is truncated or corrupt: it declares {width} x {height} pixels. "
            "Try re-saving it as JPEG or PNG."
        )
    if width * height > limits.max_pixels:
        raise ImageUnreadable(
            f"{subject} is too large: {width:,} x {height:,} pixels "
            f"({_describe_pixels(width * height)}), and the limit is "
            f"{_describe_pixels(limits.max_pixels)}. Resize it (e.g. to 2,000 pixels on the "
            "long side) and try again."
        )


def _check_jpeg_scans(data: bytes, subject: str) -> None:
    scans = data.count(b"\xff\xda")  # start-of-scan markers; 0xFF in coded data is escaped
    if scans > MAX_JPEG_SCANS:
        raise ImageUnreadable(
            f"{subject} is too costly to decode: it has {scans:,} JPEG scans, where photos have "
            f"at most a few dozen (limit {MAX_JPEG_SCANS}). It is probably broken or crafted; "
            "try re-saving it as JPEG or PNG."
        )


def _open_regular_file(path: str | PathLike[str], subject: str) -> BinaryIO:
    """The file opened for reading, or ``ImageUnreadable`` if it is not a regular file.

    Opened without blocking and checked before the first read: a plain ``open`` of a named pipe waits
    for a writer forever, and a device can be read forever.
    """
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            kind = next((kind for test, kind in _NOT_REGULAR if test(mode)), "not a regular file")
            raise ImageUnreadable(f"{subject} cannot be read: it is {kind}.")
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def _file_size(file: BinaryIO) -> int:
    file.seek(0, io.SEEK_END)
    size = file.tell()
    file.seek(0)
    return size


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1 = upright); a malformed EXIF block counts as upright."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
        return int(value)
    except Exception:  # broken EXIF must not cost us an otherwise good image
        return 1


def _to_rgb(image: Image.Image, subject: str) -> Image.Image:
    """An RGB copy: integer and float images scaled to 0..255, transparency made white."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        return _grey_to_rgb(_scale_to_uint8(np.asarray(image.convert("I")), 65535.0))
    if mode in ("I", "F"):
        return _grey_to_rgb(_scale_to_uint8(np.asarray(image), None))
    if mode == "CMYK" and image.format in ("JPEG", "MPO") and "adobe" not in image.info:
        image = ImageChops.invert(image)  # Pillow assumes Adobe's inverted CMYK; this file is not
    if image.has_transparency_data:
        try:
            rgba = image.convert("RGBA")
        except ValueError:
            pass  # no alpha conversion for this mode: fall back to its colours alone
        else:
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError:
        raise ImageUnreadable(
            f"{subject} uses the colour mode {mode}, which cannot be converted to RGB. "
            "Re-save it as an RGB JPEG or PNG."
        ) from None


def _scale_to_uint8(values: np.ndarray, nominal_max: float | None) -> np.ndarray:
    """Map a single-channel integer or float image to 0..255.

    With a known range (16-bit: 0..65535) that range is used. Otherwise the first of 0..1,
    0..255 and 0..65535 that holds every finite value, else the image's own min..max.
    NaN becomes black, infinities the extremes.
    """
    values = values.astype(np.float32)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, np.uint8)
    low = float(values[finite].min())
    high = float(values[finite].max())
    values = np.nan_to_num(values, nan=low, posinf=high, neginf=low)
    if nominal_max is None and low >= 0:
        nominal_max = next((top for top in _NOMINAL_RANGES if high <= top), None)
    if nominal_max is not None:
        scaled = values * np.float32(255.0 / nominal_max)
    elif high > low:
        scaled = (values - np.float32(low)) * np.float32(255.0 / (high - low))
    else:
        scaled = np.zeros_like(values)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _grey_to_rgb(grey: np.ndarray) -> Image.Image:
    return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2), "RGB")


def _describe_bytes(n_bytes: int) -> str:
    if n_bytes < 2**10:
        return f"{n_bytes} bytes"
    if n_bytes < 2**20:
        return f"{n_bytes / 2**10:.1f} KB"
    return f"{n_bytes / 2**20:.1f} MB".replace(".0 ", " ")


def _describe_pixels(n_pixels: int) -> str:
    if n_pixels >= 1_000_000:
        return f"{n_pixels / 1_000_000:,.1f} megapixels".replace(".0 ", " ")
    return f"{n_pixels:,} pixels"


def claimed_format(data: bytes) -> str | None:
    """The supported format the leading bytes announce, if any ('JPEG', 'PNG', 'WebP'...)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((fmt for magic, fmt in _SIGNATURES if data.startswith(magic)), None)


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 3:  # not just a character cut at the end of the sample
            return False
        text = head[: error.start].decode("utf-8")
    printable = sum(char.isprintable() or char in "\t\r\n" for char in text)
    return bool(text) and printable >= 0.95 * len(text)


def _not_an_image_message(data: bytes, subject: str) -> str:
    head = data[:4096]
    claimed = claimed_format(head)
    if claimed is not None:
        return (
            f"{subject} is truncated or corrupt: it starts like a {claimed} file but its "
            "header cannot be read. Try re-saving it as JPEG or PNG."
        )
    kind = next((kind for pattern, kind in _OTHER_KINDS if pattern.match(head)), None)
    if kind is not None:
        return (
            f"{subject} is {kind}, not a supported image. Convert it to JPEG or PNG ({SUPPORTED_NAMES} are accepted)."
        )
    if _looks_like_text(head):
        return f"{subject} is not an image: it contains text. Choose a {SUPPORTED_NAMES} file."
    return f"{subject} is not an image in a supported format. Choose a {SUPPORTED_NAMES} file."


def _corrupt_message(error: BaseException, subject: str) -> str:
    detail = " ".join(str(error).split())[:120] or type(error).__name__
    return f"{subject} is truncated or corrupt: {detail}. Try re-saving it as JPEG or PNG."


def _bomb_message(error: Image.DecompressionBombError, subject: str, limits: DecodeLimits) -> str:
    found = re.search(r"\((\d+) pixels\)", str(error))
    declared = f" ({_describe_pixels(int(found.group(1)))})" if found else ""
    return (
        f"{subject} is too large: it declares more pixels{declared} than the limit of "
        f"{_describe_pixels(limits.max_pixels)}. Resize it and try again."
    )


def _os_error_message(error: OSError, subject: str) -> str:
    reason = next(
        (reason for kind, reason in _OS_ERROR_REASONS if isinstance(error, kind)), error.strerror or str(error)
    )
    return f"{subject} cannot be read: {reason}."
