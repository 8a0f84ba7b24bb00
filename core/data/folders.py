"""The folder source, the demo set (a folder of drawn images) and the datasets made in the app (folders the app
keeps, see ``core.datasets``): listing, checks and pipeline.

A folder holds one sub-folder of images per class, either split by the person (``train/`` and ``test/``)
or split here by seed. Listing reads image headers only (``probe_image_file``); TensorFlow is imported
only inside ``folder_pipeline``, so a page can list and describe a folder cheaply.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import datasets, demo
from core.class_names import format_class_name
from core.config import DataConfig
from core.data import image_cache
from core.data.decoding import decode_in_parallel, decoder_for
from core.data.info import NAMED_IN_MESSAGES, DatasetInfo, Splits, finish_pipeline
from core.errors import DataUnavailable, ImageUnreadable
from core.images import SUPPORTED_SUFFIXES, probe_image_file, read_image_file, resize_for_model
from core.progress import Progress

MIN_IMAGES_PER_CLASS = 2
"""A class needs one image to train on and one to test on; with fewer it is learned blind or never measured."""


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


def _counts(labels: list[int], n: int) -> list[int]:
    tally = Counter(labels)
    return [tally.get(i, 0) for i in range(n)]


def _check_classes(
    root: Path | str,
    names: list[str],
    train: list[tuple[Path, int]],
    test: list[tuple[Path, int]],
    skipped: dict[str, int],
    split_folders: bool,
    fix: str = "Add images to these folders, or remove them.",
) -> None:
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
            f"on and one to test on: {', '.join(problems[:NAMED_IN_MESSAGES])}{more}. {fix}"
        )


def scan_folder(config: DataConfig) -> FolderListing:
    """List a folder source: ``train/`` + ``test/`` sub-trees, else class folders split by seed.

    Accepts the Stanford Dogs archive layout (``Images/n02085620-Chihuahua/*.jpg``). Files that are
    not readable images are skipped and counted, never fatal; a class left with fewer than
    ``MIN_IMAGES_PER_CLASS`` readable images, or none to train or test on, is refused by name.
    """
    root = Path(config.location).expanduser()
    if root.is_file():
        raise DataUnavailable(
            f"{root.name} is a file, not a folder: give the folder that holds one sub-folder "
            f"of images per class (perhaps {root.parent}), or pick the demo dataset."
        )
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
            splits[split] = [
                (f, index[d.name]) for d in _class_folders(root / split) for f in readable(_image_files(d), d.name)
            ]
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


def scan_local(config: DataConfig) -> FolderListing:
    """List a dataset made in the app (``local:<name>``): its class folders, split like a folder's.

    Images imported from a zip's ``test/`` folder carry a test mark and are its test images; the classes without
    any are split by the data seed, each image by its own rank (a hash of its content and the seed), so moving or
    removing one image changes no other image's split: an image the model trained on never slips into the test
    split because another one was relabelled. Every file passed the safe decoder when it was added, so nothing
    is probed here.
    """
    name = config.location
    stored = datasets.images(name)
    names = datasets.summary(name).class_names
    index = {class_name: i for i, class_name in enumerate(names)}
    by_class: dict[int, list[datasets.StoredImage]] = {}
    for image in stored:
        by_class.setdefault(index[image.class_name], []).append(image)
    train, test = [], []
    for label in range(len(names)):
        images = by_class.get(label, [])
        if any(image.test for image in images):
            test += [(image.path, label) for image in images if image.test]
            train += [(image.path, label) for image in images if not image.test]
            continue
        order = sorted(images, key=lambda image: _split_rank(image.digest, config.seed))
        n_test = _test_count(len(images), config.test_fraction)
        test += [(image.path, label) for image in order[:n_test]]
        train += [(image.path, label) for image in order[n_test:]]
    if len(names) < 2:
        raise DataUnavailable(
            f"The dataset '{name}' has {len(names)} class{'es' if len(names) != 1 else ''}; a model needs at least "
            "two to tell apart. Add a class on the Data page."
        )
    _check_classes(
        f"the dataset '{name}'", names, train, test, {}, False, fix="Add images to these classes on the Data page."
    )
    return FolderListing(
        class_names=names,
        train=_balanced_subset(train, config.max_train_images, config.seed),
        test=_balanced_subset(test, config.max_test_images, config.seed + 1),
        skipped=0,
    )


def _split_rank(digest: str, seed: int) -> str:
    """An image's place in its class's seeded order: the first ones by this rank are its test images."""
    return hashlib.sha256(f"{seed}:{digest}".encode()).hexdigest()


def _listing(
    config: DataConfig, image_size: int, progress: Progress | None = None, *, generate: bool = True
) -> FolderListing:
    """The files of a folder source or a dataset made in the app; for the demo set, the files it has or will
    have once drawn."""
    if config.kind == "local":
        return scan_local(config)
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


# ---------------------------------------------------------------- pipeline


def load_file(path: bytes, size: int) -> tuple[np.ndarray, bool]:
    """Decode and resize one file for the pipeline; a file that fails here is dropped, not fatal.

    Public because it is exactly what training was fed: prediction is tested against it.
    """
    try:
        image = read_image_file(Path(path.decode()))
        return resize_for_model(image, size).round().clip(0, 255).astype(np.uint8), True
    except ImageUnreadable:
        return np.zeros((size, size, 3), np.uint8), False


def folder_pipeline(items: list[tuple[Path, int]], image_size: int):
    """A ``tf.data`` pipeline of ``(float32 image, int64 label)`` from listed files; undecodable ones dropped.

    Read from the decoded-image cache when the same files were decoded at this size before; otherwise decoded
    (TensorFlow's decoders in parallel where they read a file as ``load_file`` does, ``load_file`` elsewhere) and
    written to that cache on the first full pass, when it fits."""
    key = image_cache.split_key(items, image_size)
    cached = image_cache.load(key)
    if cached is not None:
        return finish_pipeline(image_cache.cached_dataset(cached), len(cached.labels), image_size, in_memory=False)
    paths = [str(p) for p, _ in items]
    labels = np.array([label for _, label in items], dtype=np.int64)
    decoders = [decoder_for(path) for path in paths]
    ds = decode_in_parallel(paths, labels, decoders, image_size, lambda path: load_file(path, image_size))
    if image_cache.fits(len(items), image_size):
        ds = image_cache.written_dataset(ds, key, capacity=len(items), image_size=image_size)
    return finish_pipeline(ds, len(items), image_size)


# ---------------------------------------------------------------- what sources.py dispatches to


def load_folder(config: DataConfig, image_size: int, progress: Progress | None = None) -> Splits:
    """Train and test pipelines of a folder source or the demo set (drawn first if it is not on disk yet)."""
    listing = _listing(config, image_size, progress)
    info = _listing_info(config, listing)
    return Splits(folder_pipeline(listing.train, image_size), folder_pipeline(listing.test, image_size), info)


def test_files(config: DataConfig) -> list[Path]:
    """The test split's files in pipeline order (the pipeline drops only files that fail to decode)."""
    return [path for path, _ in _listing(config, 0, generate=False).test]


def split_files(config: DataConfig, image_size: int) -> FolderListing:
    """Both splits' files in pipeline order (the demo set's at ``image_size``, listed without drawing it)."""
    return _listing(config, image_size, generate=False)


def describe_folder(config: DataConfig) -> DatasetInfo:
    """Class names and split sizes from the listing alone; the demo set is not drawn."""
    return _listing_info(config, _listing(config, 0, generate=False))


def folder_samples(config: DataConfig, count: int, seed: int, size: int) -> list[tuple[np.ndarray, str]]:
    """A seeded handful of training images with their class names; unreadable picks are left out."""
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


def check_folder(config: DataConfig) -> list[str]:
    """Refuse a folder a run would fail on; returns the warnings to show.

    The folder is listed (headers only) and decoded only until one image of each class decodes in each split.
    """
    listing = scan_local(config) if config.kind == "local" else scan_folder(config)
    damaged = _check_decodable(listing)
    warnings = _listing_info(config, listing).warnings
    if damaged:
        warnings.append(
            f"{damaged} more file(s) have a readable header but damaged data and will be skipped "
            "(found while checking a few per class; there may be more)."
        )
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
                raise DataUnavailable(
                    f"None of the {len(paths)} {split} images of '{listing.class_names[label]}' "
                    f"can be decoded; the first: {first_error}"
                )
    return failed
