"""Classify photos with a trained run or the no-training ImageNet dog classifier, and show where it looked.

A ``Classifier`` bundles what a prediction needs: the Keras model, its class names, its input size and
the preprocessing that turns a photo into the model's input (a trained run stretches the photo to its
training size, exactly as its training data was resized; the ImageNet dog classifier takes the standard
ImageNet evaluation view, a centre crop). Build one with ``classifier_for_run`` or
``imagenet_dog_classifier``; both are cached, so a page can call them on every rerun.

``classify`` takes uploads, files or PIL images and never raises for a bad file: each input gets a
``Result`` with its top-k classes or a sentence saying what is wrong with it. Good images are batched
into one call of a compiled inference function (one ``tf.function`` per classifier, traced once),
which is about 3x faster than ``model.predict`` for a single photo; while one batch is in the model,
the next one is decoded in a background thread.

``grad_cam`` shows which part of the photo drove a class score (Grad-CAM on the last convolutional
feature map, mapped back onto the photo), and ``overlay`` paints it over the photo.

Command line: ``python -m core.predict --run RUN_ID photo.jpg folder/`` or ``--imagenet-dogs``; one
JSON line per file. TensorFlow is imported only when a model is loaded or called.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from core.errors import ConfigError, ImageUnreadable, RunError, TransferLabError
from core.images import DEFAULT_LIMITS, DecodeLimits, decode_image, is_image_path, read_image_file, \
    resize_for_model
from core.imagenet import CENTRE_CROP_FRACTION, IMAGENET_SIZE, dog_breed_names, imagenet_eval_array

Progress = Callable[[int, int, str], None]
Box = tuple[float, float, float, float]

TOP_K = 5
BATCH_SIZE = 32
CHECKPOINTS = ("best", "last")
CLASS_NAMES_FILE = "class_names.json"
"""Optional file in a run's folder listing its class names in output order (read before the data source)."""
MODEL_CACHE_SIZE = 4
DEFAULT_OPACITY = 0.45
UNSURE_BELOW = 0.40
"""A top class under this probability is a guess: with 120 breeds, 40% is already far above chance (0.8%)."""
UNSURE_MARGIN = 0.10
"""A top class ahead of the runner-up by less than this (10 percentage points) is a coin toss between the two."""


# ---------------------------------------------------------------------------------------------- preprocessing

@dataclass(frozen=True)
class Preprocessing:
    """How a photo becomes a model input, and which part of the photo the model gets to see."""

    name: str
    description: str  # for people; ``{size}`` is replaced by the input size
    prepare: Callable[[Image.Image, int], np.ndarray]  # upright RGB photo, side -> float32 (side, side, 3) 0..255
    view_box: Callable[[int, int], Box]  # photo (width, height) -> (left, top, right, bottom) the model sees


def _stretch_as_in_training(image: Image.Image, size: int) -> np.ndarray:
    """What the training pipeline does: bilinear resize to a square (no crop), rounded to whole pixel values."""
    return np.rint(resize_for_model(image, size))


def _whole_photo(width: int, height: int) -> Box:
    return 0.0, 0.0, float(width), float(height)


def _imagenet_evaluation(image: Image.Image, size: int) -> np.ndarray:
    return imagenet_eval_array(image, size)


def _centre_crop(width: int, height: int) -> Box:
    """The square ``imagenet_eval_array`` crops: 87.5% of the shorter side, centred."""
    side = CENTRE_CROP_FRACTION * min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


PREPROCESSING: dict[str, Preprocessing] = {row.name: row for row in (
    Preprocessing("stretch", "Stretched to {size} x {size} pixels, as the training images were",
                  _stretch_as_in_training, _whole_photo),
    Preprocessing("imagenet", "Centre crop (87.5% of the shorter side) resized to {size} x {size} pixels, "
                  "ImageNet's evaluation view", _imagenet_evaluation, _centre_crop),
)}


