"""Projections: a map's features (1280 numbers per image) drawn in two dimensions, one table of methods.

Each row names the function and the settings it reads (``parameters``), and only those go into the cache key:
changing t-SNE's perplexity makes a new t-SNE map, never a new PCA one. Results are kept on disk under
``cache/explore/`` by (the features' key, the method, its parameters), written under a temporary name and
renamed, so a map drawn once comes back instantly after a restart. The features are scaled to length 1 first,
so both methods see the same cosine geometry as the neighbours and the kNN score. scikit-learn is imported
inside the functions.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.data_home import data_home, subdir
from core.errors import DataHomeUnavailable
from core.progress import Progress

if TYPE_CHECKING:
    from core.explore.features import MapFeatures
    from core.explore.settings import MapSettings

CACHE_DIR = ("cache", "explore")
FORMAT_VERSION = 1
PCA_COMPONENTS = 2


def pca(unit: np.ndarray, settings: MapSettings) -> np.ndarray:
    """The two directions of largest spread: instant, and distances along them mean something."""
    from sklearn.decomposition import PCA

    return PCA(n_components=PCA_COMPONENTS, random_state=settings.seed).fit_transform(unit)


def effective_perplexity(settings: MapSettings, count: int) -> float:
    """t-SNE needs fewer neighbours than points: the perplexity asked for, at most a third of the images."""
    return float(max(1.0, min(settings.perplexity, (count - 1) / 3)))


def tsne(unit: np.ndarray, settings: MapSettings) -> np.ndarray:
    """Who is near whom: clusters show, distances between them mean little."""
    from sklearn.manifold import TSNE

    return TSNE(
        n_components=2,
        perplexity=effective_perplexity(settings, len(unit)),
        init="pca",
        learning_rate="auto",
        random_state=settings.seed,
    ).fit_transform(unit)


@dataclass(frozen=True)
class Projection:
    """One row of the projection table: the function, the settings it reads, and what to expect of it."""

    name: str
    function: Callable[[np.ndarray, MapSettings], np.ndarray]
    parameters: tuple[str, ...]
    expect: str


PROJECTIONS: dict[str, Projection] = {
    row.name: row
    for row in (
        Projection("PCA", pca, ("seed",), "Instant."),
        Projection("t-SNE", tsne, ("perplexity", "seed"), "Seconds for a few hundred images, ~20 s for a thousand."),
    )
}


def projection_key(features_key: str, settings: MapSettings) -> str:
    """The cache key of one map: the features, the method and the parameters that method reads."""
    row = PROJECTIONS[settings.method]
    described = {
        "format": FORMAT_VERSION,
        "features": features_key,
        "method": row.name,
        "parameters": {name: getattr(settings, name) for name in row.parameters},
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:40]


def _cache_path(key: str) -> Path:
    return data_home().joinpath(*CACHE_DIR) / f"{key}.npy"


def project(features: MapFeatures, settings: MapSettings, progress: Progress | None = None) -> np.ndarray:
    """(N, 2) float32 coordinates, row i for the image of row i of ``features``; from the cache when there."""
    path = _cache_path(projection_key(features.key, settings))
    if path.is_file():
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.shape == (len(features), 2):
                return cached
        except (OSError, ValueError):
            pass  # a damaged entry is computed again
    row = PROJECTIONS[settings.method]
    if progress is not None:
        progress(0, 1, f"Computing the {row.name} map of {len(features):,} images. {row.expect}")
    coordinates = np.asarray(row.function(features.unit, settings), dtype=np.float32)
    partial = path.with_name(f"{path.stem}.partial-{os.getpid()}.npy")
    try:
        subdir(*CACHE_DIR)
        np.save(partial, coordinates)
        os.replace(partial, path)
    except (OSError, DataHomeUnavailable):
        pass  # a read-only data directory: the map is still drawn, just not kept
    finally:
        partial.unlink(missing_ok=True)
    if progress is not None:
        progress(1, 1, f"{row.name} map ready")
    return coordinates
