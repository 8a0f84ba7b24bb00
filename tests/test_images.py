"""Decoding untrusted image bytes: every mode to RGB, every bad file to a specific message."""

from __future__ import annotations

import io
import os
import struct
import threading
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from core.errors import ConfigError, ImageUnreadable
from core.images import (
    MAX_JPEG_SCANS,
    SUPPORTED_SUFFIXES,
    DecodeLimits,
    decode_image,
    decode_image_array,
    inspect_image_file,
    is_image_path,
    probe_image_file,
    read_image_file,
    resize_for_model,
)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    checksum = struct.pack(">I", zlib.crc32(kind + payload))
    return struct.pack(">I", len(payload)) + kind + payload + checksum


def png_declaring(width: int, height: int) -> bytes:
    """A few dozen bytes whose header claims a width x height RGB image."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b""))
        + png_chunk(b"IEND", b"")
    )


def without_adobe_segment(data: bytes) -> bytes:
    start = data.index(b"Adobe") - 4  # marker FF EE, two length bytes, then "Adobe"
    assert data[start : start + 2] == b"\xff\xee"
    length = struct.unpack(">H", data[start + 2 : start + 4])[0]
    return data[:start] + data[start + 2 + length :]


def quadrants(width: int = 48, height: int = 32) -> np.ndarray:
    """Four flat colours, so orientation mistakes are obvious and JPEG keeps them close."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[: height // 2, : width // 2] = (220, 30, 30)
    pixels[: height // 2, width // 2 :] = (30, 220, 30)
    pixels[height // 2 :, : width // 2] = (30, 30, 220)
    pixels[height // 2 :, width // 2 :] = (230, 230, 40)
    return pixels


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def message_of(data: bytes, name: str | None = None, **limits) -> str:
    with pytest.raises(ImageUnreadable) as caught:
        decode_image(data, name, DecodeLimits(**limits))
    return str(caught.value)


# --- every supported format and colour mode becomes the right RGB pixels ---------------------


@pytest.mark.parametrize(
    "fmt,options",
    [
        ("PNG", {}),
        ("WEBP", {"lossless": True}),
        ("BMP", {}),
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
        ("TIFF", {"compression": "tiff_deflate"}),
    ],
)
def test_lossless_formats_round_trip_exactly(fmt, options):
    original = noise(20, 13)
    decoded = decode_image(encode(original, fmt, **options))
    assert decoded.mode == "RGB" and decoded.size == (20, 13)
    assert np.array_equal(np.asarray(decoded), np.asarray(original))


@pytest.mark.parametrize(
    "fmt,options",
    [
        ("JPEG", {"quality": 95}),
        ("JPEG", {"progressive": True}),
        ("WEBP", {"quality": 95}),
        ("TIFF", {"compression": "jpeg"}),
    ],
)
def test_lossy_formats_keep_the_colours(fmt, options):
    original = quadrants()
    decoded = np.asarray(decode_image(encode(Image.fromarray(original), fmt, **options)))
    assert decoded.shape == original.shape
    assert np.abs(decoded.astype(int) - original).mean() < 6


def test_greyscale_becomes_three_equal_channels():
    grey = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16), "L")
    decoded = decode_image_array(encode(grey, "PNG"))
    assert decoded.shape == (16, 16, 3)
    assert np.array_equal(decoded[..., 0], np.asarray(grey))
    assert np.array_equal(decoded[..., 0], decoded[..., 2])


def test_one_bit_image_is_black_and_white():
    bits = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).convert("1")
    decoded = decode_image_array(encode(bits, "PNG"))
    assert decoded[0, 0].tolist() == [0, 0, 0] and decoded[0, 1].tolist() == [255, 255, 255]


def test_sixteen_bit_png_is_scaled_not_clipped():
    values = np.array([[0, 257, 257 * 128, 32767, 65535, 1000]], np.uint16)
    decoded = decode_image_array(encode(Image.fromarray(values), "PNG"))
    assert decoded[0, :, 0].tolist() == [0, 1, 128, 127, 255, 4]