# ---------------------------------------------------------------------------------------------- classifiers

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
    _explain: Any = field(default=None, init=False, repr=False)

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
            raise ConfigError(f"{self.name} takes batches of shape (n, {self.image_size}, {self.image_size}, 3) "
                              f"(got {batch.shape}).")
        try:
            scores = np.asarray(self._inference_function()(batch), dtype=np.float32)
        except TransferLabError:
            raise
        except Exception as error:  # TensorFlow's many error types; one sentence for people
            raise RunError(f"{self.name} could not classify these images ({type(error).__name__}: "
                           f"{' '.join(str(error).split())[:200]}). The model file may not match this "
                           "version of Transfer Lab: train the run again.") from error
        if scores.ndim != 2 or scores.shape[1] != self.num_classes:
            raise RunError(f"{self.name} gives {scores.shape[-1]} outputs per image but has "
                           f"{self.num_classes} class names; it is not the model these names belong to.")
        return scores if _are_probabilities(scores) else _softmax(scores)

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
                    input_signature=[tf.TensorSpec([None, self.image_size, self.image_size, 3], tf.float32)])
            return self._infer

    def _explanation_function(self) -> Any:
        with self._lock:
            if self._explain is None:
                self._explain = _build_grad_cam_function(self.model, self.image_size)
            return self._explain


def _are_probabilities(scores: np.ndarray) -> bool:
    return bool((scores >= 0).all() and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3))


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def load_model(path: str | os.PathLike[str]) -> Any:
    """A saved ``.keras`` model for inference (safe mode, not compiled), cached while the file is unchanged.

    Transfer Lab's augmentation layers are registered first, so models that contain them load.
    """
    path = Path(path).expanduser().resolve()
    try:
        stat = path.stat()
    except OSError:
        raise RunError(f"The model file {path} does not exist: its run may have been deleted, or not have "
                       "finished an epoch yet.") from None
    return _load_model_file(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=MODEL_CACHE_SIZE)
def _load_model_file(path: str, mtime_ns: int, size: int) -> Any:
    import keras

    from core.augment import register_layers

    register_layers()
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # Keras raises many types for a bad file; one message for people
        raise RunError(f"The model file {path} could not be loaded ({type(error).__name__}: "
                       f"{' '.join(str(error).split())[:200]}). It may be damaged or saved by another "
                       "version: train the run again.") from error


def classifier_from_file(path: str | os.PathLike[str], class_names: Sequence[str], *,
                         image_size: int | None = None, preprocessing: str = "stretch", name: str = "",
                         notes: Sequence[str] = ()) -> Classifier:
    """A classifier around a saved model; the input size defaults to the model's own."""
    model = load_model(path)
    return _wrap_model(model, class_names, image_size=image_size, preprocessing=preprocessing,
                       name=name or Path(path).stem, source=str(path), notes=notes)


def _wrap_model(model: Any, class_names: Sequence[str], *, image_size: int | None, preprocessing: str,
                name: str, source: str, notes: Sequence[str] = ()) -> Classifier:
    if preprocessing not in PREPROCESSING:
        raise ConfigError(f"Preprocessing must be one of {', '.join(PREPROCESSING)} (got {preprocessing!r}).")
    size = image_size or _square_input_side(model)
    if size is None:
        raise ConfigError(f"The model {name} does not fix its input size: give image_size.")
    outputs = _output_count(model)
    if outputs is not None and outputs != len(class_names):
        raise ConfigError(f"The model {name} gives {outputs} outputs but {len(class_names)} class names were "
                          "given; they must match one to one.")
    return Classifier(name=name, class_names=tuple(str(n) for n in class_names), image_size=int(size),
                      preprocessing=PREPROCESSING[preprocessing], model=model, source=source, notes=tuple(notes))


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
    path = (record.best_model or record.last_model) if checkpoint == "best" else record.last_model
    if path is None:
        raise RunError(f"Run {run_id} ({record.name}) has no saved model yet: one is saved after each finished "
                       "epoch. Wait for its first epoch, or pick another run.")
    try:
        stat = path.stat()
    except OSError:
        raise RunError(f"The saved model of run {run_id} was removed while it was being opened; try again.") \
            from None
    return _run_classifier(run_id, str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=MODEL_CACHE_SIZE)
