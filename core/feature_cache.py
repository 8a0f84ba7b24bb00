"""The feature cache: a frozen backbone's pooled features of a run's images, extracted once and kept on disk.

With a frozen backbone only the small head learns, yet the notebook's way pushes every image through the
whole EfficientNet in every epoch. The cached-features training path (``core.training.cached_features``)
instead pushes each image through the backbone once per *view* and trains the head on what this module
keeps: the pooled features (1280 numbers for B0 and Lite0) as memory-mapped ``.npy`` arrays under
``cache/features/`` in the data directory.

- A view is one augmented version of every training image: with augmentation a run uses K of them
  (``cached_views``, each drawn with a seed of its own), without it one; the test features are always
  one unaugmented view.
- A cache entry is keyed by a hash of everything that decides its numbers (``FeatureSource``): the data,
  the split, the backbone and the values of its weights, the image size, the augmentation, the view and
  the compute precision. The learning rate, weight decay, epochs, batch size and seed are not in it, so
  the cells of a hyperparameter grid, which run one after another, extract once and share the arrays.
- An entry is written under a temporary name and renamed when complete; its metadata JSON (shape,
  dtype, count, size, sha256, labels), written last, marks it complete. An entry whose array does not
  match its metadata is deleted and extracted again, never used.

Features come from the backbone in inference mode, so its stochastic depth (random block skipping)
never applies to them.

The decoded images features are extracted from have a cache of their own (``core.data.image_cache``);
``cache_size_bytes`` and ``clear_cache`` count and clear it with the features.

TensorFlow is imported inside functions: the Home page imports ``cache_size_bytes`` and ``clear_cache``.

The module is one concept, the cache, and longer than most for it: what an entry is keyed by, how it is
written, checked and cleared, and how it is filled belong together, since each relies on the others' rules.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core import runs
from core.augment import build_augmenter
from core.config import AugmentConfig, DataConfig
from core.data import data_fingerprint, image_cache
from core.data_home import data_home, subdir
from core.errors import DataUnavailable, RunError
from core.machine_defaults import this_machine
from core.progress import Progress

if TYPE_CHECKING:
    from core.config import RunConfig
    from core.data import Splits

CACHE_DIR = ("cache", "features")
FORMAT_VERSION = 1
FEATURE_LAYER = "avg_pool"  # build_frozen's pooling layer: its output is what the head sees
HEAD_LAYERS = ("head_bn", "top_dropout", "pred")  # build_frozen's head, in order
VIEW_SEED_STEP = 7_919  # views of one config draw with seeds seed, seed + 7919, ... (never a layer's offset)


# ---------------------------------------------------------------------------------------------- keys


def is_augmenting(augment: AugmentConfig | None) -> bool:
    return augment is not None and bool(augment.enabled_transforms())


@dataclass(frozen=True)
class FeatureSource:
    """Everything that decides the numbers in one cached array, and nothing else."""

    data: DataConfig
    split: str  # "train" or "test"
    backbone: str
    weights: str  # the starting weights and a fingerprint of their values (see weights_identity)
    image_size: int
    augment: AugmentConfig | None = None  # None, or no enabled transformation: unaugmented
    view: int = 0  # which augmented version; always 0 when unaugmented
    data_fingerprint: str = ""  # what the data source's files look like (see data_fingerprint)
    compute_dtype: str = "float32"

    def describe(self) -> dict[str, Any]:
        augmenting = is_augmenting(self.augment)
        other_split_limit = "max_test_images" if self.split == "train" else "max_train_images"
        data = {name: value for name, value in self.data.to_dict().items() if name != other_split_limit}
        return {
            "format": FORMAT_VERSION,
            "keras": _version("keras"),
            "data": data,
            "data_fingerprint": self.data_fingerprint,
            "split": self.split,
            "backbone": self.backbone,
            "weights": self.weights,
            "image_size": self.image_size,
            "augment": self.augment.to_dict() if augmenting else None,
            "view": self.view if augmenting else 0,
            "compute_dtype": self.compute_dtype,
        }

    @property
    def key(self) -> str:
        text = json.dumps(self.describe(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:40]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""


def weights_identity(model: Any, weights: str | None) -> str:
    """The starting weights' name plus a hash of the backbone's values: 'imagenet', a file, or random weights
    drawn from a seed all land on the right entry, and weights that changed never reuse old features."""
    digest = hashlib.sha256()
    for layer in model.layers:
        if layer.name in HEAD_LAYERS:
            continue
        for value in layer.get_weights():
            digest.update(np.ascontiguousarray(value).tobytes())
    return f"{weights}@{digest.hexdigest()[:24]}"


def view_augment(augment: AugmentConfig, view: int) -> AugmentConfig:
    """The augmentation config that draws view ``view``: the same transformations, a seed of its own."""
    return augment.replace(seed=(augment.seed + VIEW_SEED_STEP * view) % (2**31 - 1))


# ---------------------------------------------------------------------------------------------- the store


@dataclass(frozen=True, eq=False)
class CachedFeatures:
    """One cached array: ``features[i]`` (float32, memory-mapped) is the image whose label is ``labels[i]``."""

    key: str
    features: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def cache_folder() -> Path:
    """Where the arrays are; created when the first one is written (reading needs no write)."""
    return data_home().joinpath(*CACHE_DIR)


def _entry_paths(key: str) -> tuple[Path, Path]:
    folder = cache_folder()
    return folder / f"{key}.npy", folder / f"{key}.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _remove_entry(key: str) -> None:
    for path in _entry_paths(key):
        path.unlink(missing_ok=True)


def load_entry(key: str) -> CachedFeatures | None:
    """A complete, intact entry; None (after deleting whatever is there) when it is missing, partial or corrupt."""
    array_path, meta_path = _entry_paths(key)
    if not meta_path.is_file():
        _remove_entry(key)  # an array without metadata was never finished
        return None
    try:
        meta = json.loads(meta_path.read_text())
        count = int(meta["count"])
        labels = np.asarray(meta["labels"], dtype=np.int64)
        if (
            meta["format"] != FORMAT_VERSION
            or array_path.stat().st_size != meta["bytes"]
            or _sha256(array_path) != meta["sha256"]
        ):
            raise ValueError("the array does not match its metadata")
        features = np.load(array_path, mmap_mode="r")
        if (
            list(features.shape) != meta["shape"]
            or str(features.dtype) != meta["dtype"]
            or not 0 < count <= features.shape[0]
            or labels.shape != (count,)
        ):
            raise ValueError("the array's shape does not match its metadata")
    except (OSError, ValueError, KeyError, TypeError):
        _remove_entry(key)
        return None
    return CachedFeatures(key, features[:count], labels)


def write_entry(
    key: str, batches: Iterable[tuple[np.ndarray, np.ndarray]], *, capacity: int, dim: int, description: dict[str, Any]
) -> CachedFeatures:
    """Stream (features, labels) batches into a new entry: a temporary memory-mapped file, renamed when
    complete, then its metadata. ``capacity`` rows are reserved; fewer may arrive (unreadable images)."""
    subdir(*CACHE_DIR)
    array_path, meta_path = _entry_paths(key)
    partial = array_path.with_name(f"{key}.partial-{os.getpid()}.npy")
    partial_meta = meta_path.with_name(f"{key}.partial-{os.getpid()}.json")
    try:
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(capacity, dim))
        labels: list[int] = []
        for features, batch_labels in batches:
            start = len(labels)
            if start + len(features) > capacity:
                raise DataUnavailable(
                    f"The data source gave more than the {capacity} images it listed; it changed "
                    "while features were being extracted. Start the run again."
                )
            out[start : start + len(features)] = features
            labels.extend(int(label) for label in batch_labels)
        out.flush()
        del out
        if not labels:
            raise DataUnavailable(
                "No image of this split could be read, so there is nothing to extract features "
                "from. Check the data source on the Data page."
            )
        meta = {
            "format": FORMAT_VERSION,
            "shape": [capacity, dim],
            "dtype": "float32",
            "count": len(labels),
            "bytes": partial.stat().st_size,
            "sha256": _sha256(partial),
            "labels": labels,
            "created_at": time.time(),
            "source": description,
        }
        os.replace(partial, array_path)
        partial_meta.write_text(json.dumps(meta))
        os.replace(partial_meta, meta_path)
    finally:
        partial.unlink(missing_ok=True)
        partial_meta.unlink(missing_ok=True)
    features = np.load(array_path, mmap_mode="r")
    return CachedFeatures(key, features[: len(labels)], np.asarray(labels, dtype=np.int64))


def cache_size_bytes() -> int:
    """Disk space the feature cache takes, with the decoded images it extracts from (the Home page shows it)."""
    folder = cache_folder()
    features = sum(path.stat().st_size for path in folder.iterdir() if path.is_file()) if folder.is_dir() else 0
    return features + image_cache.size_bytes()


def _written_by_live_process(path: Path) -> bool:
    pid = path.name.partition(".partial-")[2].partition(".")[0]
    if not pid.isdigit():
        return False
    return runs.process_alive(int(pid))


def clear_cache() -> int:
    """Delete every cached feature array and decoded-image entry (they are rebuilt on demand); returns the bytes
    freed. An array a live process is still writing is left alone."""
    folder = cache_folder()
    freed = image_cache.clear()
    if not folder.is_dir():
        return freed
    for path in folder.iterdir():
        if path.is_file() and not _written_by_live_process(path):
            freed += path.stat().st_size
            path.unlink(missing_ok=True)
        elif path.is_dir():
            freed += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            shutil.rmtree(path, ignore_errors=True)
    return freed


# ---------------------------------------------------------------------------------------------- extraction


def feature_extractor(model: Any) -> Any:
    """The frozen model up to its pooled features (a view of its layers, no copy)."""
    import keras

    return keras.Model(model.input, model.get_layer(FEATURE_LAYER).output, name="feature_extractor")


_traced_extractors: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _traced_extractor(model: Any) -> Callable[[Any], Any]:
    """The backbone up to its pooled features as one traced function per model: tracing a whole
    EfficientNet takes seconds, so every view and split of a model shares one trace."""
    import tensorflow as tf

    if model not in _traced_extractors:
        extractor = feature_extractor(model)
        _traced_extractors[model] = tf.function(
            lambda images: tf.cast(extractor(images, training=False), tf.float32), reduce_retracing=True
        )
    return _traced_extractors[model]


def _augmentation(augment: AugmentConfig | None) -> Callable[[Any], Any] | None:
    """One view's augmentation, applied batch after batch in order (not in a parallel tf.data map), so a
    view is the same every time it is drawn."""
    import tensorflow as tf

    if not is_augmenting(augment):
        return None
    augmenter = build_augmenter(augment)
    return tf.function(lambda images: augmenter(images, training=True))


def extraction_batch() -> int:
    """Images per forward pass on this machine (``core.machine_defaults``): 32 on a CPU, more on a GPU."""
    return this_machine().extraction_batch


def extract(
    model: Any,
    images: Any,
    *,
    augment: AugmentConfig | None = None,
    batch_size: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(pooled features, labels) batches of a frozen model for an unbatched (image, label) dataset, augmented
    when ``augment`` enables a transformation. Every batch is padded to ``batch_size`` (default: this machine's
    extraction batch) so one trace serves all."""
    import tensorflow as tf

    batch_size = batch_size or extraction_batch()
    forward = _traced_extractor(model)
    augmentation = _augmentation(augment)
    for batch_images, batch_labels in images.batch(batch_size).prefetch(tf.data.AUTOTUNE):
        count = int(batch_images.shape[0])
        if count < batch_size:
            batch_images = tf.pad(batch_images, [[0, batch_size - count], [0, 0], [0, 0], [0, 0]])
        if augmentation is not None:
            batch_images = augmentation(batch_images)
        yield forward(batch_images).numpy()[:count], batch_labels.numpy()
        if on_batch is not None:
            on_batch(count)