def test_sixteen_bit_gradient_stays_a_full_range_gradient():
    gradient = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (4, 1))
    decoded = decode_image_array(encode(Image.fromarray(gradient), "PNG"))[0, :, 0].astype(int)
    assert decoded[0] == 0 and decoded[-1] == 255
    assert np.all(np.diff(decoded) >= 0)
    assert np.abs(decoded - np.arange(256)).max() <= 1


@pytest.mark.parametrize(
    "values,expected",
    [
        (np.array([[0, 1000, 65535]], np.int32), [0, 4, 255]),  # 16-bit data in 32 bits
        (np.array([[0, 128, 255]], np.int32), [0, 128, 255]),  # 8-bit data in 32 bits
        (np.array([[-100, 0, 100]], np.int32), [0, 128, 255]),  # no nominal range: min..max
        (np.array([[0.0, 0.5, 1.0]], np.float32), [0, 128, 255]),  # float in 0..1
        (np.array([[0.0, 100.0, 200.0]], np.float32), [0, 100, 200]),  # float in 0..255
        (np.array([[-1.0, 0.0, 3.0]], np.float32), [0, 64, 255]),  # float, any range
        (np.array([[np.nan, 0.25, 1.0]], np.float32), [64, 64, 255]),  # NaN takes the minimum
    ],
)
def test_32_bit_integer_and_float_tiffs_are_scaled_to_their_range(values, expected):
    decoded = decode_image_array(encode(Image.fromarray(values), "TIFF"))
    assert decoded[0, :, 0].tolist() == expected


def test_rgba_is_composited_on_white():
    pixels = np.zeros((4, 4, 4), np.uint8)
    pixels[0, 0] = (255, 0, 0, 128)  # half-transparent red
    pixels[0, 1] = (0, 0, 255, 255)  # opaque blue
    pixels[0, 2] = (0, 0, 0, 0)  # fully transparent black
    decoded = decode_image_array(encode(Image.fromarray(pixels, "RGBA"), "PNG"))
    assert np.abs(decoded[0, 0].astype(int) - (255, 127, 127)).max() <= 1
    assert decoded[0, 1].tolist() == [0, 0, 255]
    assert decoded[0, 2].tolist() == [255, 255, 255]


def test_grey_with_alpha_is_composited_on_white():
    pixels = np.array([[[0, 0], [0, 255], [0, 128]]], np.uint8)
    decoded = decode_image_array(encode(Image.fromarray(pixels, "LA"), "PNG"))
    assert decoded[0, 0].tolist() == [255, 255, 255]
    assert decoded[0, 1].tolist() == [0, 0, 0]
    assert abs(int(decoded[0, 2, 0]) - 127) <= 1


def test_palette_png_transparent_index_becomes_white():
    palette = Image.new("P", (4, 2))
    palette.putpalette([200, 10, 10, 0, 0, 0] + [0] * 762)
    palette.putpixel((0, 0), 1)
    for x in range(1, 4):
        palette.putpixel((x, 0), 0)
    data = encode(palette, "PNG", transparency=1)
    decoded = decode_image_array(data)
    assert decoded[0, 0].tolist() == [255, 255, 255]
    assert decoded[0, 1].tolist() == [200, 10, 10]
    assert decoded[1, 0].tolist() == [200, 10, 10]


def test_animated_gif_gives_its_first_frame():
    red = Image.new("RGB", (8, 8), (255, 0, 0))
    blue = Image.new("RGB", (8, 8), (0, 0, 255))
    green = Image.new("RGB", (8, 8), (0, 255, 0))
    data = encode(red, "GIF", save_all=True, append_images=[blue, green], duration=50, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    decoded = decode_image_array(data)
    assert decoded[4, 4].tolist() == [255, 0, 0]


def test_cmyk_jpeg_with_adobe_marker_has_sensible_colours():
    red_in_cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))
    data = encode(red_in_cmyk, "JPEG", quality=95)
    assert b"Adobe" in data[:200]  # the inverted (Photoshop) convention
    r, g, b = decode_image_array(data)[8, 8].tolist()
    assert r > 220 and g < 40 and b < 40


