"""A run's evidence on the map: what it predicted for each test image, and which ones it got wrong.

The run's predictions (``core.predictions``) are in test-split order, the same order as the map's test rows when
the map shows the run's own data; when the data changed since (a relabel, a removal), the two no longer line up
and nothing is marked rather than the wrong points.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from core.explore.features import MapFeatures
    from core.predictions import Predictions


class RunOnMap(NamedTuple):
    predicted: list[str | None]  # per map row: the run's predicted class name (None for training images)
    mistakes: np.ndarray  # bool per map row: a test image the run got wrong


def run_on_map(features: MapFeatures, predictions: Predictions) -> RunOnMap | None:
    """The run's predictions laid on the map's rows, or None when its test split is not the map's test images."""
    test_labels = features.labels[features.is_test]
    if predictions.num_examples != len(test_labels) or not np.array_equal(predictions.labels, test_labels):
        return None
    names = predictions.class_names
    predicted: list[str | None] = [None] * len(features)
    mistakes = np.zeros(len(features), dtype=bool)
    for row, guess, truth in zip(np.flatnonzero(features.is_test), predictions.predicted, predictions.labels):
        predicted[row] = names[guess]
        mistakes[row] = guess != truth
    return RunOnMap(predicted, mistakes)