def _run_classifier(run_id: str, path: str, mtime_ns: int, size: int) -> Classifier:
    from core import runs

    record = runs.get_run(run_id)
    model = load_model(path)
    outputs = _output_count(model) or 0
    names, notes = _run_class_names(record, outputs)
    image_size = _square_input_side(model) or record.config.model.effective_image_size
    return _wrap_model(model, names, image_size=image_size, preprocessing="stretch", name=record.name,
                       source=path, notes=notes)


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
        reason = (f"its data source {source} now has {len(names)} classes but the model has {outputs} outputs"
                  if len(names) != outputs else "")
    except Exception as error:  # any data source trouble: the photos can still be classified, by number
        names, reason = [], f"its data source {source} cannot be read here ({error})"
    if not reason:
        return names, []
    placeholders = [f"class {i + 1}" for i in range(outputs)]
    return placeholders, [f"The class names of this run are unknown because {reason}; classes are numbered "
                          "in their training order instead."]


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
                dog_breed_classifier(progress=progress), dog_breed_names(), image_size=IMAGENET_SIZE,
                preprocessing="imagenet", name="ImageNet dog breeds (EfficientNet-Lite0, no training)",
                source="EfficientNet-Lite0 ImageNet weights, restricted to the 120 Stanford Dogs breeds")
        return _dog_classifier


# ---------------------------------------------------------------------------------------------- classifying

@dataclass(frozen=True)
class Result:
    """One input's outcome: its top classes, or why it could not be classified."""

    file: str
    top: tuple[tuple[str, float], ...] = ()  # (class name, probability), most probable first
    error: str | None = None
    probabilities: np.ndarray | None = field(default=None, repr=False, compare=False)  # all classes

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def label(self) -> str | None:
        """The most probable class, or None for a file that could not be classified."""
        return self.top[0][0] if self.top else None

    @property
    def class_index(self) -> int | None:
        """Output index of the most probable class (what ``grad_cam`` explains by default)."""
        return None if self.probabilities is None else int(np.argmax(self.probabilities))

    def to_dict(self, key: str = f"top{TOP_K}") -> dict[str, Any]:
        """The CLI's JSON object: ``{"file", key: [{"label", "probability"}, ...]}`` or ``{"file", "error"}``."""
        if self.error is not None:
            return {"file": self.file, "error": self.error}
        return {"file": self.file, key: [{"label": label, "probability": round(p, 6)} for label, p in self.top]}


def unsure_note(result: Result, class_names: Sequence[str]) -> str | None:
    """A plain sentence when the model is unsure of ``result``, else None.

    Unsure means: the top class has less than ``UNSURE_BELOW`` (40%), or leads the runner-up by less
    than ``UNSURE_MARGIN`` (10 points). A model always names one of its classes, even for a photo of
    something else, so a low or contested top probability is the only hint that the answer is a guess.
    """
    if not result.top:
        return None
    label, probability = result.top[0]
    runner_up = result.top[1] if len(result.top) > 1 else None
    if probability >= UNSURE_BELOW and (runner_up is None or probability - runner_up[1] >= UNSURE_MARGIN):
        return None
    if probability < UNSURE_BELOW:
        why = f"its best guess, {label}, gets only {probability:.1%}"
    else:
        why = f"{label} ({probability:.1%}) is barely ahead of {runner_up[0]} ({runner_up[1]:.1%})"
    if tuple(class_names) == tuple(dog_breed_names()):
        what = f"This may not be a dog, or not one of the {len(class_names)} breeds it knows."
    else:
        what = f"This may not show one of its {len(class_names)} classes, or the model needs more training."
    return f"The model is unsure: {why}. {what}"


ImageInput = Any
"""``(name, bytes)``, ``(name, PIL image)``, an uploaded file (``.name`` + ``.getvalue()``), a path,
raw ``bytes`` or a PIL image (taken as already upright, as ``decode_image`` returns it)."""


