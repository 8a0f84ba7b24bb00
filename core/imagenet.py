"""ImageNet knowledge that works offline: class names, a dog-breed classifier with no training, and the
standard evaluation preprocessing.

Why: learners should see what a pretrained backbone already knows before they train anything. ImageNet-1k
contains all 120 Stanford Dogs breeds, so Lite0's ImageNet classifier restricted to those 120 classes is a
dog-breed classifier for free -- the baseline that transfer learning has to beat.

``resources/imagenet_wnids.txt`` lists the 1000 WordNet ids in ImageNet order (as TFDS' imagenet2012
``labels.txt``); ``resources/imagenet_classes.txt`` the matching names (the first WordNet lemma of each id, from
timm's ``imagenet_synset_to_lemma.txt``, with the two doubled names "crane" and "maillot" told apart).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from core.errors import ConfigError, ImageUnreadable

RESOURCES = Path(__file__).parent / "resources"
IMAGENET_SIZE = 224
CENTRE_CROP_FRACTION = 0.875


def _lines(name: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in (RESOURCES / name).read_text(encoding="utf-8").splitlines() if line.strip())


@cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names for people, index i = output i of an ImageNet classifier."""
    return _lines("imagenet_classes.txt")


@cache
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet ids (``n01440764`` ...) in the classifier's output order."""
    return _lines("imagenet_wnids.txt")


@cache
def stanford_dogs_folders() -> tuple[str, ...]:
    """The 120 Stanford Dogs class folders (``n02085620-Chihuahua`` ...), sorted by WordNet id."""
    return _lines("stanford_dogs_classes.txt")


def breed_name(folder: str) -> str:
    """A Stanford Dogs folder name as people write the breed: ``n02085640-Maltese_dog`` -> ``Maltese dog``."""
    return folder.split("-", 1)[-1].replace("_", " ")


@cache
def dog_breed_names() -> tuple[str, ...]:
    """The 120 breed names, in the order of the dog-breed classifier's outputs."""
    return tuple(breed_name(folder) for folder in stanford_dogs_folders())


@cache
def dog_imagenet_indices() -> tuple[int, ...]:
    """For each Stanford Dogs breed, its ImageNet-1k class index (151-268 without 251, then 273-275)."""
    index_of = {wnid: index for index, wnid in enumerate(imagenet_wnids())}
    return tuple(index_of[folder.split("-", 1)[0]] for folder in stanford_dogs_folders())


def dog_breed_classifier(progress: Callable[[int, int, str], None] | None = None) -> Any:
    """A Keras model from 0..255 RGB images (224x224) to probabilities over the 120 Stanford Dogs breeds.

    EfficientNet-Lite0 with its ImageNet classifier cut down to the 120 dog classes: the Dense layer keeps
    only those 120 columns, so its softmax is the ImageNet softmax renormalised over the dog breeds.
    No training; the outputs line up with ``dog_breed_names()``.
    """
    import keras

    from core.backbones.lite0 import TOP_DROPOUT_RATE, converted_weights, efficientnet_lite0, imagenet_source_file

    kernel, bias = converted_weights(imagenet_source_file(), progress=progress)["predictions"]
    indices = list(dog_imagenet_indices())
    backbone = efficientnet_lite0(
        include_top=False,
        weights="imagenet",
        pooling="avg",
        input_shape=(IMAGENET_SIZE, IMAGENET_SIZE, 3),
        progress=progress,
    )
    features = keras.layers.Dropout(TOP_DROPOUT_RATE, name="top_dropout")(backbone.output)
    head = keras.layers.Dense(len(indices), activation="softmax", name="dog_predictions")
    outputs = head(features)
    head.set_weights([kernel[:, indices], bias[indices]])
    return keras.Model(backbone.input, outputs, name="imagenet_dog_breeds")


def imagenet_eval_array(image: Image.Image, size: int = IMAGENET_SIZE) -> np.ndarray:
    """The standard ImageNet evaluation view of a photo: upright, centre crop, bicubic resize, RGB 0..255.

    Applies the EXIF orientation, crops the central square of 87.5% of the shorter side and resizes it to
    ``size`` x ``size`` with bicubic interpolation. Returns float32 of shape (size, size, 3).
    """
    try:
        upright = ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, ValueError) as error:
        raise ImageUnreadable(f"This image could not be decoded ({error}); try another JPEG or PNG file.") from error
    width, height = upright.size
    side = CENTRE_CROP_FRACTION * min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    resized = upright.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))
    return np.asarray(resized, dtype=np.float32)


def top_predictions(probabilities: np.ndarray, names: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most probable classes of one prediction vector, as (name, probability), best first."""
    probabilities = np.asarray(probabilities).reshape(-1)
    if probabilities.size != len(names):
        raise ConfigError(
            f"The model gives {probabilities.size} outputs but there are {len(names)} "
            "class names; it is not the classifier these names belong to."
        )
    order = np.argsort(probabilities)[::-1][:k]
    return [(names[i], float(probabilities[i])) for i in order]
