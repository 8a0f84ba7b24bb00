"""Classifiers: a Keras model bundled with what a prediction needs, and the ways to get one.

A ``Classifier`` holds the model, its class names, its input size and the preprocessing that turns a
photo into the model's input. Build one from a saved file (``classifier_from_file``), from a training run
(``classifier_for_run``) or take the no-training ImageNet dog classifier (``imagenet_dog_classifier``);
runs and files are cached while their model file is unchanged, so a page can ask on every rerun.

Predictions go through one compiled inference function per classifier (a ``tf.function``, traced once),
about 3x faster than ``model.predict`` for a single photo. TensorFlow is imported only when a model is
loaded or called.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.errors import ConfigError, RunError, TransferLabError
from core.imagenet import IMAGENET_SIZE, dog_breed_names
from core.models import load_saved_model
from core.probabilities import are_probabilities, softmax
from core.progress import Progress
from core.serving.preprocessing import PREPROCESSING, Preprocessing

CHECKPOINTS = ("best", "last")
CLASS_NAMES_FILE = "class_names.json"
"""Optional file in a run's folder listing its class names in output order (read before the data source)."""
MODEL_CACHE_SIZE = 4


@dataclass(eq=False)
class Classifier:
    """A model ready to classify photos: what it is, what it outputs, how photos are fed to it."""

    name: str
    class_names: tuple[str, ...]
    image_size: int
    preprocessing: Preprocessing
    model: Any
    source: str = ""  # where the model came from (a file, or a description), for people
    notes: tuple[str, ...] = ()  # caveats a page should show (e.g. class names that could not be found)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _infer: Any = field(default=None, init=False, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def preprocessing_description(self) -> str:
        return self.preprocessing.description.format(size=self.image_size)

    def prepare(self, image: Image.Image) -> np.ndarray:
        """One upright RGB photo as the model's float32 (size, size, 3) input in 0..255."""
        return self.preprocessing.prepare(image, self.image_size)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (n, classes) for a prepared batch, through the compiled inference function."""
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1:] != (self.image_size, self.image_size, 3):
            raise ConfigError(
                f"{self.name} takes batches of shape (n, {self.image_size}, {self.image_size}, 3) (got {batch.shape})."
            )
        try:
            scores = np.asarray(self._inference_function()(batch), dtype=np.float32)
        except TransferLabError:
            raise
        except Exception as error:  # TensorFlow's many error types; one sentence for people
            raise RunError(
                f"{self.name} could not classify these images ({type(error).__name__}: "
                f"{' '.join(str(error).split())[:200]}). The model file may not match this "
                "version of Transfer Lab: train the run again."
            ) from error
        if scores.ndim != 2 or scores.shape[1] != self.num_classes:
            raise RunError(
                f"{self.name} gives {scores.shape[-1]} outputs per image but has "
                f"{self.num_classes} class names; it is not the model these names belong to."
            )
        return scores if are_probabilities(scores) else softmax(scores)

    def warm_up(self) -> None:
        """Trace the inference function now (about a second), so the first photo is answered quickly."""
        self.predict(np.zeros((1, self.image_size, self.image_size, 3), np.float32))

    def _inference_function(self) -> Any:
        with self._lock:
            if self._infer is None:
                import tensorflow as tf

                model = self.model
                self._infer = tf.function(
                    lambda images: model(images, training=False),
                    input_signature=[tf.TensorSpec([None, self.image_size, self.image_size, 3], tf.float32)],
                )
            return self._infer


def cached_model(path: str | os.PathLike[str]) -> Any:
    """The saved ``.keras`` model at ``path`` for inference (not compiled), loaded by
    ``core.models.load_saved_model`` once and kept while the file is unchanged."""
    path = Path(path).expanduser().resolve()
    try:
        stat = path.stat()
    except OSError:
        raise RunError(
            f"The model file {path} does not exist: its run may have been deleted, or not have finished an epoch yet."
        ) from None
    return _model_of_file_version(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=MODEL_CACHE_SIZE)
def _model_of_file_version(path: str, mtime_ns: int, size: int) -> Any:
    return load_saved_model(path, compile=False)


def classifier_from_file(
    path: str | os.PathLike[str],
    class_names: Sequence[str],
    *,
    image_size: int | None = None,
    preprocessing: str = "stretch",
    name: str = "",
    notes: Sequence[str] = (),
) -> Classifier:
    """A classifier around a saved model; the input size defaults to the model's own."""
    model = cached_model(path)
    return _wrap_model(
        model,
        class_names,
        image_size=image_size,
        preprocessing=preprocessing,
        name=name or Path(path).stem,
        source=str(path),
        notes=notes,
    )


