"""Predictions of a saved model over a test split: one expensive pass, cached next to the model.

``predict_split`` runs the model over the whole test split once, keeping only the class probabilities
(memory stays bounded), and caches them beside the model file so that reopening an evaluation is
instant; the cache is keyed by the model file's identity, the data config and the image size. The
metrics and views of ``core.evaluation`` are cheap arithmetic on these ``Predictions``.

Apart from ``run_predictions`` and ``run_model_path``, this module works on file paths and configs
only: whoever knows where a run keeps its model and which ``DataConfig`` / image size it was trained
with passes them in. TensorFlow and Keras are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.config import DataConfig
from core.data import data_fingerprint, load_splits
from core.errors import DataUnavailable, RunError
from core.models import load_saved_model
from core.probabilities import are_probabilities, softmax
from core.progress import Progress

CACHE_FORMAT = 1
FINGERPRINT_SAMPLE_BYTES = 1 << 20
LOSS_EPSILON = 1e-7  # Keras clips probabilities the same way before taking the log


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
    """What cached predictions depend on: the model file's identity, the data config, the data's files (an image
    relabelled or removed since changes the test split) and the image size.

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
    return json.dumps(
        {
            "format": CACHE_FORMAT,
            "model": {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256_head_tail": digest.hexdigest()},
            "data": data_config.to_dict(),
            "data_files": data_fingerprint(data_config),
            "image_size": int(image_size),
        },
        sort_keys=True,
    )


def load_cached_predictions(
    cache_path: Path, model_path: Path, data_config: DataConfig, image_size: int
) -> Predictions | None:
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
            np.savez(
                handle,
                probabilities=predictions.probabilities,
                labels=predictions.labels,
                indices=predictions.indices,
                class_names=np.array(predictions.class_names, dtype=str),
                fingerprint=np.array(fingerprint),
            )
        os.replace(partial, cache_path)
    finally:
        partial.unlink(missing_ok=True)


def _existing_model_file(model_path: Path) -> Path:
    model_path = Path(model_path)
    if not model_path.is_file():
        raise RunError(f"The model file {model_path} does not exist. Train the run (or let it finish) first.")
    return model_path


def predict_dataset(
    model: Any, batches: Any, class_names: Sequence[str], total: int = 0, progress: Progress | None = None
) -> Predictions:
    """Run ``model`` over a batched ``(images, labels)`` dataset, keeping only probabilities and labels.

    One traced inference function with an unknown batch size (so the last, smaller batch does not
    retrace) does what ``model.predict`` does per batch, with the same XLA choice (Keras turns it off
    on CPU-only machines), while letting us report progress and keep only what we need. If the model
    ends in logits rather than a softmax (judged once, on the first batch), a softmax is applied.
    """
    import tensorflow as tf

    infer = tf.function(
        lambda images: model(images, training=False),
        input_signature=[batches.element_spec[0]],
        reduce_retracing=True,
        jit_compile=bool(getattr(model, "jit_compile", False)),
    )
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
            outputs_probabilities = are_probabilities(scores)
        chunks.append(scores if outputs_probabilities else softmax(scores))
        labels.append(np.asarray(batch_labels, dtype=np.int64))
        done += len(scores)
        if progress:
            progress(done, max(total, done), f"Predicted {done} of {max(total, done)} test images")
    if not chunks:
        raise DataUnavailable(
            "The test split is empty: there is nothing to evaluate. Use a data source with test images."
        )
    probabilities = np.concatenate(chunks)
    return Predictions(
        probabilities=probabilities,
        labels=np.concatenate(labels),
        class_names=list(class_names),
        indices=np.arange(len(probabilities), dtype=np.int64),
    )


def predict_split(
    model_path: Path,
    data_config: DataConfig,
    image_size: int,
    cache_path: Path | None,
    progress: Progress | None = None,
    batch_size: int = 64,
) -> Predictions:
    """Predictions of a saved model over the whole test split, from the cache when still valid.

    The cache (``cache_path``, ``.npz``; None disables it) is keyed by ``prediction_fingerprint``: a
    new or touched model file, another data config or another image size recomputes it.
    """
    import tensorflow as tf

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
    model = load_saved_model(model_path, compile=False)
    batches = splits.test.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    predictions = predict_dataset(model, batches, splits.info.class_names, splits.info.num_test, progress)
    if cache_path is not None:
        _write_cache(Path(cache_path), fingerprint, predictions)
    return predictions


def test_images(data_config: DataConfig, image_size: int, indices: Sequence[int]) -> list[np.ndarray]:
    """The test images (uint8, HxWx3) at the given split positions, in the order asked.

    Walks the split up to the largest index: meant for a gallery's handful of images.
    """

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


# ---------------------------------------------------------------- runs


def run_model_path(run_id: str) -> Path:
    """The model a run is judged by: the best epoch's, else the last one's."""
    from core import runs

    record = runs.get_run(run_id)
    model_path = record.model_path
    if model_path is None:
        raise RunError(
            f"The run '{record.name}' has no saved model yet: models are saved at the end of each "
            "epoch. Wait for its first epoch, or pick another run."
        )
    return model_path


def run_predictions(run_id: str, progress: Progress | None = None) -> Predictions:
    """Predictions of a run's saved model over its own test split, cached next to the model."""
    from core import runs

    config = runs.get_run(run_id).config
    model_path = run_model_path(run_id)
    return predict_split(
        model_path, config.data, config.model.effective_image_size, cache_path_for(model_path), progress
    )
