"""The entry points: load, describe, sample or check any data source, whatever its kind.

Each function dispatches on ``DataConfig.kind`` to the demo set and folder source (``core.data.folders``)
or to TFDS (``core.data.tfds``), so a caller never needs to know which source it holds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from core import datasets, demo
from core.config import DataConfig
from core.data.folders import (
    FolderListing,
    check_folder,
    describe_folder,
    folder_samples,
    load_folder,
    split_files,
    test_files,
)
from core.data.info import DatasetInfo, Splits
from core.data.tfds import check_tfds, load_tfds, tfds_samples
from core.errors import DataUnavailable
from core.images import SUPPORTED_SUFFIXES
from core.progress import Progress


def load_splits(config: DataConfig, image_size: int, progress: Progress | None = None) -> Splits:
    """Train and test pipelines (unbatched, float32 0..255, resized) and their description."""
    if config.kind == "tfds":
        return load_tfds(config, image_size)
    return load_folder(config, image_size, progress)


def describe(config: DataConfig) -> DatasetInfo:
    """Class names and split sizes, without building pipelines (cheap for folders and the demo set)."""
    if config.kind == "tfds":
        return load_tfds(config, 32).info
    return describe_folder(config)


def sample_images(config: DataConfig, count: int = 9, seed: int = 0, size: int = 128) -> list[tuple[np.ndarray, str]]:
    """A seeded handful of training images with their class names, for the sample grid."""
    if config.kind == "tfds":
        return tfds_samples(config, count, seed, size)
    return folder_samples(config, count, seed, size)


def check_source(config: DataConfig) -> list[str]:
    """Refuse, before a run is created, data the run would fail on; returns the warnings to show.

    Cheap on purpose: the demo set is not drawn, a TFDS dataset is looked up but not loaded, and a folder is
    listed (headers only) and decoded only until one image of each class decodes in each split.
    """
    if config.kind == "demo":
        return []
    if config.kind == "tfds":
        check_tfds(config.location)
        return []
    return check_folder(config)


def data_fingerprint(config: DataConfig) -> str:
    """What a source's files look like, for caches keyed by the data (features, predictions): every image file's
    path, size and modification time, hashed. A photo replaced under the same name, moved to another class or
    removed changes it; for the demo set, its drawing version. TFDS datasets are named by the config."""
    if config.kind == "demo":
        return f"demo-v{demo.DEMO_VERSION}"
    if config.kind == "local":
        files = [(image.ref, image.path) for image in datasets.images(config.location)]
    elif config.kind == "folder":
        root = Path(config.location).expanduser()
        found = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
        files = [(str(path.relative_to(root)), path) for path in found] if root.is_dir() else []
    else:
        return ""
    digest = hashlib.sha256()
    for name, path in files:
        stat = path.stat()
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def test_image_files(config: DataConfig) -> list[Path]:
    """The files of the test split in pipeline order, for sources made of files (folders, datasets made in the
    app): what a page needs to act on the file behind a test image."""
    if config.kind not in ("folder", "local"):
        raise DataUnavailable(f"The test images of {config.source} are not files you can change here.")
    return test_files(config)


def image_files(config: DataConfig, image_size: int) -> FolderListing:
    """Both splits' files in pipeline order, for sources made of files (the demo set, folders, datasets made in
    the app): what a page needs to show the image behind a row of features, and its file."""
    if config.kind == "tfds":
        raise DataUnavailable(
            f"The images of {config.source} are not files on this machine, so they cannot be shown one by one here. "
            "Pick the demo set, a folder of photos or a dataset made in the app on the Data page."
        )
    return split_files(config, image_size)
