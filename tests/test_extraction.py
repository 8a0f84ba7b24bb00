"""The input pipeline of folders: TensorFlow's decoders give the safe reader's pixels on the files routed to them,
every other file still goes through ``core.images``, broken files are skipped and counted, and the decoded-image
cache is used, rebuilt when damaged and replaced when the data changes. Tiny images, a handful of files."""

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import data, feature_cache
from core.config import DataConfig
from core.data import decoding, folders, image_cache

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

SIZE = 32  # the smallest image size a model accepts


def noise(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    """Smooth colour gradients with a little noise: photo-like, so JPEG keeps them close."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
    pixels = np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    return image if mode == "RGB" else image.convert(mode)


def save(path: Path, image: Image.Image, fmt: str, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, **options)
    return path


def old_path(path: Path) -> np.ndarray | None:
    """What the pipeline fed before TensorFlow's decoders: ``load_file`` (the safe reader), None if dropped."""
    image, ok = folders.load_file(str(path).encode(), SIZE)
    return image if ok else None


def through_pipeline(paths: list[Path]) -> list[np.ndarray]:
    ds = folders.folder_pipeline([(path, 0) for path in paths], SIZE)
    return [image for image, _ in ds.as_numpy_iterator()]


@pytest.fixture
def plain_files(tmp_path) -> list[Path]:
    """Files TensorFlow reads: baseline and progressive RGB and grey JPEGs, RGB and grey PNGs."""
    return [
        save(tmp_path / "a.jpg", noise(40, 30, 1), "JPEG", quality=90),
        save(tmp_path / "b.jpg", noise(37, 53, 2, "L"), "JPEG"),
        save(tmp_path / "c.jpg", noise(64, 48, 3), "JPEG", progressive=True),
        save(tmp_path / "d.png", noise(30, 40, 4), "PNG"),
        save(tmp_path / "e.png", noise(20, 20, 5, "L"), "PNG"),
    ]


@pytest.fixture
def awkward_files(tmp_path) -> list[Path]:
    """Files TensorFlow would read wrongly or not at all: the safe reader's."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate: TensorFlow would hand the photo out sideways
    sixteen = Image.fromarray(np.arange(24 * 16, dtype=np.uint16).reshape(16, 24) * 170)
    alpha = noise(30, 20, 9).convert("RGBA")
    alpha.putalpha(Image.fromarray(np.tile(np.arange(30, dtype=np.uint8) * 8, (20, 1)), "L"))
    return [
        save(tmp_path / "rotated.jpg", noise(40, 24, 6), "JPEG", exif=exif.tobytes()),
        save(tmp_path / "cmyk.jpg", noise(32, 32, 7).convert("CMYK"), "JPEG"),
        save(tmp_path / "photo.webp", noise(28, 36, 8), "WEBP"),
        save(tmp_path / "deep.png", sixteen, "PNG"),
        save(tmp_path / "alpha.png", alpha, "PNG"),
        save(tmp_path / "palette.png", noise(16, 16, 10).convert("P"), "PNG"),
        save(tmp_path / "scan.tif", noise(16, 16, 11), "TIFF"),
    ]


def test_tensorflow_decodes_plain_jpegs_and_pngs_to_the_safe_readers_pixels(plain_files):
    assert [decoding.decoder_for(path) for path in plain_files] == [decoding.JPEG] * 3 + [decoding.PNG] * 2
    for path, image in zip(plain_files, through_pipeline(plain_files), strict=True):
        expected = old_path(path)
        difference = np.abs(image.astype(np.int16) - expected.astype(np.int16))
        assert image.dtype == np.float32 and difference.max() <= 2 and difference.mean() < 0.5, path.name


def test_files_tensorflow_cannot_read_right_go_through_the_safe_reader(awkward_files):
    assert {decoding.decoder_for(path) for path in awkward_files} == {decoding.SAFE}
    for path, image in zip(awkward_files, through_pipeline(awkward_files), strict=True):
        np.testing.assert_array_equal(image, old_path(path), err_msg=path.name)
    rotated = through_pipeline(awkward_files[:1])[0]
    sideways = tf.image.resize(tf.io.decode_jpeg(awkward_files[0].read_bytes()), (SIZE, SIZE)).numpy()
    assert np.abs(rotated - sideways).mean() > 10  # the orientation really was applied


def test_broken_files_are_skipped_and_counted_and_the_rest_keep_their_order(tmp_path):
    root = tmp_path / "photos"
    for label, name in enumerate(("cats", "dogs")):
        for i in range(3):
            save(root / name / f"{i}.jpg", noise(120, 90, 10 * label + i), "JPEG")
    whole = (root / "cats" / "0.jpg").read_bytes()
    (root / "cats" / "cut.jpg").write_bytes(whole[: len(whole) // 2])  # a readable header, damaged data
    (root / "dogs" / "fake.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")  # no readable header
    config = DataConfig(source=f"folder:{root}", test_fraction=0.3, seed=0)
    splits = data.load_splits(config, SIZE)
    assert splits.info.skipped_files == 1 and "1 file(s) could not be read" in splits.info.warnings[0]
    listing = folders.scan_folder(config)
    for split, items in (("train", listing.train), ("test", listing.test)):
        expected = [(old_path(path), label) for path, label in items if old_path(path) is not None]
        got = list(getattr(splits, split).as_numpy_iterator())
        assert [label for _, label in got] == [label for _, label in expected]
        for (image, _), (want, _) in zip(got, expected):
            assert np.abs(image - want).max() <= 2
    assert old_path(root / "cats" / "cut.jpg") is None
    assert through_pipeline([root / "cats" / "cut.jpg", root / "cats" / "1.jpg"]).__len__() == 1


def test_features_through_the_new_pipeline_equal_the_old_paths(plain_files, awkward_files):
    from core.catalog import LITE0
    from core.config import ModelConfig
    from core.models import build_frozen

    keras.utils.set_random_seed(0)
    model = build_frozen(ModelConfig(backbone=LITE0, regime="frozen", weights="none", image_size=SIZE), 2)
    files = plain_files + awkward_files
    ds = folders.folder_pipeline([(path, i % 2) for i, path in enumerate(files)], SIZE)
    features = np.concatenate([batch for batch, _ in feature_cache.extract(model, ds, batch_size=4)])
    old = np.stack([old_path(path) for path in files]).astype(np.float32)
    expected = feature_cache.feature_extractor(model)(old, training=False).numpy()
    scale = float(np.abs(expected).max())
    assert features.shape == expected.shape and scale > 0
    np.testing.assert_allclose(features / scale, expected / scale, rtol=0, atol=0.02)


# ---------------------------------------------------------------------------------------------- the image cache


@pytest.fixture
def folder(tmp_path) -> DataConfig:
    root = tmp_path / "pets"
    for label, name in enumerate(("cats", "dogs")):
        for i in range(4):
            save(root / name / f"{i}.jpg", noise(30 + i, 26, 20 * label + i), "JPEG")
    return DataConfig(source=f"folder:{root}", test_fraction=0.25, seed=1)


def entries() -> list[Path]:
    """Complete entries' arrays (not the temporary files of one being written)."""
    folder = image_cache.cache_folder()
    found = folder.glob("*.npy") if folder.is_dir() else []
    return sorted(path for path in found if image_cache.PARTIAL not in path.name)


def test_a_second_pipeline_reads_the_cache_instead_of_decoding(folder, monkeypatch):
    first = data.load_splits(folder, SIZE)
    next(iter(first.train))  # a partial pass leaves no entry
    assert entries() == []
    decoded = list(first.train.as_numpy_iterator())
    list(first.test.as_numpy_iterator())
    assert len(entries()) == 2
    size = feature_cache.cache_size_bytes()
    assert size >= sum(entry.stat().st_size for entry in entries())

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folders, "decode_in_parallel", no_decoding)
    again = list(data.load_splits(folder, SIZE).train.as_numpy_iterator())
    assert [label for _, label in again] == [label for _, label in decoded]
    for (image, _), (want, _) in zip(again, decoded):
        np.testing.assert_array_equal(image, want)
    assert feature_cache.clear_cache() >= size and entries() == [] and feature_cache.cache_size_bytes() == 0


