"""Cached backbone features: the frozen regime in seconds per epoch instead of minutes.

With a frozen backbone only the small head learns, yet the notebook's way pushes every image through
the whole EfficientNet in every epoch. Here each image goes through the backbone once per *view*; the
pooled features (1280 numbers for B0 and Lite0) are stored as memory-mapped ``.npy`` arrays under
``cache/features/`` in the data directory, and the head (``build_frozen``'s own BatchNormalization ->
Dropout -> Dense layers, with the same optimiser) learns on them.

- Augmentation still regularises: every training image is augmented into K views (``cached_views``)
  and epoch e trains on view e mod K. Without augmentation there is one view; the test features are
  always one unaugmented view. A view is extracted just before the first epoch that uses it, so the
  first curve points come after one view's extraction, not K.
- A cache entry is keyed by a hash of everything that decides its numbers (``FeatureSource``): the data,
  the split, the backbone and the values of its weights, the image size, the augmentation, the view and
  the compute precision. The learning rate, weight decay, epochs, batch size and seed are not in it, so
  the cells of a hyperparameter grid, which run one after another, extract once and share the arrays.
- An entry is written under a temporary name and renamed when complete; its metadata JSON (shape,
  dtype, count, size, sha256, labels), written last, marks it complete. An entry whose array does not
  match its metadata is deleted and extracted again, never used.
- The run saves the full model (the backbone and the head it trained, the model ``build_frozen``
  makes) as ``model_last.keras`` / ``model_best.keras``, so Evaluate, Classify, fine-tuning and export
  cannot tell the difference.

Two honest differences from the notebook's way: features come from the backbone in inference mode, so
its stochastic depth (random block skipping) never applies; and a run sees K augmented versions of each
image, reused every K epochs, instead of a fresh one every epoch.

TensorFlow is imported inside functions: the Home page imports ``cache_size_bytes`` and ``clear_cache``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import weakref
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from core import demo, runs
from core.augment import build_augmenter
from core.config import AugmentConfig, DataConfig
from core.errors import DataUnavailable, RunError
from core.home import data_home, subdir
from core.images import SUPPORTED_SUFFIXES
from core.models import build_model, compile_model, parameter_counts
from core.catalog import TOP_K

if TYPE_CHECKING:
    from core.data import Splits
    from core.config import RunConfig

Progress = Callable[[int, int, str], None]

CACHE_DIR = ("cache", "features")
FORMAT_VERSION = 1
EXTRACT_BATCH = 32  # images per forward pass while extracting; features do not depend on it
PHASE = "extracting features"
FEATURE_LAYER = "avg_pool"  # build_frozen's pooling layer: its output is what the head sees
HEAD_LAYERS = ("head_bn", "top_dropout", "pred")  # build_frozen's head, in order
VIEW_SEED_STEP = 7_919  # views of one config draw with seeds seed, seed + 7919, ... (never a layer's offset)
PROGRESS_EVERY_S = 1.0


class ExtractionStopped(Exception):
    """A stop request arrived while features were being extracted."""


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
        return {"format": FORMAT_VERSION, "keras": _version("keras"), "data": data,
                "data_fingerprint": self.data_fingerprint, "split": self.split, "backbone": self.backbone,
                "weights": self.weights, "image_size": self.image_size,
                "augment": self.augment.to_dict() if augmenting else None,
                "view": self.view if augmenting else 0, "compute_dtype": self.compute_dtype}

    @property
    def key(self) -> str:
        text = json.dumps(self.describe(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:40]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""


def data_fingerprint(config: DataConfig) -> str:
    """For a folder: every image file's path, size and modification time, hashed (a photo replaced under the
    same name changes it); for the demo set, its drawing version. TFDS datasets are named by the config."""
    if config.kind == "demo":
        return f"demo-v{demo.DEMO_VERSION}"
    if config.kind != "folder":
        return ""
    root = Path(config.location).expanduser()
    digest = hashlib.sha256()
    if root.is_dir():
        for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES):
            stat = path.stat()
            digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


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
        if (meta["format"] != FORMAT_VERSION or array_path.stat().st_size != meta["bytes"]
                or _sha256(array_path) != meta["sha256"]):
            raise ValueError("the array does not match its metadata")
        features = np.load(array_path, mmap_mode="r")
        if (list(features.shape) != meta["shape"] or str(features.dtype) != meta["dtype"]
                or not 0 < count <= features.shape[0] or labels.shape != (count,)):
            raise ValueError("the array's shape does not match its metadata")
    except (OSError, ValueError, KeyError, TypeError):
        _remove_entry(key)
        return None
    return CachedFeatures(key, features[:count], labels)


def write_entry(key: str, batches: Iterable[tuple[np.ndarray, np.ndarray]], *, capacity: int, dim: int,
                description: dict[str, Any]) -> CachedFeatures:
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
                raise DataUnavailable(f"The data source gave more than the {capacity} images it listed; it changed "
                                      "while features were being extracted. Start the run again.")
            out[start:start + len(features)] = features
            labels.extend(int(label) for label in batch_labels)
        out.flush()
        del out
        if not labels:
            raise DataUnavailable("No image of this split could be read, so there is nothing to extract features "
                                  "from. Check the data source on the Data page.")
        meta = {"format": FORMAT_VERSION, "shape": [capacity, dim], "dtype": "float32", "count": len(labels),
                "bytes": partial.stat().st_size, "sha256": _sha256(partial), "labels": labels,
                "created_at": time.time(), "source": description}
        os.replace(partial, array_path)
        partial_meta.write_text(json.dumps(meta))
        os.replace(partial_meta, meta_path)
    finally:
        partial.unlink(missing_ok=True)
        partial_meta.unlink(missing_ok=True)
    features = np.load(array_path, mmap_mode="r")
    return CachedFeatures(key, features[:len(labels)], np.asarray(labels, dtype=np.int64))


def cache_size_bytes() -> int:
    """Disk space the feature cache takes (the Home page shows it)."""
    folder = cache_folder()
    if not folder.is_dir():
        return 0
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file())


def _written_by_live_process(path: Path) -> bool:
    pid = path.name.partition(".partial-")[2].partition(".")[0]
    if not pid.isdigit():
        return False
    return runs.process_alive(int(pid))


def clear_cache() -> int:
    """Delete every cached feature array (they are rebuilt on demand); returns the bytes freed.
    An array a live process is still writing is left alone."""
    folder = cache_folder()
    if not folder.is_dir():
        return 0
    freed = 0
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


def head_model(model: Any) -> Any:
    """The frozen model's head as a model of its own on pooled features. It shares the frozen model's layers,
    so training it trains the frozen model's head and nothing needs copying back."""
    import keras

    missing = [name for name in (FEATURE_LAYER, *HEAD_LAYERS) if name not in {layer.name for layer in model.layers}]
    if missing:
        raise RunError(f"This model has no {', '.join(missing)} layer(s): cached features need the frozen "
                       "regime's model (build_frozen).")
    inputs = keras.Input(shape=(model.get_layer(FEATURE_LAYER).output.shape[-1],), name="features")
    x = inputs
    for name in HEAD_LAYERS:
        x = model.get_layer(name)(x)
    return keras.Model(inputs, x, name=f"{model.name}_head")


