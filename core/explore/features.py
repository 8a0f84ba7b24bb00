"""The map's features: every train and test image of a dataset through one backbone, one point per image.

Three sources, one table (``FEATURE_SOURCES``): EfficientNet-Lite0 with ImageNet weights (what a frozen run's
head learns from), the same network with random weights (where training from scratch starts), and a run's own
backbone (after fine-tuning, its features moved). The vectors are the pooled features the feature cache keeps
(``core.feature_cache``): one unaugmented view of each split, under the same key a frozen run without
augmentation uses, so the map and such runs extract once and share the arrays.

Rows are in a stable order, the training split's files then the test split's, each in pipeline order: row
``num_train + k`` is test image ``k`` of the Evaluate page. TensorFlow and Keras are imported inside functions.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.catalog import LITE0
from core.config import DataConfig, ModelConfig
from core.data import data_fingerprint, image_files, load_splits
from core.errors import ConfigError, DataUnavailable, RunError
from core.feature_cache import (
    FEATURE_LAYER,
    FeatureSource,
    extract,
    extraction_batch,
    load_entry,
    weights_identity,
    write_entry,
)
from core.progress import Progress

if TYPE_CHECKING:
    from core.explore.settings import MapSettings

HEAD_CLASSES = 2  # the frozen model built for its features needs a head; its size changes no feature


@dataclass(frozen=True)
class Backbone:
    """A model whose pooled features are wanted, with what names its weights and the size it takes."""

    model: Any
    name: str  # the backbone table's row
    weights: str  # what the weights are, before the hash of their values is added
    image_size: int


def _built(settings: MapSettings, weights: str) -> Backbone:
    from core.models import build_model

    config = ModelConfig(backbone=LITE0, regime="frozen", weights=weights, image_size=settings.image_size)
    return Backbone(build_model(config, HEAD_CLASSES), LITE0, weights, settings.image_size)


def imagenet_backbone(settings: MapSettings, run_id: str | None) -> Backbone:
    return _built(settings, "imagenet")


def random_backbone(settings: MapSettings, run_id: str | None) -> Backbone:
    """Random weights drawn from the map's seed, so the same settings give the same weights (and cache entry)."""
    import keras

    keras.utils.set_random_seed(settings.seed)
    return _built(settings, "none")


def run_backbone(settings: MapSettings, run_id: str | None) -> Backbone:
    from core import runs
    from core.models import load_saved_model
    from core.predictions import run_model_path

    if run_id is None:
        raise ConfigError("'Features from: run' needs a run: choose one above, or pick imagenet or random features.")
    config = runs.get_run(run_id).config
    model = load_saved_model(run_model_path(run_id), compile=False)
    if FEATURE_LAYER not in {layer.name for layer in model.layers}:
        raise RunError(f"The run '{config.display_name()}' has no {FEATURE_LAYER} layer to take features from.")
    return Backbone(model, config.model.backbone, f"run {run_id}", config.model.effective_image_size)


@dataclass(frozen=True)
class FeatureSourceRow:
    """One row of the feature-source table: a name, what the page calls it, and how its backbone is had."""

    name: str
    label: str
    teaches: str
    backbone: Callable[[MapSettings, str | None], Backbone]
    needs_run: bool = False


FEATURE_SOURCES: dict[str, FeatureSourceRow] = {
    row.name: row
    for row in (
        FeatureSourceRow(
            "imagenet",
            "ImageNet (Lite0, pretrained)",
            "What a frozen run's head learns from: breeds already cluster before any training on them.",
            imagenet_backbone,
        ),
        FeatureSourceRow(
            "random",
            "Random weights (the scratch start)",
            "The same network before it has learned anything: classes are mixed, so a head has little to go on.",
            random_backbone,
        ),
        FeatureSourceRow(
            "run",
            "This run's backbone",
            "The run's own network: after fine-tuning, its features moved towards your classes.",
            run_backbone,
            needs_run=True,
        ),
    )
}


@dataclass(frozen=True, eq=False)
class MapFeatures:
    """One feature vector per image: the training split's rows, then the test split's."""

    features: np.ndarray  # float32 (N, D)
    labels: np.ndarray  # int64 (N,)
    is_test: np.ndarray  # bool (N,)
    files: list[Path]
    class_names: list[str]
    sources: tuple[FeatureSource, FeatureSource]  # the train and test cache entries the rows come from

    @property
    def key(self) -> str:
        """Names these exact vectors: what a projection's cache is keyed by."""
        return hashlib.sha256("/".join(source.key for source in self.sources).encode()).hexdigest()[:40]

    @property
    def data(self) -> DataConfig:
        return self.sources[0].data

    @property
    def num_train(self) -> int:
        return int((~self.is_test).sum())

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @functools.cached_property
    def unit(self) -> np.ndarray:
        """The rows scaled to length 1: cosine similarity is then a dot product."""
        norms = np.linalg.norm(self.features, axis=1, keepdims=True)
        return (self.features / np.maximum(norms, 1e-12)).astype(np.float32)

    def rows_of_test_images(self, positions: list[int]) -> list[int]:
        """Map rows of test images given by their position in the test split (the Evaluate page's indices)."""
        return [self.num_train + int(k) for k in positions if 0 <= int(k) < len(self) - self.num_train]


