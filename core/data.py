"""Data sources: the built-in demo set, your own folder of photos, and TFDS datasets.

Every source ends as the same thing: train and test ``tf.data`` pipelines of
``(float32 image in 0..255 resized to the backbone's resolution, int64 label)`` plus a
``DatasetInfo`` with people's class names. This is the only module that imports
tensorflow_datasets; TensorFlow itself is imported lazily so pages can describe a dataset
(class names, counts, sample images) without paying for it.
"""

from __future__ import annotations

import os
import re
import socket
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import numpy as np

from core import demo
from core.config import DataConfig
from core.errors import DataUnavailable, ImageUnreadable
from core.home import data_home
from core.imagenet import dog_breed_names
from core.images import SUPPORTED_SUFFIXES, probe_image_file, read_image_file, resize_for_model

Progress = Callable[[int, int, str], None]

# TFDS image-classification datasets the notebook mentions, with the split used for testing.
TFDS_TEST_SPLITS = {"stanford_dogs": "test", "cifar10": "test", "cifar100": "test", "food101": "validation"}
# Keep decoded uint8 images in memory when the split is smaller than this; stream from disk otherwise.
CACHE_IN_MEMORY_BYTES = 1_500_000_000
WNID_FOLDER = re.compile(r"^n\d{8}-(.+)$")


@dataclass(frozen=True)
class DatasetInfo:
    """What a page needs to describe a dataset."""

    source: str
    class_names: list[str]
    num_train: int
    num_test: int
    skipped_files: int = 0
    train_counts: list[int] = field(default_factory=list)
    test_counts: list[int] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def warnings(self) -> list[str]:
        if self.skipped_files:
            return [f"{self.skipped_files} file(s) could not be read as images and were skipped."]
        return []


@dataclass(frozen=True)
class Splits:
    """Unbatched train/test pipelines plus their description."""

    train: Any
    test: Any
    info: DatasetInfo


def format_class_name(folder_name: str) -> str:
    """'n02085620-Chihuahua' -> 'Chihuahua'; 'golden_retriever' -> 'golden retriever'."""
    match = WNID_FOLDER.match(folder_name)
    name = match.group(1) if match else folder_name
    return name.replace("_", " ")


def stanford_dogs_class_names() -> list[str]:
    """The 120 breeds in TFDS label order (sorted by WordNet id), shipped so they work offline."""
    return list(dog_breed_names())


# ---------------------------------------------------------------- folders (and the demo set)

@dataclass(frozen=True)
class FolderListing:
    """Image files of a folder data source, already split and subset."""

    class_names: list[str]
    train: list[tuple[Path, int]]
    test: list[tuple[Path, int]]
    skipped: int


def _class_folders(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)