_traced_extractors: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _traced_extractor(model: Any) -> Callable[[Any], Any]:
    """The backbone up to its pooled features as one traced function per model: tracing a whole
    EfficientNet takes seconds, so every view and split of a model shares one trace."""
    import tensorflow as tf

    if model not in _traced_extractors:
        extractor = feature_extractor(model)
        _traced_extractors[model] = tf.function(lambda images: tf.cast(extractor(images, training=False),
                                                                       tf.float32), reduce_retracing=True)
    return _traced_extractors[model]


def _augmentation(augment: AugmentConfig | None) -> Callable[[Any], Any] | None:
    """One view's augmentation, applied batch after batch in order (not in a parallel tf.data map), so a
    view is the same every time it is drawn."""
    import tensorflow as tf

    if not is_augmenting(augment):
        return None
    augmenter = build_augmenter(augment)
    return tf.function(lambda images: augmenter(images, training=True))


def extract(model: Any, images: Any, *, augment: AugmentConfig | None = None,
            batch_size: int = EXTRACT_BATCH, on_batch: Callable[[int], None] | None = None
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(pooled features, labels) batches of a frozen model for an unbatched (image, label) dataset, augmented
    when ``augment`` enables a transformation. Every batch is padded to ``batch_size`` so one trace serves all."""
    import tensorflow as tf

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
    common = dict(data=config.data, backbone=config.model.backbone,
                  weights=weights_identity(model, config.model.effective_weights),
                  image_size=config.model.effective_image_size, data_fingerprint=data_fingerprint(config.data),
                  compute_dtype=keras.config.dtype_policy().compute_dtype)
    views = view_count(config)
    train = [FeatureSource(split="train", augment=view_augment(config.augment, view) if augmenting else None,
                           view=view, **common) for view in range(views)]
    return train, FeatureSource(split="test", **common)


def prepare_features(config: RunConfig, model: Any, splits: Splits, *, progress: Progress | None = None,
                     views: Iterable[int] | None = None, ready: FeatureSet | None = None) -> FeatureSet:
    """Load the run's cached features, extracting the missing ones first. ``views``: the training views that
    must be there on return (default: all); others are loaded if cached, else left ``None`` for later.
    ``ready``: a set from an earlier call, whose entries are kept as they are. ``progress(done, total,
    message)`` counts extraction batches; it may raise (``ExtractionStopped``) to abandon the extraction."""
    train_sources, test_source = feature_sources(config, model)
    required = set(range(len(train_sources)) if views is None else views)
    known: dict[str, CachedFeatures] = {}
    if ready is not None:
        known = {source.key: entry for source, entry in zip(train_sources, ready.train_views) if entry is not None}
        known[test_source.key] = ready.test
    wanted = [(source, splits.train, splits.info.num_train, view in required)
              for view, source in enumerate(train_sources)]
    wanted.append((test_source, splits.test, splits.info.num_test, True))
    found = {source.key: known[source.key] if source.key in known else load_entry(source.key)
             for source, *_ in wanted}
    missing = [(source, images, count) for source, images, count, needed in wanted
               if needed and found[source.key] is None]
    total = sum(math.ceil(count / EXTRACT_BATCH) for _, _, count in missing)
    done = 0
    dim = int(model.get_layer(FEATURE_LAYER).output.shape[-1])
    for source, images, count in missing:
        if count <= 0:
            raise DataUnavailable(f"The {source.split} split of {config.data.source} has no images.")
        what = (f"view {source.view + 1} of {len(train_sources)} of the {count} training images"
                if source.split == "train" else f"the {count} test images")
        message = f"Extracting {model.name} features: {what}"

        def advance(_images: int, message: str = message) -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total, message)

        if progress is not None:
            progress(done, total, message)
        found[source.key] = write_entry(
            source.key, extract(model, images, augment=source.augment, on_batch=advance),
            capacity=count, dim=dim, description=source.describe())
    train_views = [found[source.key] for source in train_sources]
    present = [view for view in train_views if view is not None]
    if any(not np.array_equal(view.labels, present[0].labels) for view in present):
        raise RunError("The cached training views disagree on their images (the data changed between them). "
                       "Clear the feature cache on the Home page and start the run again.")
    return FeatureSet(train_views, found[test_source.key])


def segments(first_epoch: int, epochs: int, feature_set: FeatureSet) -> Iterator[tuple[int, int]]:
    """Runs of consecutive epochs (start, stop) for ``fit``: a new run needs view e only at epoch e, so
    the views are extracted one at a time between the first K epochs and the curves start after one view
    rather than K. A run whose views are all cached is one segment."""
    views = len(feature_set.train_views)
    pending = set(feature_set.missing_views())
    start = first_epoch
    while start < epochs:
        pending.discard(view_for_epoch(start, views))
        stop = start + 1
        while stop < epochs and view_for_epoch(stop, views) not in pending:
            stop += 1
        yield start, stop
        start = stop


# ---------------------------------------------------------------------------------------------- head training

def epoch_order(count: int, batch_size: int, *, seed: int, epoch: int, drop_remainder: bool) -> list[np.ndarray]:
    """Each batch's row indices for one epoch: a new seeded shuffle every epoch, every image once (bar a
    dropped remainder). Indices are sorted within a batch, which reads the memory map in order."""
    order = np.random.default_rng([seed, epoch]).permutation(count)
    stop = count - count % batch_size if drop_remainder and count >= batch_size else count
    return [np.sort(order[start:start + batch_size]) for start in range(0, stop, batch_size)]


def view_for_epoch(epoch: int, views: int) -> int:
    """Epoch e (0-based) trains on view e mod K."""
    return epoch % views


def feature_batches(feature_set: FeatureSet, num_classes: int, *, batch_size: int, seed: int, first_epoch: int,
                    epochs: int, drop_remainder: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(features, one-hot labels) for epochs ``first_epoch``..``epochs - 1``, one after the other."""
    one_hot = np.eye(num_classes, dtype=np.float32)[feature_set.labels]
    views = feature_set.train_views
    for epoch in range(first_epoch, epochs):
        features = views[view_for_epoch(epoch, len(views))].features
        for rows in epoch_order(len(one_hot), batch_size, seed=seed, epoch=epoch, drop_remainder=drop_remainder):
            yield np.asarray(features[rows]), one_hot[rows]