def test_cmyk_jpeg_without_adobe_marker_is_not_inverted():
    # Saved inverted with an Adobe marker, then the marker removed: the stored values now mean
    # plain (non-inverted) CMYK red, which is what a reader must show.
    inverted_red = Image.new("CMYK", (16, 16), (255, 0, 0, 255))
    data = without_adobe_segment(encode(inverted_red, "JPEG", quality=95))
    r, g, b = decode_image_array(data)[8, 8].tolist()
    assert r > 220 and g < 40 and b < 40


def test_cmyk_tiff_has_sensible_colours():
    data = encode(Image.new("CMYK", (4, 4), (0, 0, 255, 0)), "TIFF")
    assert decode_image_array(data)[0, 0].tolist() == [255, 255, 0]


def test_ycbcr_jpeg_and_lab_tiff_become_rgb():
    ycbcr_red = Image.new("RGB", (16, 16), (255, 0, 0)).convert("YCbCr")
    r, g, b = decode_image_array(encode(ycbcr_red, "JPEG", quality=95))[8, 8].tolist()
    assert r > 220 and g < 40 and b < 40
    lab_white = Image.new("LAB", (4, 4), (255, 128, 128))
    assert decode_image_array(encode(lab_white, "TIFF")).min() >= 250


def test_png_bytes_named_jpg_are_decoded_by_content(tmp_path):
    path = tmp_path / "holiday.jpg"
    path.write_bytes(encode(noise(9, 7), "PNG"))
    assert read_image_file(path).size == (9, 7)


