"""Classifying photos: the top classes of every input, a sentence for every bad one, never an exception.

Good images are batched into one call of the classifier's compiled inference function; while one batch
is in the model, the next one is decoded in a background thread. A ``Result`` carries one input's top-k
classes (and all its probabilities), or why it could not be classified; ``unsure_note`` says in words
when the top class is only a guess.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from core.catalog import TOP_K
from core.errors import ConfigError, TransferLabError
from core.imagenet import dog_breed_names
from core.images import DEFAULT_LIMITS, DecodeLimits
from core.progress import Progress
from core.serving.classifiers import Classifier
from core.serving.inputs import ImageInput, input_name, open_input

BATCH_SIZE = 32
UNSURE_BELOW = 0.40
"""A top class under this probability is a guess: with 120 breeds, 40% is already far above chance (0.8%)."""
UNSURE_MARGIN = 0.10
"""A top class ahead of the runner-up by less than this (10 percentage points) is a coin toss between the two."""


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


def _prepare(
    classifier: Classifier, item: ImageInput, position: int, limits: DecodeLimits
) -> tuple[str, np.ndarray | str]:
    """(name, model input) or (name, error message): the per-file boundary, nothing escapes."""
    name = input_name(item, position)
    try:
        name, image = open_input(item, position, limits)
        return name, classifier.prepare(image)
    except TransferLabError as error:
        return name, str(error)
    except MemoryError:
        return name, f"{name} is too large to prepare with the memory available. Resize it and try again."
    except Exception as error:  # the boundary: one odd file must not stop the others
        return name, f"{name} could not be prepared ({type(error).__name__}: {' '.join(str(error).split())[:120]})."


def iter_classify(
    classifier: Classifier,
    images: Iterable[ImageInput],
    k: int = TOP_K,
    *,
    batch_size: int = BATCH_SIZE,
    limits: DecodeLimits = DEFAULT_LIMITS,
    progress: Progress | None = None,
) -> Iterator[Result]:
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


def _classified_batches(
    classifier: Classifier,
    images: Iterable[ImageInput],
    k: int,
    batch_size: int,
    limits: DecodeLimits,
    progress: Progress | None,
) -> Iterator[Result]:
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


def classify(classifier: Classifier, images: Iterable[ImageInput], k: int = TOP_K, **options: Any) -> list[Result]:
    """The top-``k`` classes of every input, in input order; a bad file gets an error result, never an
    exception. See ``ImageInput`` for what an input may be, and ``iter_classify`` for the keyword ``options``
    (``batch_size``, ``limits``, ``progress``)."""
    return list(iter_classify(classifier, images, k, **options))


def _classify_prepared(classifier: Classifier, prepared: list[tuple[str, np.ndarray | str]], k: int) -> list[Result]:
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
        results.append(
            Result(name, tuple((classifier.class_names[j], float(row[j])) for j in order), probabilities=row)
        )
    return results