def _wrap_model(
    model: Any,
    class_names: Sequence[str],
    *,
    image_size: int | None,
    preprocessing: str,
    name: str,
    source: str,
    notes: Sequence[str] = (),
) -> Classifier:
    if preprocessing not in PREPROCESSING:
        raise ConfigError(f"Preprocessing must be one of {', '.join(PREPROCESSING)} (got {preprocessing!r}).")
    size = image_size or _square_input_side(model)
    if size is None:
        raise ConfigError(f"The model {name} does not fix its input size: give image_size.")
    outputs = _output_count(model)
    if outputs is not None and outputs != len(class_names):
        raise ConfigError(
            f"The model {name} gives {outputs} outputs but {len(class_names)} class names were "
            "given; they must match one to one."
        )
    return Classifier(
        name=name,
        class_names=tuple(str(n) for n in class_names),
        image_size=int(size),
        preprocessing=PREPROCESSING[preprocessing],
        model=model,
        source=source,
        notes=tuple(notes),
    )


def _square_input_side(model: Any) -> int | None:
    shape = model.input_shape
    if isinstance(shape, list):
        shape = shape[0]
    height, width = shape[1:3]
    return int(height) if height is not None and height == width else None


def _output_count(model: Any) -> int | None:
    shape = model.output_shape
    if isinstance(shape, list):
        shape = shape[0]
    return None if shape[-1] is None else int(shape[-1])


def classifier_for_run(run_id: str, checkpoint: str = "best") -> Classifier:
    """The classifier of a training run: its saved model (``best``, falling back to ``last``, or ``last``),
    its class names, and the image size and resizing it was trained with. Cached until the file changes."""
    from core import runs

    if checkpoint not in CHECKPOINTS:
        raise ConfigError(f"Checkpoint must be one of {', '.join(CHECKPOINTS)} (got {checkpoint!r}).")
    record = runs.get_run(run_id)
    path = record.model_path if checkpoint == "best" else record.last_model
    if path is None:
        raise RunError(
            f"Run {run_id} ({record.name}) has no saved model yet: one is saved after each finished "
            "epoch. Wait for its first epoch, or pick another run."
        )
    try:
        stat = path.stat()
    except OSError:
        raise RunError(f"The saved model of run {run_id} was removed while it was being opened; try again.") from None
    return _run_classifier(run_id, str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=MODEL_CACHE_SIZE)
def _run_classifier(run_id: str, path: str, mtime_ns: int, size: int) -> Classifier:
    from core import runs

    record = runs.get_run(run_id)
    model = cached_model(path)
    outputs = _output_count(model) or 0
    names, notes = _run_class_names(record, outputs)
    image_size = _square_input_side(model) or record.config.model.effective_image_size
    return _wrap_model(
        model, names, image_size=image_size, preprocessing="stretch", name=record.name, source=path, notes=notes
    )


def _run_class_names(record: Any, outputs: int) -> tuple[list[str], list[str]]:
    """The run's class names in output order: from its folder's ``class_names.json``, else from its data
    source; numbered placeholders (with a note saying why) when neither matches the model."""
    from core.data import describe

    saved = record.folder / CLASS_NAMES_FILE
    try:
        names = [str(name) for name in json.loads(saved.read_text(encoding="utf-8"))]
        if len(names) == outputs:
            return names, []
    except (OSError, ValueError, TypeError):
        pass
    source = record.config.data.source
    try:
        names = list(describe(record.config.data).class_names)
        reason = (
            f"its data source {source} now has {len(names)} classes but the model has {outputs} outputs"
            if len(names) != outputs
            else ""
        )
    except Exception as error:  # any data source trouble: the photos can still be classified, by number
        names, reason = [], f"its data source {source} cannot be read here ({error})"
    if not reason:
        return names, []
    placeholders = [f"class {i + 1}" for i in range(outputs)]
    return placeholders, [
        f"The class names of this run are unknown because {reason}; classes are numbered "
        "in their training order instead."
    ]


_dog_classifier: Classifier | None = None
_dog_lock = threading.Lock()


def imagenet_dog_classifier(progress: Progress | None = None) -> Classifier:
    """EfficientNet-Lite0's ImageNet classifier cut down to the 120 Stanford Dogs breeds (no training),
    with ImageNet's evaluation preprocessing. Built once per process (a few seconds)."""
    global _dog_classifier
    with _dog_lock:
        if _dog_classifier is None:
            from core.imagenet import dog_breed_classifier

            _dog_classifier = _wrap_model(
                dog_breed_classifier(progress=progress),
                dog_breed_names(),
                image_size=IMAGENET_SIZE,
                preprocessing="imagenet",
                name="ImageNet dog breeds (EfficientNet-Lite0, no training)",
                source="EfficientNet-Lite0 ImageNet weights, restricted to the 120 Stanford Dogs breeds",
            )
        return _dog_classifier