def test_one_pixel_image():
    decoded = decode_image_array(encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"))
    assert decoded.shape == (1, 1, 3) and decoded[0, 0].tolist() == [1, 2, 3]


def test_array_is_writable_uint8():
    decoded = decode_image_array(encode(noise(5, 4), "PNG"))
    assert decoded.dtype == np.uint8 and decoded.shape == (4, 5, 3) and decoded.flags.writeable


# --- EXIF orientation -----------------------------------------------------------------------

STORED_FOR_ORIENTATION = {
    # orientation tag -> how a camera stores an upright picture under that tag
    2: lambda up: up[:, ::-1],
    3: lambda up: up[::-1, ::-1],
    4: lambda up: up[::-1],
    5: lambda up: up.transpose(1, 0, 2),
    6: lambda up: np.rot90(up, 1),  # stored turned left; shown turned right (clockwise)
    7: lambda up: up[::-1, ::-1].transpose(1, 0, 2),
    8: lambda up: np.rot90(up, -1),
}


def with_orientation(pixels: np.ndarray, orientation: int, fmt: str, **options) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(Image.fromarray(np.ascontiguousarray(pixels)), fmt, exif=exif.tobytes(), **options)


@pytest.mark.parametrize("orientation", sorted(STORED_FOR_ORIENTATION))
def test_exif_orientation_shows_png_upright(orientation):
    upright = np.asarray(noise(6, 4, seed=orientation))
    stored = STORED_FOR_ORIENTATION[orientation](upright)
    decoded = decode_image_array(with_orientation(stored, orientation, "PNG"))
    assert np.array_equal(decoded, upright)


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotated_jpeg_matches_its_upright_twin(orientation):
    upright = quadrants(48, 32)
    stored = STORED_FOR_ORIENTATION[orientation](upright)
    assert stored.shape[:2] == (48, 32)
    rotated = decode_image_array(with_orientation(stored, orientation, "JPEG", quality=95))
    twin = decode_image_array(encode(Image.fromarray(upright), "JPEG", quality=95))
    assert rotated.shape == (32, 48, 3)
    assert np.abs(rotated.astype(int) - twin).mean() < 4


def test_broken_exif_does_not_cost_the_image():
    data = encode(noise(8, 8), "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff garbage")
    assert decode_image(data).size == (8, 8)


# --- refusals: each with its own sentence naming the file -----------------------------------


def test_empty_file():
    message = message_of(b"", "photo.jpg")
    assert message.startswith("photo.jpg is empty")


def test_file_over_the_byte_limit():
    data = encode(noise(40, 40), "PNG")
    message = message_of(data, "big.png", max_bytes=1000)
    assert message.startswith("big.png is too large") and "KB" in message and "1000 bytes" in message
    assert decode_image(data, "big.png", DecodeLimits(max_bytes=len(data))).size == (40, 40)


def test_file_over_the_default_byte_limit_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.png"
    with open(path, "wb") as file:
        file.truncate(26 * 2**20)  # sparse: costs no disk
    with pytest.raises(ImageUnreadable, match=r"huge.png is too large: 26 MB.*limit is 25 MB"):
        read_image_file(path)
    assert not probe_image_file(path)


def test_image_over_the_pixel_limit():
    message = message_of(encode(noise(20, 20), "PNG"), "wide.png", max_pixels=100)
    assert message.startswith("wide.png is too large: 20 x 20 pixels (400 pixels)")
    assert "limit is 100 pixels" in message


@pytest.mark.parametrize("side", [10_000, 100_000])
def test_header_declaring_a_huge_image_is_refused_before_decoding(side, tmp_path):
    data = png_declaring(side, side)
    assert len(data) < 100
    message = message_of(data, "bomb.png")
    assert message.startswith("bomb.png is too large") and "megapixels" in message
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    assert not probe_image_file(path)
    with pytest.raises(ImageUnreadable, match="too large"):
        inspect_image_file(path)


def test_truncated_jpeg():
    data = encode(noise(64, 64), "JPEG")
    message = message_of(data[: len(data) // 2], "photo.jpg")
    assert message.startswith("photo.jpg is truncated or corrupt")
    assert message.endswith("Try re-saving it as JPEG or PNG.")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"])
def test_file_cut_inside_its_header_is_called_corrupt_not_foreign(fmt):
    data = encode(noise(16, 16), fmt)
    assert "truncated or corrupt" in message_of(data[:14])


def png_with_broken_second_chunk() -> bytes:
    data = encode(noise(200, 200), "PNG")  # image data spans several IDAT chunks
    second = data.index(b"IDAT", data.index(b"IDAT") + 4)
    return data[:second] + b"G\xf4\x0c\x00" + data[second + 4 :]


def tiff_with_zero_rows_per_strip() -> bytes:
    data = bytearray(encode(noise(4, 4), "TIFF"))
    directory = struct.unpack("<I", data[4:8])[0]
    for entry in range(struct.unpack("<H", data[directory : directory + 2])[0]):
        start = directory + 2 + 12 * entry
        if struct.unpack("<H", data[start : start + 2])[0] == 278:  # RowsPerStrip
            data[start + 8 : start + 12] = struct.pack("<I", 0)
    return bytes(data)


@pytest.mark.parametrize(
    "build,pillow_raises",
    [
        (lambda: b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", b"\x00\x00\x00\x01\x00"), ValueError),
        (png_with_broken_second_chunk, SyntaxError),
        (tiff_with_zero_rows_per_strip, ValueError),
    ],
)
def test_pillow_failures_other_than_oserror_become_our_error(build, pillow_raises):
    data = build()
    with pytest.raises(pillow_raises):
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    assert "truncated or corrupt" in message_of(data, "bad")


def test_too_many_jpeg_scans():
    data = encode(noise(16, 16), "JPEG", progressive=True)
    last_scan = data[data.rindex(b"\xff\xda") : -2]
    crafted = data[:-2] + last_scan * MAX_JPEG_SCANS + b"\xff\xd9"
    assert "JPEG scans" in message_of(crafted, "scans.jpg")


def test_random_bytes_are_not_an_image():
    data = np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    assert message_of(data, "blob.bin").startswith("blob.bin is not an image")


def test_text_file_is_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("These are my notes about dogs.\nNot a picture at all.\n")
    with pytest.raises(ImageUnreadable, match="notes.jpg is not an image: it contains text"):
        read_image_file(path)
    assert not probe_image_file(path)


@pytest.mark.parametrize(
    "data,kind",
    [
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(100), "HEIC"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(100), "PDF"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>', "SVG"),
    ],
)
def test_common_wrong_files_are_named(data, kind):
    message = message_of(data, "upload")
    assert kind in message and "not a supported image" in message


def test_text_that_almost_looks_like_svg_is_sniffed_in_linear_time():
    # A regex with nested repeats would backtrack exponentially here (and hang the upload).
    assert "contains text" in message_of(b"<!--a-->" * 500 + b"x")
    assert "SVG" in message_of(b"<!-- drawing -->\n<!DOCTYPE svg>\n<SVG width='1'></SVG>")


def test_messages_without_a_name_still_read_as_a_sentence():
    assert message_of(b"").startswith("This file is empty")


def test_unreadable_paths(tmp_path):
    with pytest.raises(ImageUnreadable, match="missing.png cannot be read: the file does not exist"):
        read_image_file(tmp_path / "missing.png")
    with pytest.raises(ImageUnreadable, match="folder"):
        read_image_file(tmp_path)
    assert not probe_image_file(tmp_path / "missing.png")


@pytest.mark.parametrize("read", [read_image_file, inspect_image_file, probe_image_file])
def test_a_named_pipe_is_refused_at_once_not_waited_on(tmp_path, read):
    """Opening a FIFO for reading waits for a writer forever; only regular files may be opened."""
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    outcome: list = []

    def attempt() -> None:
        try:
            outcome.append(read(fifo))
        except ImageUnreadable as error:
            outcome.append(error)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():  # release the reader blocked in open() so the thread ends, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(timeout=10)
        pytest.fail(f"{read.__name__} waited on a named pipe")
    if read is probe_image_file:
        assert outcome == [False]
    else:
        assert isinstance(outcome[0], ImageUnreadable)
        assert "photo.jpg cannot be read: it is a named pipe, not a regular file" in str(outcome[0])


# --- folder scanning helpers ----------------------------------------------------------------


def test_inspect_reads_the_header_only(tmp_path):
    path = tmp_path / "dog.webp"
    data = encode(noise(30, 20), "WEBP")
    path.write_bytes(data)
    header = inspect_image_file(path)
    assert (header.format, header.width, header.height, header.n_bytes) == ("WEBP", 30, 20, len(data))
    assert probe_image_file(path)
    # A truncated body passes the cheap header check; read_image_file is what refuses it.
    cut = tmp_path / "cut.png"
    cut.write_bytes(encode(noise(64, 64), "PNG")[:300])
    assert probe_image_file(cut)
    with pytest.raises(ImageUnreadable, match="cut.png is truncated or corrupt"):
        read_image_file(cut)


def test_supported_suffixes_any_case():
    assert {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"} == SUPPORTED_SUFFIXES
    assert is_image_path("a/B.JPG") and is_image_path("x.TiFf") and is_image_path("c.webp")
    assert not is_image_path("notes.txt") and not is_image_path("jpg")


def test_limits_are_validated_settings():
    with pytest.raises(ConfigError, match="Largest image"):
        DecodeLimits(max_pixels=0)
    with pytest.raises(ConfigError, match="Largest file"):
        DecodeLimits(max_bytes=-1)
    assert DecodeLimits().max_bytes == 25 * 2**20 and DecodeLimits().max_pixels == 40_000_000


# --- resizing for a model -------------------------------------------------------------------


def test_resize_is_half_pixel_bilinear_without_antialiasing():
    row = np.zeros((1, 2, 3), np.uint8)
    row[0, 1] = 100
    wider = resize_for_model(row, (1, 4))
    assert wider.dtype == np.float32
    assert wider[0, :, 0].tolist() == [0.0, 25.0, 75.0, 100.0]
    # Downsizing 4 -> 2 samples between pixel pairs (0|1 and 2|3); an antialiasing filter
    # would also mix in the neighbours.
    four = np.array([[[0] * 3, [100] * 3, [200] * 3, [40] * 3]], np.uint8)
    assert resize_for_model(four, (1, 2))[0, :, 0].tolist() == [50.0, 120.0]


def test_resize_keeps_0_to_255_and_takes_images_or_arrays():
    image = Image.new("RGB", (50, 30), (255, 255, 255))
    resized = resize_for_model(image, 16)
    assert resized.shape == (16, 16, 3) and resized.max() == 255.0
    assert resize_for_model(np.asarray(image), (10, 20)).shape == (10, 20, 3)
    with pytest.raises(ConfigError):
        resize_for_model(image, 0)
    with pytest.raises(ConfigError):
        resize_for_model(np.zeros((4, 4)), 2)


# --- no byte string escapes as anything but ImageUnreadable ---------------------------------


def _corpus() -> list[bytes]:
    base = noise(16, 12, seed=7)
    exif = Image.Exif()
    exif[0x0112] = 6
    return [
        encode(base, "JPEG"),
        encode(base, "JPEG", progressive=True),
        encode(base, "JPEG", exif=exif.tobytes()),
        encode(base.convert("CMYK"), "JPEG"),
        encode(base, "PNG"),
        encode(base.convert("RGBA"), "PNG"),
        encode(base.convert("P"), "PNG"),
        encode(Image.fromarray(np.full((12, 16), 40000, np.uint16)), "PNG"),
        encode(base.convert("P"), "GIF", save_all=True, append_images=[base.convert("P")]),
        encode(base, "WEBP"),
        encode(base, "WEBP", lossless=True),
        encode(base, "BMP"),
        encode(base, "TIFF"),
        encode(base, "TIFF", compression="tiff_lzw"),
        encode(base, "TIFF", compression="jpeg"),
        encode(Image.fromarray(np.ones((12, 16), np.float32)), "TIFF"),
    ]


CORPUS = _corpus()
SMALL_LIMITS = DecodeLimits(max_pixels=1_000_000)


def assert_decodes_or_refuses(data: bytes) -> None:
    try:
        image = decode_image(data, "fuzz", SMALL_LIMITS)
    except ImageUnreadable as error:
        assert str(error).startswith("fuzz ")
        return
    pixels = np.asarray(image)
    assert image.mode == "RGB" and pixels.dtype == np.uint8 and pixels.ndim == 3
    assert pixels.shape[2] == 3


@st.composite
def mutated_images(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        if action == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            data[position] = draw(st.integers(0, 255))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[position : position + draw(st.integers(1, 64))]
        if not data:
            data = bytearray(b"\x00")
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_never_escape(data):
    assert_decodes_or_refuses(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_images())
def test_mutated_real_images_never_escape(data):
    assert_decodes_or_refuses(data)


def test_decoded_images_carry_no_orientation_tag_to_apply_twice():
    """Pixels come back upright, so nothing downstream may rotate them again (exif_transpose)."""
    from PIL import ImageOps

    upright = np.zeros((20, 40, 3), np.uint8)
    upright[:, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    buffer = io.BytesIO()
    Image.fromarray(upright).save(buffer, format="JPEG", exif=exif, quality=95)
    decoded = decode_image(buffer.getvalue(), "tagged.jpg")
    assert decoded.size == (20, 40)
    assert ImageOps.exif_transpose(decoded).size == decoded.size