def open_input(item: ImageInput, position: int = 0,
               limits: DecodeLimits = DEFAULT_LIMITS) -> tuple[str, Image.Image]:
    """(name, upright RGB image) for any accepted input; ``ImageUnreadable`` with a sentence otherwise."""
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
        name, content = item
    elif hasattr(item, "getvalue") and hasattr(item, "name"):
        name, content = str(item.name), item.getvalue()
    elif isinstance(item, (str, os.PathLike)):
        return str(item), read_image_file(item, limits)
    else:
        name, content = _default_name(item, position), item
    if isinstance(content, Image.Image):
        return name, _rgb(content, name)
    if isinstance(content, (bytes, bytearray, memoryview)):
        return name, decode_image(bytes(content), name, limits)
    raise ImageUnreadable(f"{name} is a {type(content).__name__}, not image bytes, a file or a picture.")


def _default_name(item: Any, position: int) -> str:
    file_name = getattr(item, "filename", "") if isinstance(item, Image.Image) else ""
    return Path(file_name).name if file_name else f"image {position + 1}"


def _rgb(image: Image.Image, name: str) -> Image.Image:
    try:
        return image if image.mode == "RGB" else image.convert("RGB")
    except Exception as error:  # a lazily opened picture may fail to load here
        raise ImageUnreadable(f"{name} cannot be converted to RGB ({' '.join(str(error).split())[:120]}). "
                              "Re-save it as JPEG or PNG.") from error


def _prepare(classifier: Classifier, item: ImageInput, position: int,
             limits: DecodeLimits) -> tuple[str, np.ndarray | str]:
    """(name, model input) or (name, error message): the per-file boundary, nothing escapes."""
    name = _guess_name(item, position)
    try:
        name, image = open_input(item, position, limits)
        return name, classifier.prepare(image)
    except TransferLabError as error:
        return name, str(error)
    except MemoryError:
        return name, f"{name} is too large to prepare with the memory available. Resize it and try again."
    except Exception as error:  # the boundary: one odd file must not stop the others
        return name, f"{name} could not be prepared ({type(error).__name__}: {' '.join(str(error).split())[:120]})."


def _guess_name(item: ImageInput, position: int) -> str:
    if isinstance(item, tuple) and item and isinstance(item[0], str):
        return item[0]
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    name = getattr(item, "name", None)
    return str(name) if isinstance(name, str) else _default_name(item, position)