def _training_dataset(feature_set: FeatureSet, num_classes: int, *, batch_size: int, seed: int, first_epoch: int,
                      epochs: int, drop_remainder: bool) -> Any:
    """One stream of batches for the whole of ``fit``: with ``steps_per_epoch`` Keras keeps reading the same
    iterator from epoch to epoch, so the stream decides which view each epoch sees."""
    import tensorflow as tf

    dim = feature_set.train_views[0].features.shape[1]
    signature = (tf.TensorSpec((None, dim), tf.float32), tf.TensorSpec((None, num_classes), tf.float32))
    ds = tf.data.Dataset.from_generator(
        lambda: feature_batches(feature_set, num_classes, batch_size=batch_size, seed=seed,
                                first_epoch=first_epoch, epochs=epochs, drop_remainder=drop_remainder),
        output_signature=signature)
    return ds.prefetch(2)


def _test_dataset(test: CachedFeatures, num_classes: int, batch_size: int) -> Any:
    import tensorflow as tf

    one_hot = np.eye(num_classes, dtype=np.float32)[test.labels]
    return tf.data.Dataset.from_tensor_slices((np.asarray(test.features), one_hot)).batch(batch_size)


def _compile_like(model: Any, optimizer: Any) -> None:
    """The frozen model shares the head's optimizer, so its saved file carries the optimizer's state
    (resuming restores Adam's moments) and loads like any compiled run model."""
    import keras

    model.compile(optimizer=optimizer, loss="categorical_crossentropy",
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                           keras.metrics.TopKCategoricalAccuracy(k=TOP_K, name="top5_accuracy")])


