"""Judge a model's test predictions: the notebook's metrics, where it errs, and two runs side by side.

Everything here is cheap numpy/scikit-learn arithmetic on ``core.predictions.Predictions`` (the
expensive model pass lives there), so pages can recompute it on every rerun: the summary metrics and
per-class table, comparing two runs (and whether their test sets make that fair), the confusion matrix's
log view, its most confused pairs and the examples behind a cell, the worst losses, and the class
orderings of the heatmap. scikit-learn is imported inside the function that needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from core.catalog import TOP_K
from core.config import DataConfig
from core.errors import DataUnavailable
from core.predictions import Predictions

# ---------------------------------------------------------------- metrics


@dataclass(frozen=True)
class ClassMetrics:
    """One row of the per-class table."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Metrics:
    """The notebook's summary numbers (``print_model_performance``) and the per-class table."""

    accuracy: float
    top_k_accuracy: float
    k: int
    weighted_precision: float
    weighted_recall: float
    num_examples: int
    per_class: tuple[ClassMetrics, ...]

    def headline(self) -> dict[str, float]:
        """The four summary numbers by their labels, in the notebook's order."""
        return {label: float(getattr(self, name)) for name, label in _headline_rows(self.k)}

    def per_class_rows(self) -> list[dict[str, Any]]:
        """The per-class table as rows (``st.dataframe`` and pandas take this as is)."""
        return [
            {"class": row.name, "precision": row.precision, "recall": row.recall, "f1": row.f1, "support": row.support}
            for row in self.per_class
        ]


def _headline_rows(k: int) -> list[tuple[str, str]]:
    return [
        ("accuracy", "Overall accuracy"),
        ("top_k_accuracy", f"Top-{k} accuracy"),
        ("weighted_precision", "Average precision"),
        ("weighted_recall", "Average recall"),
    ]


def compute_metrics(predictions: Predictions, top_k: int = TOP_K) -> Metrics:
    """Accuracy, top-k accuracy and the class-count-weighted precision and recall, as the notebook does.

    The averages weight each class that occurs in the true labels by its number of test images
    (classes absent from the test split do not count); a class never predicted has precision 0.
    The per-class table covers every class, with support 0 for classes absent from the test split.
    """
    from sklearn import metrics as skm

    if predictions.num_examples == 0:
        raise DataUnavailable("There are no test predictions to score. Evaluate a run on a non-empty test split.")
    labels, scores, predicted = predictions.labels, predictions.probabilities, predictions.predicted
    num_classes = predictions.num_classes
    every_class = np.arange(num_classes)
    k = min(top_k, num_classes)
    if k >= num_classes:
        top_k_accuracy = 1.0  # every class is among the top k; sklearn rejects the 2-class case
    else:
        top_k_accuracy = float(skm.top_k_accuracy_score(labels, scores, k=k, labels=every_class))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, predicted, labels=every_class, average=None, zero_division=0
    )
    present, counts = np.unique(labels, return_counts=True)
    weights = counts / counts.sum()
    return Metrics(
        accuracy=float(skm.accuracy_score(labels, predicted)),
        top_k_accuracy=top_k_accuracy,
        k=k,
        weighted_precision=float(np.sum(precision[present] * weights)),
        weighted_recall=float(np.sum(recall[present] * weights)),
        num_examples=predictions.num_examples,
        per_class=tuple(
            ClassMetrics(name, float(p), float(r), float(f), int(s))
            for name, p, r, f, s in zip(predictions.class_names, precision, recall, f1, support)
        ),
    )


class MetricDelta(NamedTuple):
    """One summary number of two runs side by side; ``delta`` is b minus a."""

    metric: str
    a: float
    b: float
    delta: float


def compare(metrics_a: Metrics, metrics_b: Metrics) -> list[MetricDelta]:
    """Accuracy, top-k accuracy, average precision and recall of run a and run b, and b - a."""
    a, b = metrics_a.headline(), metrics_b.headline()
    rows = []
    for (_, label_a), (_, label_b) in zip(_headline_rows(metrics_a.k), _headline_rows(metrics_b.k)):
        label = label_a if label_a == label_b else f"{label_a} / {label_b}"
        rows.append(MetricDelta(label, a[label_a], b[label_b], b[label_b] - a[label_a]))
    return rows


def data_split_difference(a: DataConfig, b: DataConfig) -> str | None:
    """What makes two runs' test images differ, e.g. 'data source demo vs folder:/dogs', or None if nothing.

    Metrics on different test images (another dataset, subset, split seed or test fraction) are not
    comparable: a difference in accuracy would mostly measure the difference in test sets.
    """
    differences = []
    if a.source != b.source:
        differences.append(f"data source {a.source} vs {b.source}")
    if a.max_test_images != b.max_test_images:
        differences.append(f"test images {a.max_test_images or 'all'} vs {b.max_test_images or 'all'}")
    if a.source == b.source and _seed_picks_test_images(a) and a.seed != b.seed:
        differences.append(f"data seed {a.seed} vs {b.seed}")
    if a.source == b.source and a.kind in ("folder", "local") and a.test_fraction != b.test_fraction:
        differences.append(f"test fraction {a.test_fraction:g} vs {b.test_fraction:g}")
    return "; ".join(differences) or None


def _seed_picks_test_images(config: DataConfig) -> bool:
    """A folder's split (a dataset made in the app is one) and any demo/folder test subset are drawn with the
    data seed; TFDS splits are fixed."""
    return config.kind in ("folder", "local") or (config.kind == "demo" and bool(config.max_test_images))


