"""The TFDS source: where prepared datasets are looked for, loading one, and downloading one on request.

The only module of Transfer Lab that imports tensorflow_datasets, and only inside functions, together with
TensorFlow: importing this module is cheap. Loading never downloads; ``download_tfds`` is an explicit action
(the Data page's Download button, or ``python -m core.data --download NAME``).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from core.class_names import format_class_name, stanford_dogs_class_names
from core.config import DataConfig
from core.data.info import DatasetInfo, Splits, finish_pipeline
from core.data_home import data_home
from core.errors import DataUnavailable
from core.progress import Progress

# TFDS image-classification datasets the notebook mentions, with the split used for testing.
TFDS_TEST_SPLITS = {"stanford_dogs": "test", "cifar10": "test", "cifar100": "test", "food101": "validation"}


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


def check_tfds(name: str) -> None:
    """Refuse an unknown or not yet downloaded dataset: looked up, not loaded."""
    _tfds_builder(name)
    if _prepared_dir(name) is None:
        raise DataUnavailable(_not_prepared_message(name))


def load_tfds(config: DataConfig, image_size: int) -> Splits:
    """Train and test pipelines of a prepared TFDS dataset (never downloaded here) and their description."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    name = config.location
    builder = _tfds_builder(name)
    test_split = TFDS_TEST_SPLITS.get(name, "test")
    data_dir = _prepared_dir(name) or tfds_data_dirs()[0]
    try:
        (train, test), info = tfds.load(
            name,
            split=["train", test_split],
            as_supervised=True,
            with_info=True,
            data_dir=str(data_dir),
            download=False,
            shuffle_files=False,
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
        source=config.source,
        class_names=_tfds_class_names(name, info),
        num_train=num_train,
        num_test=num_test,
    )
    train = finish_pipeline(train.map(resize, num_parallel_calls=tf.data.AUTOTUNE), num_train, image_size)
    test = finish_pipeline(test.map(resize, num_parallel_calls=tf.data.AUTOTUNE), num_test, image_size)
    return Splits(train, test, info_out)


def tfds_samples(config: DataConfig, count: int, seed: int, size: int) -> list[tuple[np.ndarray, str]]:
    """A seeded handful of training images with their class names (loads the dataset)."""
    splits = load_tfds(config, size)
    rows = splits.train.shuffle(256, seed=seed).take(count)
    return [(image.astype(np.uint8), splits.info.class_names[int(label)]) for image, label in rows.as_numpy_iterator()]


def download_tfds(name: str, progress: Progress | None = None, timeout_s: float = 5.0) -> Path:
    """Download and prepare a TFDS dataset: an explicit action, never a side effect of loading.

    The network is checked first with a short timeout: offline, TFDS itself retries for minutes.
    """
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=str(tfds_data_dirs()[0]))
    except Exception as error:  # noqa: BLE001 - tfds raises several types for unknown names
        raise DataUnavailable(
            f"TFDS has no dataset called '{name}'. Try 'stanford_dogs', 'cifar10' or 'food101'."
        ) from error
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
        raise DataUnavailable(
            f"Downloading '{name}' failed ({type(error).__name__}: {detail}). Check the "
            "connection and the free disk space, then try again."
        ) from error
    if progress:
        progress(3, 3, f"{name} is ready")
    return Path(builder.data_dir)