def map_features(
    data: DataConfig, settings: MapSettings, run_id: str | None = None, progress: Progress | None = None
) -> MapFeatures:
    """The features of every image of ``data`` from the settings' source, from the feature cache when there,
    else extracted (``progress(done, total, message)`` counts batches)."""
    import keras

    backbone = FEATURE_SOURCES[settings.features].backbone(settings, run_id)
    size = backbone.image_size
    splits = load_splits(data, size, progress)
    listing = image_files(data, size)
    common = dict(
        data=data,
        backbone=backbone.name,
        weights=weights_identity(backbone.model, backbone.weights),
        image_size=size,
        data_fingerprint=data_fingerprint(data),
        compute_dtype=keras.config.dtype_policy().compute_dtype,
    )
    wanted = [
        (FeatureSource(split="train", **common), splits.train, listing.train),
        (FeatureSource(split="test", **common), splits.test, listing.test),
    ]
    missing = [(source, images, files) for source, images, files in wanted if load_entry(source.key) is None]
    batch_size = extraction_batch()
    total = sum(math.ceil(len(files) / batch_size) for _, _, files in missing)
    done = 0

    def advance(_count: int) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, f"Extracting {FEATURE_SOURCES[settings.features].label} features")

    dim = int(backbone.model.get_layer(FEATURE_LAYER).output.shape[-1])
    for source, images, files in missing:
        write_entry(
            source.key,
            extract(backbone.model, images, batch_size=batch_size, on_batch=advance),
            capacity=len(files),
            dim=dim,
            description=source.describe(),
        )
    entries = [load_entry(source.key) for source, _, _ in wanted]
    for entry, (source, _, files) in zip(entries, wanted):
        if entry is None or len(entry) != len(files):
            raise DataUnavailable(
                f"The {source.split} split lists {len(files)} files but {0 if entry is None else len(entry)} could "
                "be read, so the map cannot tell which point is which file. Remove the unreadable files (the Data "
                "page names them) and open Explore again."
            )
    return MapFeatures(
        features=np.concatenate([np.asarray(entry.features) for entry in entries]),
        labels=np.concatenate([entry.labels for entry in entries]),
        is_test=np.concatenate([np.zeros(len(entries[0]), bool), np.ones(len(entries[1]), bool)]),
        files=[path for path, _ in listing.train + listing.test],
        class_names=list(splits.info.class_names),
        sources=(wanted[0][0], wanted[1][0]),
    )


def carried_over(old: MapFeatures) -> MapFeatures:
    """The same images' features after some were relabelled or removed in a dataset made in the app: rows found
    by file name (a stored image is named by its content), re-listed in the new pipeline order and written to
    the feature cache under the data's new fingerprint, so nothing is extracted again."""
    size = old.sources[0].image_size
    listing = image_files(old.data, size)
    row_of = {path.name: row for row, path in enumerate(old.files)}
    fingerprint = data_fingerprint(old.data)
    new_sources = tuple(dataclasses.replace(source, data_fingerprint=fingerprint) for source in old.sources)
    parts = []
    for source, files in zip(new_sources, (listing.train, listing.test)):
        unknown = [path.name for path, _ in files if path.name not in row_of]
        if unknown:
            raise DataUnavailable(
                f"{len(unknown)} image(s) were added since the map was drawn ({unknown[0]}, ...): "
                "open Explore again to extract their features."
            )
        rows = np.array([row_of[path.name] for path, _ in files], dtype=np.int64)
        labels = np.array([label for _, label in files], dtype=np.int64)
        features = old.features[rows]
        write_entry(
            source.key,
            [(features, labels)],
            capacity=len(rows),
            dim=features.shape[1],
            description=source.describe(),
        )
        parts.append((features, labels))
    return MapFeatures(
        features=np.concatenate([parts[0][0], parts[1][0]]),
        labels=np.concatenate([parts[0][1], parts[1][1]]),
        is_test=np.concatenate([np.zeros(len(listing.train), bool), np.ones(len(listing.test), bool)]),
        files=[path for path, _ in listing.train + listing.test],
        class_names=list(listing.class_names),
        sources=new_sources,
    )