def predictions_difference(a: Predictions, b: Predictions) -> str | None:
    """What shows that two runs' predictions are not over the same test images, or None.

    The check behind ``data_split_difference``: a folder whose files changed between two runs has the
    same config but other images.
    """
    if list(a.class_names) != list(b.class_names):
        return f"classes differ ({a.num_classes} vs {b.num_classes} classes, or other names)"
    if a.num_examples != b.num_examples:
        return f"{a.num_examples:,} vs {b.num_examples:,} test images"
    if not (np.array_equal(a.labels, b.labels) and np.array_equal(a.indices, b.indices)):
        return "the test images' labels differ: the images are not the same"
    return None


# ---------------------------------------------------------------- the confusion matrix


def log_confusion(cm: np.ndarray) -> np.ndarray:
    """The notebook's log view of a confusion matrix: ``log((count + 1) / row total)``.

    Each row is divided by its own total (the number of test images of that true class), so a
    row reads as "where did this class's images go". The notebook writes
    ``np.log(np.divide(cm + 1.0, np.sum(cm, axis=1)))``, which broadcasts the row totals along
    the columns (it divides column j by row j's total); this is the intended per-row version.
    A row with no images (a class absent from the test split) is divided by 1.
    """
    cm = np.asarray(cm, dtype=np.float64)
    totals = cm.sum(axis=1)
    totals[totals == 0] = 1.0
    return np.log((cm + 1.0) / totals[:, None])


class Confusion(NamedTuple):
    """A (true class, predicted class) pair and how many test images went that way."""

    true: str
    predicted: str
    count: int


def most_confused(cm: np.ndarray, class_names: Sequence[str], min_count: int = 1) -> list[Confusion]:
    """Off-diagonal cells with at least ``min_count`` images, most frequent first (like fastai's)."""
    cm = np.asarray(cm)
    off_diagonal = cm * (1 - np.eye(len(cm), dtype=cm.dtype))
    rows, cols = np.nonzero(off_diagonal >= max(min_count, 1))
    counts = off_diagonal[rows, cols]
    order = np.lexsort((cols, rows, -counts))
    return [Confusion(class_names[rows[i]], class_names[cols[i]], int(counts[i])) for i in order]


class CellExample(NamedTuple):
    """A test image in a confusion cell, with the probabilities of its predicted and true class."""

    index: int
    predicted_probability: float
    true_probability: float


def cell_examples(predictions: Predictions, true_class: int, predicted_class: int) -> list[CellExample]:
    """The test images of class ``true_class`` predicted as ``predicted_class``, most confident first."""
    rows = np.nonzero((predictions.labels == true_class) & (predictions.predicted == predicted_class))[0]
    p_predicted = predictions.probabilities[rows, predicted_class]
    p_true = predictions.probabilities[rows, true_class]
    order = np.lexsort((rows, -p_predicted))
    return [CellExample(int(predictions.indices[rows[i]]), float(p_predicted[i]), float(p_true[i])) for i in order]


class TopLoss(NamedTuple):
    """A badly predicted test image: its loss, true and predicted class names, and predicted probability."""

    index: int
    loss: float
    true: str
    predicted: str
    probability: float


def top_losses(predictions: Predictions, k: int = 16) -> list[TopLoss]:
    """The ``k`` test images with the highest cross-entropy loss, worst first."""
    losses = predictions.losses
    order = np.lexsort((np.arange(len(losses)), -losses))[:k]
    predicted, confidence, names = predictions.predicted, predictions.confidence, predictions.class_names
    return [
        TopLoss(
            int(predictions.indices[i]),
            float(losses[i]),
            names[predictions.labels[i]],
            names[predicted[i]],
            float(confidence[i]),
        )
        for i in order
    ]


# ---------------------------------------------------------------- class orderings for the heatmap


def index_order(cm: np.ndarray) -> list[int]:
    """Classes as the data lists them."""
    return list(range(len(cm)))


def recall_order(cm: np.ndarray) -> list[int]:
    """Worst recall first (classes with no test images last), so the weak classes sit together."""
    cm = np.asarray(cm, dtype=np.float64)
    totals = cm.sum(axis=1)
    recall = np.divide(np.diag(cm), totals, out=np.full(len(cm), np.inf), where=totals > 0)
    return [int(i) for i in np.lexsort((np.arange(len(cm)), recall))]


def cluster_order(cm: np.ndarray) -> list[int]:
    """Classes the model confuses with each other next to each other.

    Average-linkage clustering of the symmetrised, row-normalised confusion (how often a and b are
    mistaken for one another), read off as the leaf order of the merge tree. Plain numpy: a
    120-class matrix takes milliseconds (importing scikit-learn's clustering takes seconds).
    """
    cm = np.asarray(cm, dtype=np.float64)
    n = len(cm)
    totals = cm.sum(axis=1, keepdims=True)
    shares = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    np.fill_diagonal(shares, 0.0)
    distance = -(shares + shares.T)  # more confusion, closer
    np.fill_diagonal(distance, np.inf)
    members: list[list[int]] = [[i] for i in range(n)]
    sizes = np.ones(n)
    for _ in range(n - 1):
        a, b = np.unravel_index(int(np.argmin(distance)), distance.shape)
        a, b = min(a, b), max(a, b)
        merged = (sizes[a] * distance[a] + sizes[b] * distance[b]) / (sizes[a] + sizes[b])
        distance[a, :] = merged
        distance[:, a] = merged
        distance[a, a] = np.inf
        distance[b, :] = np.inf
        distance[:, b] = np.inf
        members[a] = members[a] + members[b]
        members[b] = []
        sizes[a] += sizes[b]
    return next((group for group in members if group), [])


# Heatmap orderings by the label a page shows for them.
ORDERINGS: dict[str, Callable[[np.ndarray], list[int]]] = {
    "Class order": index_order,
    "Confused classes together": cluster_order,
    "Worst recall first": recall_order,
}
