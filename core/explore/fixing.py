"""Fix the data where the map shows it wrong, and see what it changes: relabel or remove images of a dataset made
in the app, then retrain a head on the features already extracted.

The changes go through ``core.datasets`` (one rename each, to the trash for a removal, so the Data page can
restore them) and the features are carried over by file (``features.carried_over``): an image's features do not
depend on its label, so nothing goes through the backbone again and the next run on the dataset finds them in
the feature cache. The head is the frozen regime's (BatchNormalization, Dropout, softmax Dense), trained with
the same optimiser for ``HEAD_EPOCHS`` epochs on the training rows and measured on the test rows: seconds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from core import datasets
from core.errors import DatasetError
from core.explore.features import carried_over

if TYPE_CHECKING:
    from core.explore.features import MapFeatures

HEAD_EPOCHS = 10
HEAD_LEARNING_RATE = 1e-2  # the live demo's: a head on cached features converges in a few epochs with it
HEAD_BATCH = 32
HEAD_DROPOUT = 0.2


@dataclass(frozen=True)
class HeadResult:
    """A head trained on a map's features: how it does on the test images, and how long it took."""

    accuracy: float
    loss: float
    seconds: float
    num_train: int
    num_test: int


@dataclass(frozen=True)
class Change:
    """Move the image of ``row`` to ``new_class``, or remove it (``new_class`` None)."""

    row: int
    new_class: str | None = None


@dataclass(frozen=True, eq=False)
class FixOutcome:
    before: HeadResult
    after: HeadResult
    features: MapFeatures  # the map's features after the change
    applied: list[str]  # one sentence per change


def retrain_head(
    features: MapFeatures, epochs: int = HEAD_EPOCHS, seed: int = 0, learning_rate: float = HEAD_LEARNING_RATE
) -> HeadResult:
    """Train the frozen regime's head on the training rows, then measure it on the test rows."""
    import keras

    from core.models import compile_model

    started = time.perf_counter()
    keras.utils.set_random_seed(seed)
    classes = len(features.class_names)
    one_hot = np.eye(classes, dtype=np.float32)[features.labels]
    train, test = ~features.is_test, features.is_test
    inputs = keras.Input(shape=(features.features.shape[1],), name="features")
    x = keras.layers.BatchNormalization(name="head_bn")(inputs)
    x = keras.layers.Dropout(HEAD_DROPOUT, name="top_dropout")(x)
    head = keras.Model(inputs, keras.layers.Dense(classes, activation="softmax", name="pred")(x), name="map_head")
    compile_model(head, learning_rate, 0.0)
    head.fit(features.features[train], one_hot[train], epochs=epochs, batch_size=HEAD_BATCH, shuffle=True, verbose=0)
    loss, accuracy, _ = head.evaluate(features.features[test], one_hot[test], batch_size=256, verbose=0)
    return HeadResult(float(accuracy), float(loss), time.perf_counter() - started, int(train.sum()), int(test.sum()))


def ref_of(features: MapFeatures, row: int) -> str:
    """The image's reference in its dataset ("<class>/<file>"), what every ``core.datasets`` change takes."""
    path = features.files[row]
    return f"{path.parent.name}/{path.name}"


def apply_changes(features: MapFeatures, changes: list[Change]) -> list[str]:
    """Relabel or remove the images, one ``core.datasets`` call each; returns what was done, in words."""
    data = features.data
    if data.kind != "local":
        raise DatasetError(
            f"Only a dataset made in the app can be changed here, and {data.source} is not one. Make one on the Data "
            "page (a zip of this folder imports it) to fix its labels from the map."
        )
    done = []
    for change in changes:
        ref = ref_of(features, change.row)
        if change.new_class is None:
            datasets.remove_image(data.location, ref)
            done.append(f"Removed {ref} to the trash.")
        elif change.new_class != ref.split("/", 1)[0]:
            moved = datasets.move_image(data.location, ref, change.new_class)
            done.append(f"Moved {ref} to '{moved.class_name}'.")
    return done


def fix_and_retrain(
    features: MapFeatures,
    changes: list[Change],
    *,
    others: Sequence[MapFeatures] = (),
    epochs: int = HEAD_EPOCHS,
    seed: int = 0,
) -> FixOutcome:
    """The head's test accuracy before and after relabelling or removing images, and the map's new features.
    ``others``: the same images' features from other sources (a map beside this one), carried over too."""
    before = retrain_head(features, epochs, seed)
    applied = apply_changes(features, changes)
    fixed = carried_over(features)
    for other in others:
        carried_over(other)
    return FixOutcome(before, retrain_head(fixed, epochs, seed), fixed, applied)
