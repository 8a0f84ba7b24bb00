"""How separable the classes are in a feature space: the number that goes with each map.

A 2-D picture can flatter or hide structure, so each map comes with a measurement made in the full feature
space: the accuracy of a k-nearest-neighbour vote (cosine, k = 5) that classifies every test image from the
training images alone, with no training at all. High with ImageNet features and near chance with random ones:
what "transfer works" means, as one number.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from core.explore.features import MapFeatures

K = 5
QUERY_BLOCK = 1024  # test rows per matrix product: bounded memory for large test splits


def knn_predictions(features: MapFeatures, k: int = K) -> np.ndarray:
    """The class each test image gets from its ``k`` most similar training images (ties go to the class whose
    votes are more similar in total)."""
    train = ~features.is_test
    train_unit, train_labels = features.unit[train], features.labels[train]
    test_unit = features.unit[features.is_test]
    classes = len(features.class_names)
    k = min(k, len(train_labels))
    predicted = []
    for start in range(0, len(test_unit), QUERY_BLOCK):
        similarity = test_unit[start : start + QUERY_BLOCK] @ train_unit.T
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        votes = np.zeros((len(similarity), classes))
        weight = np.zeros((len(similarity), classes))
        rows = np.arange(len(similarity))[:, None]
        np.add.at(votes, (rows, train_labels[nearest]), 1.0)
        np.add.at(weight, (rows, train_labels[nearest]), similarity[rows, nearest])
        predicted.append(np.argmax(votes + weight / (k + 1), axis=1))
    return np.concatenate(predicted) if predicted else np.zeros(0, dtype=np.int64)


def knn_accuracy(features: MapFeatures, k: int = K) -> float:
    """The share of test images whose ``k`` nearest training images (cosine) vote for their own class."""
    truth = features.labels[features.is_test]
    if not len(truth):
        return float("nan")
    return float(np.mean(knn_predictions(features, k) == truth))


def chance(features: MapFeatures) -> float:
    """What guessing the most common training class would score on the test images."""
    truth = features.labels[features.is_test]
    if not len(truth):
        return float("nan")
    common = np.bincount(features.labels[~features.is_test], minlength=len(features.class_names)).argmax()
    return float(np.mean(truth == common))
