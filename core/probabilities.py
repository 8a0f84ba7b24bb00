"""Model outputs as class probabilities.

A saved model may end in a softmax (its outputs already are probabilities) or in logits; whoever reads
its outputs asks ``are_probabilities`` and applies ``softmax`` when not. Classifying photos and predicting
a test split both do, so the test lives here once.
"""

from __future__ import annotations

import numpy as np

PROBABILITY_SUM_TOLERANCE = 1e-3


def are_probabilities(scores: np.ndarray) -> bool:
    """Whether every row of ``scores`` (n, classes) is non-negative and sums to 1: a softmax's output."""
    return bool((scores >= 0).all() and np.allclose(scores.sum(axis=1), 1.0, atol=PROBABILITY_SUM_TOLERANCE))


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits (n, classes) as float32, shifted by each row's maximum so it cannot overflow."""
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