@dataclass(frozen=True)
class FeatureSet:
    """A run's cached features: K training views (same images, same order; ``None`` for a view not
    extracted yet) and the test split."""

    train_views: list[CachedFeatures | None]
    test: CachedFeatures

    @property
    def labels(self) -> np.ndarray:
        return next(view for view in self.train_views if view is not None).labels

    def missing_views(self) -> list[int]:
        return [index for index, view in enumerate(self.train_views) if view is None]


def view_count(config: RunConfig) -> int:
    """The training views a run uses: K with augmentation (fewer for a run of fewer than K epochs, since
    epoch e uses view e mod K), else one."""
    if not is_augmenting(config.augment):
        return 1
    return min(config.train.cached_views, config.effective_epochs)


def feature_sources(config: RunConfig, model: Any) -> tuple[list[FeatureSource], FeatureSource]:
    """The cache entries a run needs: its training views (K, or one per epoch when it has fewer) and its test
    split. A longer run later reuses these views and adds the missing ones."""
    import keras

    augmenting = is_augmenting(config.augment)
    common = dict(
        data=config.data,
        backbone=config.model.backbone,
        weights=weights_identity(model, config.model.effective_weights),
        image_size=config.model.effective_image_size,
        data_fingerprint=data_fingerprint(config.data),
        compute_dtype=keras.config.dtype_policy().compute_dtype,
    )
    views = view_count(config)
    train = [
        FeatureSource(
            split="train", augment=view_augment(config.augment, view) if augmenting else None, view=view, **common
        )
        for view in range(views)
    ]
    return train, FeatureSource(split="test", **common)