def test_a_truncated_entry_is_rebuilt(folder):
    decoded = list(data.load_splits(folder, SIZE).train.as_numpy_iterator())
    [entry] = entries()
    with open(entry, "r+b") as handle:
        handle.truncate(entry.stat().st_size // 2)
    key = entry.stem
    assert image_cache.load(key) is None and not entry.exists()  # detected and deleted
    rebuilt = list(data.load_splits(folder, SIZE).train.as_numpy_iterator())
    assert len(rebuilt) == len(decoded) and image_cache.load(key) is not None
    for (image, _), (want, _) in zip(rebuilt, decoded):
        np.testing.assert_array_equal(image, want)


def test_a_changed_photo_makes_a_new_entry(folder):
    splits = data.load_splits(folder, SIZE)
    list(splits.train.as_numpy_iterator())
    [old] = entries()
    listing = folders.scan_folder(folder)
    changed = listing.train[0][0]
    save(changed, noise(44, 44, 99), "JPEG")
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    images = list(data.load_splits(folder, SIZE).train.as_numpy_iterator())
    assert len(entries()) == 2 and old in entries()
    assert np.abs(images[0][0] - old_path(changed)).max() <= 2


def test_a_new_entry_evicts_the_least_recently_used_ones_beyond_the_limit(folder, monkeypatch):
    splits = data.load_splits(folder, SIZE)
    list(splits.train.as_numpy_iterator())
    [train] = entries()
    monkeypatch.setattr(image_cache, "MAX_BYTES", train.stat().st_size)  # room for one of the two
    list(splits.test.as_numpy_iterator())
    assert len(entries()) == 1 and train not in entries()


def test_an_unwritable_cache_folder_only_means_no_cache(folder, transfer_lab_home):
    (transfer_lab_home / "cache").mkdir(parents=True, exist_ok=True)
    (transfer_lab_home / "cache" / "images").write_text("a file where the folder should be")
    images = list(data.load_splits(folder, SIZE).train.as_numpy_iterator())
    assert len(images) == data.describe(folder).num_train


def test_entries_are_stored_as_numpy_arrays(folder):
    list(data.load_splits(folder, SIZE).test.as_numpy_iterator())
    [entry] = entries()
    array = np.load(io.BytesIO(entry.read_bytes()))
    assert array.dtype == np.uint8 and array.shape[1:] == (SIZE, SIZE, 3)
