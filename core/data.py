"""Data sources: the built-in demo set, your own folder of photos, and TFDS datasets.

Every source ends as the same thing: train and test ``tf.data`` pipelines of
``(float32 image in 0..255 resized to the backbone's resolution, int64 label)`` plus a
``DatasetInfo`` with people's class names. This is the only module that imports
tensorflow_datasets; TensorFlow itself is imported lazily so pages can describe a dataset
(class names, counts, sample images) without paying for it.

Command line: ``python -m core.data --download stanford_dogs`` downloads and prepares a TFDS dataset
(the Data page's Download button, from a terminal).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlparse

import numpy as np

from core import demo
from core.config import DataConfig
from core.errors import DataUnavailable, ImageUnreadable, TransferLabError
from core.home import data_home
from core.imagenet import dog_breed_names
from core.images import SUPPORTED_SUFFIXES, probe_image_file, read_image_file, resize_for_model

Progress = Callable[[int, int, str], None]

# TFDS image-classification datasets the notebook mentions, with the split used for testing.
TFDS_TEST_SPLITS = {"stanford_dogs": "test", "cifar10": "test", "cifar100": "test", "food101": "validation"}
# Keep decoded uint8 images in memory when the split is smaller than this; stream from disk otherwise.
CACHE_IN_MEMORY_BYTES = 1_500_000_000
WNID_FOLDER = re.compile(r"^n\d{8}-(.+)$")
MIN_IMAGES_PER_CLASS = 2
"""A class needs one image to train on and one to test on; with fewer it is learned blind or never measured."""
UNBALANCED_RATIO = 3
"""Warn when the largest class has more than this many times the training images of the smallest."""
NAMED_IN_MESSAGES = 5


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
        """What a person should know before training on this data: skipped files, classes left out, imbalance."""
        found = []
        if self.skipped_files:
            found.append(f"{self.skipped_files} file(s) could not be read as images and were skipped.")
        for counts, split, consequence in ((self.train_counts, "training", "the model cannot learn them"),
                                           (self.test_counts, "test", "their accuracy is never measured")):
            empty = [name for name, count in zip(self.class_names, counts) if count == 0]
            if counts and empty:
                found.append(f"{len(empty)} of {self.num_classes} classes have no {split} images "
                              f"({_named(empty)}), so {consequence}: raise the number of {split} images to "
                              f"at least {self.num_classes}, or use them all.")
        present = [(count, name) for name, count in zip(self.class_names, self.train_counts) if count]
        if len(present) > 1:
            (least, small), (most, big) = min(present), max(present)
            if most > UNBALANCED_RATIO * least:
                found.append(f"The classes are unbalanced: '{big}' has {most} training images and '{small}' only "
                             f"{least}, so the model will favour the big classes; add images to the small ones "
                             "if you can.")
        return found


@dataclass(frozen=True)
class Splits:
    """Unbatched train/test pipelines plus their description."""

    train: Any
    test: Any
    info: DatasetInfo


def _named(items: list[str]) -> str:
    shown = ", ".join(f"'{item}'" for item in items[:NAMED_IN_MESSAGES])
    return shown + (f" and {len(items) - NAMED_IN_MESSAGES} more" if len(items) > NAMED_IN_MESSAGES else "")


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


def _test_count(n: int, fraction: float) -> int:
    """Test images of a class of ``n``: the fraction, rounded, but at least one and never all of them."""
    return min(n - 1, max(1, int(round(n * fraction)))) if n >= MIN_IMAGES_PER_CLASS else 0


def _check_classes(root: Path, names: list[str], train: list[tuple[Path, int]], test: list[tuple[Path, int]],
                   skipped: dict[str, int], split_folders: bool) -> None:
    """Refuse classes a model could not learn or be measured on, naming each one and what it holds."""
    train_counts = _counts([label for _, label in train], len(names))
    test_counts = _counts([label for _, label in test], len(names))
    problems = []
    for name, n_train, n_test in zip(names, train_counts, test_counts):
        total = n_train + n_test
        if total >= MIN_IMAGES_PER_CLASS and n_train and n_test:
            continue
        held = f"'{name}' has {total or 'no readable image'}"
        if split_folders and total:
            held += f" ({n_train or 'none'} in train, {n_test or 'none'} in test)"
        if skipped.get(name):
            held += f" ({skipped[name]} file(s) could not be read)"
        problems.append(held)
    if problems:
        more = f" and {len(problems) - NAMED_IN_MESSAGES} more" if len(problems) > NAMED_IN_MESSAGES else ""
        where = "in both train/ and test/" if split_folders else "in its folder"
        raise DataUnavailable(
            f"Every class of {root} needs at least {MIN_IMAGES_PER_CLASS} readable images {where}, one to train "
            f"on and one to test on: {', '.join(problems[:NAMED_IN_MESSAGES])}{more}. Add images to these "
            "folders, or remove them.")


def scan_folder(config: DataConfig) -> FolderListing:
    """List a folder source: ``train/`` + ``test/`` sub-trees, else class folders split by seed.

    Accepts the Stanford Dogs archive layout (``Images/n02085620-Chihuahua/*.jpg``). Files that are
    not readable images are skipped and counted, never fatal; a class left with fewer than
    ``MIN_IMAGES_PER_CLASS`` readable images, or none to train or test on, is refused by name.
    """
    root = Path(config.location).expanduser()
    if root.is_file():
        raise DataUnavailable(f"{root.name} is a file, not a folder: give the folder that holds one sub-folder "
                              f"of images per class (perhaps {root.parent}), or pick the demo dataset.")
    if not root.is_dir():
        raise DataUnavailable(f"The folder {root} does not exist. Check the path, or pick the demo dataset.")
    if (root / "Images").is_dir() and not (root / "train").is_dir():
        root = root / "Images"
    skipped: Counter[str] = Counter()

    def readable(files: list[Path], name: str) -> list[Path]:
        good = [f for f in files if probe_image_file(f)]
        skipped[name] += len(files) - len(good)
        return good

    split_folders = (root / "train").is_dir() and (root / "test").is_dir()
    if split_folders:
        names = sorted({p.name for split in ("train", "test") for p in _class_folders(root / split)})
        index = {name: i for i, name in enumerate(names)}
        splits = {}
        for split in ("train", "test"):
            splits[split] = [(f, index[d.name]) for d in _class_folders(root / split)
                             for f in readable(_image_files(d), d.name)]
        train, test = splits["train"], splits["test"]
    else:
        folders = _class_folders(root)
        names = [d.name for d in folders]
        rng = np.random.default_rng(config.seed)
        train, test = [], []
        for label, folder in enumerate(folders):
            files = readable(_image_files(folder), folder.name)
            order = rng.permutation(len(files))
            n_test = _test_count(len(files), config.test_fraction)
            test += [(files[i], label) for i in order[:n_test]]
            train += [(files[i], label) for i in order[n_test:]]
    if len(names) < 2:
        raise DataUnavailable(
            f"{root} needs at least two sub-folders of images, one per class "
            "(e.g. photos/beagle/*.jpg, photos/samoyed/*.jpg)."
        )
    _check_classes(root, names, train, test, skipped, split_folders)
    return FolderListing(
        class_names=[format_class_name(n) for n in names],
        train=_balanced_subset(train, config.max_train_images, config.seed),
        test=_balanced_subset(test, config.max_test_images, config.seed + 1),
        skipped=sum(skipped.values()),
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
        f"`python -m core.data --download {name}` in the app's .venv), or point TFDS_DATA_DIR / TRANSFER_LAB_HOME at a "
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


def _tfds_builder(name: str) -> Any:
    """TFDS' builder for ``name`` (offline, nothing loaded); an unknown name gets the closest known one."""
    import difflib

    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name)
    except Exception as error:  # noqa: BLE001 - tfds raises several types for unknown names
        known = [*TFDS_TEST_SPLITS, *tfds.list_builders(with_community_datasets=False)]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"Did you mean 'tfds:{close[0]}'?" if close else "Try 'stanford_dogs', 'cifar10' or 'food101'."
        raise DataUnavailable(f"TFDS has no dataset called '{name}'. {hint}") from error


def _load_tfds(config: DataConfig, image_size: int):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    name = config.location
    builder = _tfds_builder(name)
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

    try:
        builder = tfds.builder(name, data_dir=str(tfds_data_dirs()[0]))
    except Exception as error:  # noqa: BLE001 - tfds raises several types for unknown names
        raise DataUnavailable(f"TFDS has no dataset called '{name}'. Try 'stanford_dogs', 'cifar10' or "
                              "'food101'.") from error
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
    try:
        builder.download_and_prepare()
    except Exception as error:  # noqa: BLE001 - network and archive errors come in many types
        detail = " ".join(str(error).split())[:200]
        raise DataUnavailable(f"Downloading '{name}' failed ({type(error).__name__}: {detail}). Check the "
                              "connection and the free disk space, then try again.") from error
    if progress:
        progress(3, 3, f"{name} is ready")
    return Path(builder.data_dir)


# ---------------------------------------------------------------- before a run

def check_source(config: DataConfig) -> list[str]:
    """Refuse, before a run is created, data the run would fail on; returns the warnings to show.

    Cheap on purpose: the demo set is not drawn, a TFDS dataset is looked up but not loaded, and a folder is
    listed (headers only) and decoded only until one image of each class decodes in each split.
    """
    if config.kind == "demo":
        return []
    if config.kind == "tfds":
        _tfds_builder(config.location)
        if _prepared_dir(config.location) is None:
            raise DataUnavailable(_not_prepared_message(config.location))
        return []
    listing = scan_folder(config)
    damaged = _check_decodable(listing)
    warnings = _listing_info(config, listing).warnings
    if damaged:
        warnings.append(f"{damaged} more file(s) have a readable header but damaged data and will be skipped "
                        "(found while checking a few per class; there may be more).")
    return warnings


def _check_decodable(listing: FolderListing) -> int:
    """Decode each class's files, split by split, until one decodes; returns how many failed on the way."""
    failed = 0
    for split, items in (("training", listing.train), ("test", listing.test)):
        by_class: dict[int, list[Path]] = {}
        for path, label in items:
            by_class.setdefault(label, []).append(path)
        for label, paths in sorted(by_class.items()):
            first_error = None
            for path in paths:
                try:
                    read_image_file(path)
                    break
                except ImageUnreadable as error:
                    failed += 1
                    first_error = first_error or error
            else:
                raise DataUnavailable(f"None of the {len(paths)} {split} images of '{listing.class_names[label]}' "
                                      f"can be decoded; the first: {first_error}")
    return failed


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


# ---------------------------------------------------------------- command line

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core.data",
        description="Download and prepare a TFDS dataset, as the Data page's Download button does: into "
                    "$TFDS_DATA_DIR when set, else the app's data directory (datasets/tfds). "
                    f"Known to the app: {', '.join(TFDS_TEST_SPLITS)}.")
    parser.add_argument("--download", metavar="NAME", required=True,
                        help="The TFDS dataset to download, e.g. stanford_dogs (about 750 MB).")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Progress lines on stdout; a one-line error on stderr and exit status 2 when offline or unknown."""
    parser = _parser()
    args = parser.parse_args(argv)

    def progress(done: int, total: int, message: str) -> None:
        print(f"[{done}/{total}] {message}", flush=True)

    try:
        path = download_tfds(args.download, progress=progress)
    except TransferLabError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print(f"Ready in {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
