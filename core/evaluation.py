"""Evaluate a saved model on the test split: predictions, the notebook's metrics, and where it errs.

The expensive part is one pass of the model over the test split (``predict_split``); it keeps only
the class probabilities, so memory stays bounded, and caches them next to the model so that
reopening an evaluation is instant. Everything else (metrics, confusion matrix, the examples behind
a confusion cell, the worst losses, two runs side by side) is cheap numpy/scikit-learn arithmetic on
those probabilities, so pages can recompute it on every rerun.

This module works on file paths and configs only: whoever knows where a run keeps its model and
which ``DataConfig`` / image size it was trained with passes them in. TensorFlow, Keras and
scikit-learn are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from core.config import DataConfig
from core.errors import DataUnavailable, RunError

Progress = Callable[[int, int, str], None]

CACHE_FORMAT = 1
FINGERPRINT_SAMPLE_BYTES = 1 << 20
LOSS_EPSILON = 1e-7  # Keras clips probabilities the same way before taking the log


# ---------------------------------------------------------------- predictions

@dataclass(frozen=True, eq=False)
class Predictions:
    """Class probabilities for every test example, with the true labels.

    ``indices[k]`` is the position of row ``k`` in the test split (what ``test_images`` takes).
    """

    probabilities: np.ndarray  # float32, (N, C)
    labels: np.ndarray  # int64, (N,)
    class_names: list[str]
    indices: np.ndarray  # int64, (N,)

    @property
    def num_examples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def predicted(self) -> np.ndarray:
        """The predicted class of each example (the most probable one)."""
        return self.probabilities.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        """The probability the model gave its own prediction."""
        return self.probabilities.max(axis=1)

    @property
    def true_probability(self) -> np.ndarray:
        """The probability the model gave the right answer."""
        return self.probabilities[np.arange(self.num_examples), self.labels]

    @property
    def losses(self) -> np.ndarray:
        """Per-example cross-entropy, ``-log p(true class)``."""
        return -np.log(np.clip(self.true_probability.astype(np.float64), LOSS_EPSILON, 1.0))

    def confusion_matrix(self) -> np.ndarray:
        """C x C counts: row = true class, column = predicted class, every class present."""
        return confusion_counts(self.labels, self.predicted, self.num_classes)


def confusion_counts(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """``sklearn.metrics.confusion_matrix(labels, predicted, labels=range(C))``, by one bincount."""
    flat = np.asarray(labels, np.int64) * num_classes + np.asarray(predicted, np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def cache_path_for(model_path: Path) -> Path:
    """Where the predictions of a model file are cached: beside it (``model_best.predictions.npz``)."""
    return model_path.with_name(f"{model_path.stem}.predictions.npz")


def prediction_fingerprint(model_path: Path, data_config: DataConfig, image_size: int) -> str:
    """What cached predictions depend on: the model file's identity, the data config and the image size.

    The model file is identified by size, modification time and a hash of its first and last MiB:
    constant time however large the file, and any rewrite or ``touch`` changes it.
    """
    model_path = _existing_model_file(model_path)
    try:
        stat = model_path.stat()
        digest = hashlib.sha256()
        with model_path.open("rb") as handle:
            digest.update(handle.read(FINGERPRINT_SAMPLE_BYTES))
            if stat.st_size > FINGERPRINT_SAMPLE_BYTES:
                handle.seek(max(FINGERPRINT_SAMPLE_BYTES, stat.st_size - FINGERPRINT_SAMPLE_BYTES))
                digest.update(handle.read())
    except OSError as error:
        raise RunError(
            f"The model file {model_path} cannot be read ({error.strerror or error}). "
            "Train the run again, or pick a run whose model was saved."
        ) from error
    return json.dumps({
        "format": CACHE_FORMAT,
        "model": {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256_head_tail": digest.hexdigest()},
        "data": data_config.to_dict(),
        "image_size": int(image_size),
    }, sort_keys=True)


def load_cached_predictions(cache_path: Path, model_path: Path, data_config: DataConfig,
                            image_size: int) -> Predictions | None:
    """The cached predictions if they were made by this model file on this data, else None."""
    return _read_cache(Path(cache_path), prediction_fingerprint(model_path, data_config, image_size))


def _read_cache(cache_path: Path, fingerprint: str) -> Predictions | None:
    if not cache_path.is_file():
        return None
    try:
        with np.load(cache_path, allow_pickle=False) as saved:
            if str(saved["fingerprint"]) != fingerprint:
                return None
            return Predictions(
                probabilities=saved["probabilities"].astype(np.float32, copy=False),
                labels=saved["labels"].astype(np.int64, copy=False),
                class_names=[str(name) for name in saved["class_names"]],
                indices=saved["indices"].astype(np.int64, copy=False),
            )
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None  # a damaged or foreign cache is recomputed, never fatal


def _write_cache(cache_path: Path, fingerprint: str, predictions: Predictions) -> None:
    """Write to a temporary file, then rename: a crash never leaves a half-written cache behind."""
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    partial = cache_path.with_name(f".{cache_path.name}.{os.getpid()}.tmp")
    try:
        with partial.open("wb") as handle:
            np.savez(handle, probabilities=predictions.probabilities, labels=predictions.labels,
                     indices=predictions.indices, class_names=np.array(predictions.class_names, dtype=str),
                     fingerprint=np.array(fingerprint))
        os.replace(partial, cache_path)
    finally:
        partial.unlink(missing_ok=True)


def _existing_model_file(model_path: Path) -> Path:
    model_path = Path(model_path)
    if not model_path.is_file():
        raise RunError(f"The model file {model_path} does not exist. Train the run (or let it finish) first.")
    return model_path


def load_prediction_model(model_path: Path) -> Any:
    """Load a saved ``.keras`` model for inference (safe mode, not compiled).

    Transfer Lab's augmentation layers are registered first so models that contain them load.
    """
    import keras

    try:
        augment = importlib.import_module("core.augment")
    except ModuleNotFoundError as error:
        if error.name != "core.augment":
            raise
    else:
        register = getattr(augment, "register_layers", None)
        if register is not None:
            register()
    model_path = _existing_model_file(model_path)
    try:
        return keras.saving.load_model(model_path, safe_mode=True, compile=False)
    except Exception as error:  # noqa: BLE001 - Keras raises many types for a bad file; one message for people
        raise RunError(
            f"The model file {model_path} could not be loaded ({type(error).__name__}: {error}). "
            "It may be damaged or saved by another version: train the run again."
        ) from error


def predict_dataset(model: Any, batches: Any, class_names: Sequence[str], total: int = 0,
                    progress: Progress | None = None) -> Predictions:
    """Run ``model`` over a batched ``(images, labels)`` dataset, keeping only probabilities and labels.

    One traced inference function with an unknown batch size (so the last, smaller batch does not
    retrace) does what ``model.predict`` does per batch, with the same XLA choice (Keras turns it off
    on CPU-only machines), while letting us report progress and keep only what we need. If the model
    ends in logits rather than a softmax (judged once, on the first batch), a softmax is applied.
    """
    import tensorflow as tf

    infer = tf.function(lambda images: model(images, training=False), input_signature=[batches.element_spec[0]],
                        reduce_retracing=True, jit_compile=bool(getattr(model, "jit_compile", False)))
    chunks: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    done = 0
    outputs_probabilities: bool | None = None
    for images, batch_labels in batches:
        try:
            scores = np.asarray(infer(images), dtype=np.float32)
        except (ValueError, TypeError, tf.errors.InvalidArgumentError) as error:
            raise RunError(
                f"The model cannot take these test images ({tuple(images.shape[1:])}): {error}. "
                "Evaluate with the image size the run was trained with."
            ) from error
        if scores.ndim != 2 or scores.shape[1] != len(class_names):
            raise RunError(
                f"The model predicts {scores.shape[-1]} classes but the test data has {len(class_names)} "
                "classes. Evaluate a run on the data it was trained on."
            )
        if outputs_probabilities is None:
            outputs_probabilities = bool((scores >= 0).all() and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3))
        chunks.append(scores if outputs_probabilities else _softmax(scores))
        labels.append(np.asarray(batch_labels, dtype=np.int64))
        done += len(scores)
        if progress:
            progress(done, max(total, done), f"Predicted {done} of {max(total, done)} test images")
    if not chunks:
        raise DataUnavailable("The test split is empty: there is nothing to evaluate. "
                              "Use a data source with test images.")
    probabilities = np.concatenate(chunks)
    return Predictions(probabilities=probabilities, labels=np.concatenate(labels),
                       class_names=list(class_names), indices=np.arange(len(probabilities), dtype=np.int64))


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def predict_split(model_path: Path, data_config: DataConfig, image_size: int, cache_path: Path | None,
                  progress: Progress | None = None, batch_size: int = 64) -> Predictions:
    """Predictions of a saved model over the whole test split, from the cache when still valid.

    The cache (``cache_path``, ``.npz``; None disables it) is keyed by ``prediction_fingerprint``: a
    new or touched model file, another data config or another image size recomputes it.
    """
    import tensorflow as tf

    from core.data import load_splits

    fingerprint = prediction_fingerprint(model_path, data_config, image_size)
    if cache_path is not None:
        cached = _read_cache(Path(cache_path), fingerprint)
        if cached is not None:
            if progress:
                progress(cached.num_examples, cached.num_examples, "Loaded the saved predictions")
            return cached
    splits = load_splits(data_config, image_size, progress)
    if progress:
        progress(0, splits.info.num_test, "Loading the model")
    model = load_prediction_model(model_path)
    batches = splits.test.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    predictions = predict_dataset(model, batches, splits.info.class_names, splits.info.num_test, progress)
    if cache_path is not None:
        _write_cache(Path(cache_path), fingerprint, predictions)
    return predictions


def test_images(data_config: DataConfig, image_size: int, indices: Sequence[int]) -> list[np.ndarray]:
    """The test images (uint8, HxWx3) at the given split positions, in the order asked.

    Walks the split up to the largest index: meant for a gallery's handful of images.
    """
    from core.data import load_splits

    wanted = sorted({int(i) for i in indices})
    if not wanted:
        return []
    if wanted[0] < 0:
        raise DataUnavailable(f"Test image {wanted[0]} does not exist: positions start at 0.")
    splits = load_splits(data_config, image_size)
    found: dict[int, np.ndarray] = {}
    pending = set(wanted)
    for position, (image, _) in enumerate(splits.test.take(wanted[-1] + 1).as_numpy_iterator()):
        if position in pending:
            found[position] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
            pending.discard(position)
    if pending:
        raise DataUnavailable(
            f"The test split has no image at position(s) {sorted(pending)[:5]}: it changed since the "
            "evaluation. Evaluate again."
        )
    return [found[int(i)] for i in indices]


test_images.__test__ = False  # a data helper, not a pytest test, even when imported into a test module


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
        return [{"class": row.name, "precision": row.precision, "recall": row.recall, "f1": row.f1,
                 "support": row.support} for row in self.per_class]


def _headline_rows(k: int) -> list[tuple[str, str]]:
    return [("accuracy", "Overall accuracy"), ("top_k_accuracy", f"Top-{k} accuracy"),
            ("weighted_precision", "Average precision"), ("weighted_recall", "Average recall")]


def compute_metrics(predictions: Predictions, top_k: int = 5) -> Metrics:
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
        labels, predicted, labels=every_class, average=None, zero_division=0)
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
    for (name, label_a), (_, label_b) in zip(_headline_rows(metrics_a.k), _headline_rows(metrics_b.k)):
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
    if a.source == b.source and a.kind == "folder" and a.test_fraction != b.test_fraction:
        differences.append(f"test fraction {a.test_fraction:g} vs {b.test_fraction:g}")
    return "; ".join(differences) or None


def _seed_picks_test_images(config: DataConfig) -> bool:
    """A folder's split and any demo/folder test subset are drawn with the data seed; TFDS splits are fixed."""
    return config.kind == "folder" or (config.kind == "demo" and bool(config.max_test_images))


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
    return [TopLoss(int(predictions.indices[i]), float(losses[i]), names[predictions.labels[i]],
                    names[predicted[i]], float(confidence[i])) for i in order]


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


# ---------------------------------------------------------------- runs

def run_model_path(run_id: str) -> Path:
    """The model a run is judged by: the best epoch's, else the last one's."""
    from core import runs

    record = runs.get_run(run_id)
    model_path = record.best_model or record.last_model
    if model_path is None:
        raise RunError(f"The run '{record.name}' has no saved model yet: models are saved at the end of each "
                       "epoch. Wait for its first epoch, or pick another run.")
    return model_path


def run_predictions(run_id: str, progress: Progress | None = None) -> Predictions:
    """Predictions of a run's saved model over its own test split, cached next to the model."""
    from core import runs

    config = runs.get_run(run_id).config
    model_path = run_model_path(run_id)
    return predict_split(model_path, config.data, config.model.effective_image_size,
                         cache_path_for(model_path), progress)