def _balanced_subset(items: list[tuple[Path, int]], limit: int | None, seed: int) -> list[tuple[Path, int]]:
    """A seeded subset that keeps every class represented: shuffle per class, then deal round-robin."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[tuple[Path, int]]] = {}
    for item in items:
        by_class.setdefault(item[1], []).append(item)
    queues = []
    for label in sorted(by_class):
        group = by_class[label]
        queues.append([group[i] for i in rng.permutation(len(group))])
    dealt = [queue[i] for i in range(max(map(len, queues), default=0)) for queue in queues if i < len(queue)]
    return dealt[:limit] if limit else dealt


def scan_folder(config: DataConfig) -> FolderListing:
    """List a folder source: ``train/`` + ``test/`` sub-trees, else class folders split by seed.

    Accepts the Stanford Dogs archive layout (``Images/n02085620-Chihuahua/*.jpg``). Files that are
    not readable images are skipped and counted, never fatal.
    """
    root = Path(config.location).expanduser()
    if not root.is_dir():
        raise DataUnavailable(f"The folder {root} does not exist. Check the path, or pick the demo dataset.")
    if (root / "Images").is_dir() and not (root / "train").is_dir():
        root = root / "Images"
    skipped = 0

    def readable(files: list[Path]) -> list[Path]:
        nonlocal skipped
        good = [f for f in files if probe_image_file(f)]
        skipped += len(files) - len(good)
        return good

    if (root / "train").is_dir() and (root / "test").is_dir():
        names = sorted({p.name for split in ("train", "test") for p in _class_folders(root / split)})
        index = {name: i for i, name in enumerate(names)}
        splits = {}
        for split in ("train", "test"):
            splits[split] = [(f, index[d.name]) for d in _class_folders(root / split) for f in readable(_image_files(d))]
        train, test = splits["train"], splits["test"]
    else:
        folders = _class_folders(root)
        names = [d.name for d in folders]
        rng = np.random.default_rng(config.seed)
        train, test = [], []
        for label, folder in enumerate(folders):
            files = readable(_image_files(folder))
            order = rng.permutation(len(files))
            n_test = int(round(len(files) * config.test_fraction)) if len(files) > 1 else 0
            test += [(files[i], label) for i in order[:n_test]]
            train += [(files[i], label) for i in order[n_test:]]
    if len(names) < 2 or not train:
        raise DataUnavailable(
            f"{root} needs at least two sub-folders of images, one per class "
            "(e.g. photos/beagle/*.jpg, photos/samoyed/*.jpg)."
        )
    return FolderListing(
        class_names=[format_class_name(n) for n in names],
        train=_balanced_subset(train, config.max_train_images, config.seed),
        test=_balanced_subset(test, config.max_test_images, config.seed + 1),
        skipped=skipped,
    )


def _listing(config: DataConfig, image_size: int, progress: Progress | None = None, *,
             generate: bool = True) -> FolderListing:
    """The files of a folder source; for the demo set, the files it has or will have once drawn."""
    if config.kind != "demo":
        return scan_folder(config)
    root = demo.demo_folder(image_size, progress) if generate else demo.folder_path(image_size)
    return FolderListing(
        class_names=list(demo.CLASS_NAMES),
        train=_balanced_subset(demo.split_items(root, "train"), config.max_train_images, config.seed),
        test=_balanced_subset(demo.split_items(root, "test"), config.max_test_images, config.seed + 1),
        skipped=0,
    )


def _listing_info(config: DataConfig, listing: FolderListing) -> DatasetInfo:
    n = len(listing.class_names)
    return DatasetInfo(
        source=config.source,
        class_names=listing.class_names,
        num_train=len(listing.train),
        num_test=len(listing.test),
        skipped_files=listing.skipped,
        train_counts=_counts([label for _, label in listing.train], n),
        test_counts=_counts([label for _, label in listing.test], n),
    )


def _counts(labels: list[int], n: int) -> list[int]:
    tally = Counter(labels)
    return [tally.get(i, 0) for i in range(n)]


def _load_file(path: bytes, size: int) -> tuple[np.ndarray, bool]:
    """Decode and resize one file for the pipeline; a file that fails here is dropped, not fatal."""
    try:
        image = read_image_file(Path(path.decode()))
        return resize_for_model(image, size).round().clip(0, 255).astype(np.uint8), True
    except ImageUnreadable:
        return np.zeros((size, size, 3), np.uint8), False


def _folder_pipeline(items: list[tuple[Path, int]], image_size: int):
    import tensorflow as tf

    paths = [str(p) for p, _ in items]
    labels = np.array([label for _, label in items], dtype=np.int64)
    ds = tf.data.Dataset.from_tensor_slices((paths, labels))

    def load(path, label):
        image, ok = tf.numpy_function(lambda p: _load_file(p, image_size), [path], [tf.uint8, tf.bool])
        image.set_shape((image_size, image_size, 3))
        ok.set_shape(())
        return image, label, ok

    def decoded(image, label, ok):
        return ok

    def drop_flag(image, label, ok):
        return image, label

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.filter(decoded).map(drop_flag)
    return _finish(ds, len(items), image_size)


def _finish(ds, count: int, image_size: int):
    """Cache small splits as uint8 (4x smaller than float), then hand out float32 0..255 images."""
    import tensorflow as tf

    if count * image_size * image_size * 3 <= CACHE_IN_MEMORY_BYTES:
        ds = ds.cache()

    def to_float(image, label):
        return tf.cast(image, tf.float32), label

    return ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)


# ---------------------------------------------------------------- TFDS

def tfds_data_dirs() -> list[Path]:
    """Where prepared TFDS data may already be: $TFDS_DATA_DIR, the app's own folder, TFDS' default."""
    dirs = []
    if os.environ.get("TFDS_DATA_DIR"):
        dirs.append(Path(os.environ["TFDS_DATA_DIR"]).expanduser())
    dirs.append(data_home() / "datasets" / "tfds")  # not created here: a read-only data directory is searched too
    dirs.append(Path("~/tensorflow_datasets").expanduser())
    return dirs


def _not_prepared_message(name: str) -> str:
    where = ", ".join(str(d) for d in tfds_data_dirs())
    return (
        f"The TFDS dataset '{name}' is not downloaded on this machine (looked in {where}). "
        "Connect to the internet and press 'Download' on the Data page (or run "
        f"`python -m core.data --download {name}`), or point TFDS_DATA_DIR / TRANSFER_LAB_HOME at a "
        "prepared copy, or use your own photos with 'folder:/path/to/photos', or the offline 'demo' dataset."
    )


def _prepared_dir(name: str) -> Path | None:
    import tensorflow_datasets as tfds

    for data_dir in tfds_data_dirs():
        try:
            if data_dir.is_dir() and tfds.builder(name, data_dir=str(data_dir)).is_prepared():
                return data_dir
        except Exception:  # noqa: BLE001 - a broken copy in one folder must not hide another folder
            continue
    return None


def _tfds_class_names(name: str, info: Any) -> list[str]:
    names = list(info.features["label"].names)
    if name == "stanford_dogs":
        return stanford_dogs_class_names()  # offline TFDS only knows '0'..'119'; same order once downloaded
    return [format_class_name(n) for n in names]


def _load_tfds(config: DataConfig, image_size: int):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    name = config.location
    try:
        builder = tfds.builder(name)
    except Exception as error:  # noqa: BLE001 - tfds raises several types for unknown names
        raise DataUnavailable(f"TFDS has no dataset called '{name}'. Try 'stanford_dogs', 'cifar10' or 'food101'.") from error
    test_split = TFDS_TEST_SPLITS.get(name, "test")
    data_dir = _prepared_dir(name) or tfds_data_dirs()[0]
    try:
        (train, test), info = tfds.load(
            name, split=["train", test_split], as_supervised=True, with_info=True,
            data_dir=str(data_dir), download=False, shuffle_files=False,
        )
    except (AssertionError, FileNotFoundError, tfds.core.DatasetNotFoundError) as error:
        raise DataUnavailable(_not_prepared_message(name)) from error
    del builder
    if config.max_train_images:
        train = train.take(config.max_train_images)
    if config.max_test_images:
        test = test.take(config.max_test_images)

    def resize(image, label):
        image = tf.image.resize(image, (image_size, image_size))
        if image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8), tf.cast(label, tf.int64)

    def split_size(split: str, limit: int | None) -> int:
        try:
            total = int(info.splits[split].num_examples)
        except Exception:  # noqa: BLE001 - mocked or partial metadata has no split sizes
            total = 0
        return min(total, limit) if limit and total else (total or (limit or 0))

    num_train = split_size("train", config.max_train_images)
    num_test = split_size(test_split, config.max_test_images)
    info_out = DatasetInfo(
        source=config.source, class_names=_tfds_class_names(name, info), num_train=num_train, num_test=num_test,
    )
    train = _finish(train.map(resize, num_parallel_calls=tf.data.AUTOTUNE), num_train, image_size)
    test = _finish(test.map(resize, num_parallel_calls=tf.data.AUTOTUNE), num_test, image_size)
    return train, test, info_out


def download_tfds(name: str, progress: Progress | None = None, timeout_s: float = 5.0) -> Path:
    """Download and prepare a TFDS dataset: an explicit action, never a side effect of loading.

    The network is checked first with a short timeout: offline, TFDS itself retries for minutes.
    """
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=str(tfds_data_dirs()[0]))
    host = urlparse(builder.info.homepage or "").hostname
    if progress:
        progress(0, 3, f"Checking the connection for {name}")
    if host:
        try:
            socket.create_connection((host, 443), timeout=timeout_s).close()
        except OSError as error:
            raise DataUnavailable(
                f"Cannot reach {host} to download '{name}': this machine looks offline. Connect and try again, "
                "or use a prepared copy (TFDS_DATA_DIR), a folder of photos, or the demo dataset."
            ) from error
    if progress:
        progress(1, 3, f"Downloading and preparing {name} (this can take a long time)")
    builder.download_and_prepare()
    if progress:
        progress(3, 3, f"{name} is ready")
    return Path(builder.data_dir)


# ---------------------------------------------------------------- the one entry point

def load_splits(config: DataConfig, image_size: int, progress: Progress | None = None) -> Splits:
    """Train and test pipelines (unbatched, float32 0..255, resized) and their description."""
    if config.kind == "tfds":
        train, test, info = _load_tfds(config, image_size)
        return Splits(train, test, info)
    listing = _listing(config, image_size, progress)
    info = _listing_info(config, listing)
    return Splits(_folder_pipeline(listing.train, image_size), _folder_pipeline(listing.test, image_size), info)


def describe(config: DataConfig) -> DatasetInfo:
    """Class names and split sizes, without building pipelines (cheap for folders and the demo set)."""
    if config.kind == "tfds":
        return _load_tfds(config, 32)[2]
    return _listing_info(config, _listing(config, 0, generate=False))


def sample_images(config: DataConfig, count: int = 9, seed: int = 0,
                  size: int = 128) -> list[tuple[np.ndarray, str]]:
    """A seeded handful of training images with their class names, for the sample grid."""
    if config.kind == "tfds":
        train, _, info = _load_tfds(config, size)
        rows = train.shuffle(256, seed=seed).take(count)
        return [(image.astype(np.uint8), info.class_names[int(label)]) for image, label in rows.as_numpy_iterator()]
    listing = _listing(config, size, generate=False)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(listing.train), size=min(count, len(listing.train)), replace=False)
    samples = []
    for i in picks:
        path, label = listing.train[int(i)]
        try:
            picture = demo.render_file(path, size) if config.kind == "demo" else read_image_file(path)
            image = resize_for_model(picture, size).round().clip(0, 255).astype(np.uint8)
        except ImageUnreadable:
            continue
        samples.append((image, listing.class_names[label]))
    return samples