def prepare_features(
    config: RunConfig,
    model: Any,
    splits: Splits,
    *,
    progress: Progress | None = None,
    views: Iterable[int] | None = None,
    ready: FeatureSet | None = None,
) -> FeatureSet:
    """Load the run's cached features, extracting the missing ones first. ``views``: the training views that
    must be there on return (default: all); others are loaded if cached, else left ``None`` for later.
    ``ready``: a set from an earlier call, whose entries are kept as they are. ``progress(done, total,
    message)`` counts extraction batches; it may raise to abandon the extraction."""
    train_sources, test_source = feature_sources(config, model)
    required = set(range(len(train_sources)) if views is None else views)
    known: dict[str, CachedFeatures] = {}
    if ready is not None:
        known = {source.key: entry for source, entry in zip(train_sources, ready.train_views) if entry is not None}
        known[test_source.key] = ready.test
    wanted = [
        (source, splits.train, splits.info.num_train, view in required) for view, source in enumerate(train_sources)
    ]
    wanted.append((test_source, splits.test, splits.info.num_test, True))
    found = {source.key: known[source.key] if source.key in known else load_entry(source.key) for source, *_ in wanted}
    missing = [
        (source, images, count) for source, images, count, needed in wanted if needed and found[source.key] is None
    ]
    batch_size = extraction_batch()
    total = sum(math.ceil(count / batch_size) for _, _, count in missing)
    done = 0
    dim = int(model.get_layer(FEATURE_LAYER).output.shape[-1])
    for source, images, count in missing:
        if count <= 0:
            raise DataUnavailable(f"The {source.split} split of {config.data.source} has no images.")
        what = (
            f"view {source.view + 1} of {len(train_sources)} of the {count} training images"
            if source.split == "train"
            else f"the {count} test images"
        )
        message = f"Extracting {model.name} features: {what}"

        def advance(_images: int, message: str = message) -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total, message)

        if progress is not None:
            progress(done, total, message)
        found[source.key] = write_entry(
            source.key,
            extract(model, images, augment=source.augment, batch_size=batch_size, on_batch=advance),
            capacity=count,
            dim=dim,
            description=source.describe(),
        )
    train_views = [found[source.key] for source in train_sources]
    present = [view for view in train_views if view is not None]
    if any(not np.array_equal(view.labels, present[0].labels) for view in present):
        raise RunError(
            "The cached training views disagree on their images (the data changed between them). "
            "Clear the feature cache on the Home page and start the run again."
        )
    return FeatureSet(train_views, found[test_source.key])