def _models_for(config: RunConfig, run_id: str | None, num_classes: int, done: int,
                jit_compile: bool | str) -> tuple[Any, Any]:
    """The frozen model (new, or the run's last checkpoint when resuming) and its compiled head."""
    from core.training import resumed_model

    restored = None
    if done:
        model = resumed_model(run_id, done, num_classes)
        restored = getattr(model, "optimizer", None)
    else:
        model = build_model(config.model, num_classes)
    head = head_model(model)
    compile_model(head, config.effective_learning_rate,
                  config.effective_weight_decay, jit_compile=jit_compile)
    if restored is not None and restored.built:
        targets, sources = head.optimizer.variables, restored.variables
        if [v.shape for v in targets] == [v.shape for v in sources]:
            for target, source in zip(targets, sources):
                target.assign(source)
    _compile_like(model, head.optimizer)
    return model, head


def _cache_keras_saving_skipsets() -> None:
    """Keras 3.15's saver stores the attribute skip-sets it computes under one name and looks them up under
    another, so every save rebuilds them by constructing reference objects: about a third of the time of a
    frozen model's checkpoint, which dominates an epoch on cached features. Store them where it looks."""
    try:
        from keras.src.backend.common import global_state
        from keras.src.saving import saving_lib
    except ImportError:
        return
    if not hasattr(saving_lib, "get_attr_skipset"):
        return
    for obj_type in ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss"):
        name = f"saving_attr_skiplist_{obj_type}"
        if global_state.get_global_attribute(name) is None:
            global_state.set_global_attribute(name, saving_lib.get_attr_skipset(obj_type))


def _extraction_progress(run_id: str | None, progress: Progress | None, epoch: int) -> Progress:
    """Forwards extraction progress to the caller and to the run store (throttled, under the 1-based
    ``epoch`` it precedes), and turns a stop request into ``ExtractionStopped`` within one batch."""
    last_write = {"at": 0.0}

    def report(done: int, total: int, message: str) -> None:
        if progress is not None:
            progress(done, total, message)
        if run_id is None:
            return
        if runs.stop_requested(run_id):
            raise ExtractionStopped
        if time.monotonic() - last_write["at"] >= PROGRESS_EVERY_S or done >= total:
            runs.record_progress(run_id, phase=PHASE, epoch=epoch, batch=done, batches=total)
            last_write["at"] = time.monotonic()

    return report


