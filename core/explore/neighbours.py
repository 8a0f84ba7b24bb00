"""Neighbours in feature space: which training images a backbone finds most alike (cosine similarity).

Cosine and not Euclidean distance: pooled ReLU features differ in length with contrast and size of the subject,
while their direction says what is in the picture. One matrix product over unit rows, so a query over a
thousand training images takes a millisecond.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from core.explore.features import MapFeatures

NEIGHBOURS = 6


class Neighbour(NamedTuple):
    row: int  # the training image's row in the map
    similarity: float  # cosine, 1 = same direction


def nearest_training(features: MapFeatures, row: int, k: int = NEIGHBOURS) -> list[Neighbour]:
    """The ``k`` training images most similar to the image of ``row`` (never itself), most similar first."""
    train_rows = np.flatnonzero(~features.is_test)
    train_rows = train_rows[train_rows != row]
    similarity = features.unit[train_rows] @ features.unit[row]
    k = min(k, len(train_rows))
    best = np.argpartition(-similarity, k - 1)[:k] if k else np.array([], dtype=np.int64)
    best = best[np.lexsort((train_rows[best], -similarity[best]))]
    return [Neighbour(int(train_rows[i]), float(similarity[i])) for i in best]