def iter_classify(classifier: Classifier, images: Iterable[ImageInput], k: int = TOP_K, *,
                  batch_size: int = BATCH_SIZE, limits: DecodeLimits = DEFAULT_LIMITS,
                  progress: Progress | None = None) -> Iterator[Result]:
    """``classify`` one batch at a time, in input order: for progress bars and long folders.

    The next batch is decoded in a background thread while the current one is in the model.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k (how many classes to list) must be a whole number of at least 1 (got {k!r}).")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"Batch size must be a whole number of at least 1 (got {batch_size!r}).")
    if isinstance(images, (str, bytes, os.PathLike, Image.Image)) or hasattr(images, "getvalue"):
        images = [images]  # one input given on its own
    return _classified_batches(classifier, images, k, batch_size, limits, progress)


def _classified_batches(classifier: Classifier, images: Iterable[ImageInput], k: int, batch_size: int,
                        limits: DecodeLimits, progress: Progress | None) -> Iterator[Result]:
    total = len(images) if hasattr(images, "__len__") else 0
    numbered = enumerate(images)
    chunks = iter(lambda: list(itertools.islice(numbered, batch_size)), [])

    def prepare_chunk(chunk: list[tuple[int, ImageInput]]) -> list[tuple[str, np.ndarray | str]]:
        return [_prepare(classifier, item, position, limits) for position, item in chunk]

    current = next(chunks, None)
    prepared = prepare_chunk(current) if current is not None else None
    done = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="classify-decode") as decoder:
        while prepared is not None:
            following = next(chunks, None)
            pending = decoder.submit(prepare_chunk, following) if following is not None else None
            results = _classify_prepared(classifier, prepared, k)
            done += len(results)
            if progress is not None:
                progress(done, max(total, done), f"Classified {done} of {max(total, done)} images")
            yield from results
            prepared = pending.result() if pending is not None else None


def classify(classifier: Classifier, images: Iterable[ImageInput], k: int = TOP_K, *,
             batch_size: int = BATCH_SIZE, limits: DecodeLimits = DEFAULT_LIMITS,
             progress: Progress | None = None) -> list[Result]:
    """The top-``k`` classes of every input, in input order; a bad file gets an error result, never an
    exception. See ``ImageInput`` for what an input may be."""
    return list(iter_classify(classifier, images, k, batch_size=batch_size, limits=limits, progress=progress))


def _classify_prepared(classifier: Classifier, prepared: list[tuple[str, np.ndarray | str]],
                       k: int) -> list[Result]:
    good = [i for i, (_, value) in enumerate(prepared) if isinstance(value, np.ndarray)]
    probabilities = classifier.predict(np.stack([prepared[i][1] for i in good])) if good else None
    rows = dict(zip(good, probabilities)) if probabilities is not None else {}
    results = []
    for i, (name, value) in enumerate(prepared):
        if i not in rows:
            results.append(Result(name, error=str(value)))
            continue
        row = rows[i]
        order = np.argsort(row, kind="stable")[::-1][:k]
        results.append(Result(name, tuple((classifier.class_names[j], float(row[j])) for j in order),
                              probabilities=row))
    return results


# ---------------------------------------------------------------------------------------------- Grad-CAM

def grad_cam(classifier: Classifier, image: Image.Image, class_index: int | None = None) -> np.ndarray:
    """Where the model looked for a class: float32 (height, width) in 0..1, the photo's own size.

    Grad-CAM: the last convolutional feature map, each channel weighted by the mean gradient of the class
    score (before the softmax, where the model's head allows) and kept where positive. Parts of the photo the
    model does not see (outside ImageNet's centre crop) are 0. ``class_index`` defaults to the most probable
    class. All zeros when nothing in the photo speaks for that class.
    """
    if class_index is not None and not (isinstance(class_index, (int, np.integer))
                                        and 0 <= class_index < classifier.num_classes):
        raise ConfigError(f"Class index must be between 0 and {classifier.num_classes - 1} (got {class_index!r}).")
    image = _rgb(image, "This picture")
    batch = classifier.prepare(image)[None].astype(np.float32)
    cam = np.asarray(classifier._explanation_function()(batch, np.int32(-1 if class_index is None else class_index)))
    cam = np.maximum(np.nan_to_num(cam, nan=0.0, posinf=0.0, neginf=0.0), 0.0).astype(np.float32)
    heatmap = _onto_photo(cam, image.size, classifier.preprocessing.view_box(*image.size))
    peak = float(heatmap.max(initial=0.0))
    return heatmap / np.float32(peak) if peak > 0 else heatmap


def _onto_photo(cam: np.ndarray, photo_size: tuple[int, int], box: Box) -> np.ndarray:
    """Upsample the feature-map CAM (bilinear) over the part of the photo the model saw."""
    width, height = photo_size
    left, top, right, bottom = (int(round(v)) for v in box)
    left, top = max(left, 0), max(top, 0)
    right, bottom = min(max(right, left + 1), width), min(max(bottom, top + 1), height)
    inside = Image.fromarray(cam, mode="F").resize((right - left, bottom - top), Image.Resampling.BILINEAR)
    heatmap = np.zeros((height, width), np.float32)
    heatmap[top:bottom, left:right] = np.maximum(np.asarray(inside, dtype=np.float32), 0.0)
    return heatmap


def last_feature_map_layer(model: Any) -> Any:
    """The last layer with a 4-D output (a convolutional feature map), looking inside nested models."""
    found = _feature_map_path(model)
    if found is None:
        raise ConfigError(f"{model.name} has no convolutional feature map (no layer with a 4-D output), so "
                          "Grad-CAM cannot show where it looks.")
    return found[-1]


def _feature_map_path(model: Any) -> list[Any] | None:
    """Layers from ``model`` down to its last 4-D output: [layer] or [nested model, ..., layer]."""
    for layer in reversed(model.layers):
        if hasattr(layer, "layers") and layer.layers:
            inner = _feature_map_path(layer)
            if inner is not None:
                return [layer, *inner]
            continue
        try:
            rank = len(layer.output.shape)
        except (AttributeError, ValueError):
            continue
        if rank == 4 and type(layer).__name__ != "InputLayer":
            return [layer]
    return None


def _score_head(final: Any) -> Callable[[Any], Any] | None:
    """For a final layer that applies a softmax, a function from its input to the scores before the softmax."""
    import keras

    activation = getattr(final, "activation", None)
    is_softmax = getattr(activation, "__name__", "") == "softmax"
    if not is_softmax:
        return None
    if isinstance(final, keras.layers.Dense):
        def logits(features: Any) -> Any:
            return keras.ops.matmul(keras.ops.cast(features, final.kernel.dtype), final.kernel) + final.bias

        return logits
    if isinstance(final, keras.layers.Activation):
        return lambda scores: scores
    return None


def _feature_forward(model: Any) -> Callable[[Any], tuple[Any, Any, Any]]:
    """A function images -> (feature map, class scores, outputs) computing ``model``'s outputs."""
    import keras

    path = _feature_map_path(model)
    if path is None:
        last_feature_map_layer(model)  # raises the explanation
    final = model.layers[-1]
    head = _score_head(final)
    if len(path) == 1:
        try:
            pre_final = final.input if head is not None else model.outputs[0]
        except (AttributeError, ValueError):  # a layer shared with another model: use the probabilities
            head, pre_final = None, model.outputs[0]
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        graph = keras.Model(inputs, [path[0].output, pre_final, model.outputs[0]])

        def flat(images: Any) -> tuple[Any, Any, Any]:
            features, pre, outputs = graph(images, training=False)
            return features, head(pre) if head is not None else outputs, outputs

        return flat
    nested = path[0]
    inner = _feature_forward(nested)
    chain = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]

    def chained(images: Any) -> tuple[Any, Any, Any]:
        x, features, scores, before_final = images, None, None, images
        for layer in chain:
            before_final = x
            if layer is nested:
                features, scores, x = inner(x)
            else:
                x = layer(x, training=False)
        if final is not nested:
            scores = head(before_final) if head is not None else x
        return features, scores, x

    return chained


def _build_grad_cam_function(model: Any, image_size: int) -> Any:
    import tensorflow as tf

    forward = _feature_forward(model)
    _check_forward(model, forward, image_size)

    @tf.function(input_signature=[tf.TensorSpec([1, image_size, image_size, 3], tf.float32),
                                  tf.TensorSpec([], tf.int32)])
    def explain(images: Any, class_index: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(images)  # frozen layers' weights are not watched; the input makes the tape record all
            features, scores, _ = forward(images)
            chosen = tf.where(class_index < 0, tf.cast(tf.argmax(scores[0]), tf.int32), class_index)
            score = scores[0, chosen]
        gradients = tape.gradient(score, features)
        weights = tf.reduce_mean(tf.cast(gradients, tf.float32), axis=(1, 2))
        cam = tf.einsum("bhwc,bc->bhw", tf.cast(features, tf.float32), weights)
        return tf.nn.relu(cam[0])

    return explain


def _check_forward(model: Any, forward: Callable[[Any], tuple[Any, Any, Any]], image_size: int) -> None:
    """A model with nested sub-models is replayed layer by layer: make sure that computes the same thing."""
    if len(_feature_map_path(model) or ()) < 2:
        return
    probe = np.random.default_rng(0).uniform(0, 255, (1, image_size, image_size, 3)).astype(np.float32)
    replayed = np.asarray(forward(probe)[2])
    if not np.allclose(replayed, np.asarray(model(probe, training=False)), atol=1e-4):
        raise ConfigError(f"{model.name} nests its convolutional layers in a sub-model inside a graph with "
                          "branches; Grad-CAM supports flat models and chains of layers.")


# ---------------------------------------------------------------------------------------------- drawing

_TURBO_POLYNOMIAL = np.array([  # Google's fit of the Turbo colour map: coefficients of 1, x, ..., x^5 per channel
    [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
    [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
    [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],
])
_LEVELS = np.linspace(0.0, 1.0, 256)
TURBO: np.ndarray = np.clip(np.rint(
    np.stack([_LEVELS ** p for p in range(6)], axis=-1) @ _TURBO_POLYNOMIAL.T * 255), 0, 255).astype(np.uint8)
"""The Turbo colour map as 256 uint8 RGB rows (dark blue, cyan, green, yellow, red): a lookup table, so
colouring a 12-megapixel heatmap costs one indexing pass."""


def colourise(heatmap: np.ndarray) -> np.ndarray:
    """A 0..1 heatmap as uint8 RGB in the Turbo colour map; values outside 0..1 are clipped."""
    levels = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0.0, 1.0)
    return TURBO[np.rint(levels * 255).astype(np.uint8)]


def overlay(image: Image.Image | np.ndarray, heatmap: np.ndarray, opacity: float = DEFAULT_OPACITY) -> np.ndarray:
    """The photo with the coloured heatmap blended over it: uint8 RGB of the photo's size.

    ``opacity`` 0 shows the photo only, 1 the heatmap only. A heatmap of another size is stretched to fit.
    """
    if isinstance(opacity, bool) or not isinstance(opacity, (int, float)) or not 0.0 <= opacity <= 1.0:
        raise ConfigError(f"Opacity must be between 0 and 1 (got {opacity!r}).")
    pixels = np.asarray(_rgb(image, "This picture") if isinstance(image, Image.Image) else image)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ConfigError(f"Expected an RGB image of shape (height, width, 3), got {pixels.shape}.")
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape != pixels.shape[:2]:
        heatmap = np.asarray(Image.fromarray(heatmap, mode="F").resize(
            (pixels.shape[1], pixels.shape[0]), Image.Resampling.BILINEAR), dtype=np.float32)
    weight = np.uint16(round(opacity * 256))  # integer blend: 4x less memory than floats on big photos
    blended = pixels.astype(np.uint16) * (256 - weight) + colourise(heatmap).astype(np.uint16) * weight + 128
    return (blended >> 8).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- command line

def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; folders become their image files (any depth, hidden ones skipped), sorted."""
    expanded: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            expanded.extend(sorted(
                p for p in path.rglob("*")
                if p.is_file() and is_image_path(p)
                and not any(part.startswith(".") for part in p.relative_to(path).parts)))
        else:
            expanded.append(path)
    return expanded


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core.predict",
        description="Classify photos with a trained run or with the ImageNet dog-breed classifier (no training). "
                    "Prints one JSON line per file: {\"file\": ..., \"top5\": [{\"label\": ..., \"probability\": "
                    "...}, ...]} or {\"file\": ..., \"error\": ...}. Files that cannot be read get an error line; "
                    "the exit status is still 0.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", metavar="RUN_ID",
                       help="Classify with this training run's saved model (see the Runs page for ids).")
    which.add_argument("--imagenet-dogs", action="store_true",
                       help="Classify with EfficientNet-Lite0's ImageNet classifier restricted to the 120 "
                            "Stanford Dogs breeds (no training needed, works offline).")
    parser.add_argument("paths", nargs="+", metavar="FILE_OR_FOLDER",
                        help="Image files and/or folders; folders are searched for image files "
                             "(JPEG, PNG, WebP, BMP, GIF, TIFF), in sorted order.")
    parser.add_argument("--top-k", type=int, default=TOP_K, metavar="K",
                        help=f"How many classes to list per file, most probable first (default {TOP_K}); the "
                             "JSON key is top<K>.")
    parser.add_argument("--checkpoint", choices=CHECKPOINTS, default="best",
                        help="With --run: the model with the best validation accuracy (default; falls back "
                             "to the last one) or the one saved after the last finished epoch.")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, metavar="N",
                        help=f"Images per model call (default {BATCH_SIZE}); lower it if memory is short.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = _parser()
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top-k must be at least 1 (got {args.top_k}).")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1 (got {args.batch_size}).")
    files = expand_paths(args.paths)
    if not files:
        parser.error("no image files found in " + ", ".join(args.paths) + ".")
    try:
        classifier = (imagenet_dog_classifier() if args.imagenet_dogs
                      else classifier_for_run(args.run, args.checkpoint))
    except TransferLabError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    for note in classifier.notes:
        print(f"note: {note}", file=sys.stderr)
    key = f"top{args.top_k}"
    for result in iter_classify(classifier, files, args.top_k, batch_size=args.batch_size):
        print(json.dumps(result.to_dict(key), ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