def uses_feature_cache(config: RunConfig) -> bool:
    """The engine trains on cached features for frozen runs that ask for it (the default)."""
    return config.model.regime == "frozen" and config.train.feature_cache


def train_on_features(config: RunConfig, run_id: str | None, strategy: Any, device: str, *,
                      progress: Progress | None = None, callbacks: Sequence[Any] = ()
                      ) -> tuple[dict[str, float | None], bool]:
    """``core.training.train`` for a cached frozen run: the same records, checkpoints, TensorBoard logs and
    stop handling, with the backbone run once per view instead of once per epoch. Returns (last epoch's
    metrics, stopped)."""
    import keras
    import tensorflow as tf

    from core import checkpoints, devices, training
    from core.data import load_splits

    model_cfg, train_cfg = config.model, config.train
    note = (lambda phase: runs.record_progress(run_id, phase=phase)) if run_id else (lambda phase: None)
    stop_asked = (lambda: runs.stop_requested(run_id)) if run_id else (lambda: False)
    recorded = (lambda: training.last_recorded(run_id)) if run_id else dict

    precision = devices.apply_precision(train_cfg.mixed_precision)
    keras.utils.set_random_seed(train_cfg.seed)
    note("loading data")
    splits = load_splits(config.data, model_cfg.effective_image_size, progress=progress)
    info = splits.info
    done = checkpoints.epochs_done(run_id) if run_id else 0
    epochs = config.effective_epochs
    if stop_asked():
        return recorded(), True

    note("building model")
    with strategy.scope():
        model, head = _models_for(config, run_id, info.num_classes, done, devices.jit_compile_setting())
    if stop_asked():
        return recorded(), True
    note(PHASE)
    views = view_count(config)
    try:
        feature_set = prepare_features(config, model, splits, views=[view_for_epoch(done, views)],
                                       progress=_extraction_progress(run_id, progress, done + 1))
    except ExtractionStopped:
        return recorded(), True

    num_train = len(feature_set.labels)
    batch_size = train_cfg.batch_size
    drop = training.drop_remainder(num_train, batch_size)
    batches = training.batches_per_epoch(num_train, batch_size)
    test_ds = _test_dataset(feature_set.test, info.num_classes, batch_size)
    if strategy is not tf.distribute.get_strategy():
        training._work_around_keras_under_strategies(head, test_ds)

    hooks: list[Any] = []
    recorder = None
    if run_id:
        folder = runs.run_folder(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        total, trainable = parameter_counts(model)
        shown_device = device if precision == "float32" else f"{device}, {precision}"
        runs.record_setup(run_id, device=f"{shown_device}, cached features", total_params=total,
                          trainable_params=trainable)
        recorder = training.RunRecorder(run_id, num_train=num_train, batch_size=batch_size, batches=batches)
        _cache_keras_saving_skipsets()
        hooks += [training.EpochCheckpoint(folder, runs.get_run(run_id).best_val_accuracy, saves=model,
                                           timing=recorder.epoch_timing), recorder,
                  *training.tensorboard_logger(folder / runs.TENSORBOARD_DIR)]
    if progress is not None:
        hooks.append(training.EpochReporter(progress, epochs))
    hooks += list(callbacks)

    history = None
    for start, stop in segments(done, epochs, feature_set):
        if start > done:
            if (recorder and recorder.stopping) or head.stop_training:
                break
            view = view_for_epoch(start, views)
            if feature_set.train_views[view] is None:
                note(PHASE)
                try:
                    feature_set = prepare_features(config, model, splits, views=[view], ready=feature_set,
                                                   progress=_extraction_progress(run_id, progress, start + 1))
                except ExtractionStopped:
                    return recorded(), True
        note("training")
        train_ds = _training_dataset(feature_set, info.num_classes, batch_size=batch_size, seed=train_cfg.seed,
                                     first_epoch=start, epochs=stop, drop_remainder=drop)
        history = head.fit(train_ds, steps_per_epoch=batches, validation_data=test_ds, epochs=stop,
                           initial_epoch=start, callbacks=hooks, verbose=0, shuffle=False)
    return training.fit_outcome(run_id, history, recorder)
