"""The cached-features path: a frozen run's head trained on backbone features extracted once.

With a frozen backbone only the small head learns; this path runs each image through the backbone once
per view (``core.feature_cache`` extracts and keeps the pooled features) and trains the head, the
``build_frozen`` model's own BatchNormalization -> Dropout -> Dense layers with the same optimiser, on them.
The engine does the rest as for every run: records, checkpoints, TensorBoard logs, stops and resuming.

- Augmentation still regularises: epoch e trains on view e mod K (``cached_views``). A view is extracted
  just before the first epoch that uses it, so the first curve points come after one view's extraction,
  not K: the run is fitted in segments of consecutive epochs whose views are ready.
- The head shares the frozen model's layers, so the run saves the full model (the backbone and the head it
  trained, the model ``build_frozen`` makes) as ``model_last.keras`` / ``model_best.keras``, and Evaluate,
  Classify, fine-tuning and export cannot tell the difference.

Two honest differences from the notebook's way: features come from the backbone in inference mode, so
its stochastic depth (random block skipping) never applies; and a run sees K augmented versions of each
image, reused every K epochs, instead of a fresh one every epoch.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from core import runs
from core.errors import RunError
from core.feature_cache import FEATURE_LAYER, HEAD_LAYERS, CachedFeatures, FeatureSet, prepare_features, view_count
from core.models import build_model, compile_model, compile_with_optimizer
from core.progress import Progress
from core.training.callbacks import PROGRESS_EVERY_S
from core.training.path import Fitting, Models, StopRequested, TrainingPath, resumed_model
from core.training.pipelines import batches_per_epoch, drop_remainder

if TYPE_CHECKING:
    from core.config import RunConfig
    from core.data import Splits

PHASE = "extracting features"  # the run's live phase while a view is extracted


def uses_feature_cache(config: RunConfig) -> bool:
    """The engine trains on cached features for frozen runs that ask for it (the default)."""
    return config.model.regime == "frozen" and config.train.feature_cache


class CachedFeaturePath(TrainingPath):
    """Fits the head on cached features, segment by segment, and saves the whole frozen model."""

    device_note = ", cached features"

    def build(self, num_classes: int, done: int, jit_compile: bool | str) -> Models:
        self.num_classes = num_classes
        self.model, self.head = models_for(self.config, self.run_id, num_classes, done, jit_compile)
        return Models(saved=self.model, fitted=self.head)

    def prepare(self, splits: Splits, done: int) -> Fitting:
        self.splits = splits
        self.views = view_count(self.config)
        self.note(PHASE, epoch=done + 1)
        self.feature_set = self._extract([view_for_epoch(done, self.views)], before_epoch=done)
        num_train, batch_size = len(self.feature_set.labels), self.config.train.batch_size
        self.drop = drop_remainder(num_train, batch_size)
        batches = batches_per_epoch(num_train, batch_size)
        return Fitting(
            test=test_dataset(self.feature_set.test, self.num_classes, batch_size),
            num_train=num_train,
            steps_per_epoch=batches,
        )

    def segments(self, done: int, epochs: int) -> Iterable[tuple[int, int]]:
        return segments(done, epochs, self.feature_set)

    def training_data(self, start: int, stop: int) -> Any:
        if self.feature_set.train_views[view_for_epoch(start, self.views)] is None:
            self.note(PHASE, epoch=start + 1)
            self.feature_set = self._extract(
                [view_for_epoch(start, self.views)], before_epoch=start, ready=self.feature_set
            )
        train_cfg = self.config.train
        return training_dataset(
            self.feature_set,
            self.num_classes,
            batch_size=train_cfg.batch_size,
            seed=train_cfg.seed,
            first_epoch=start,
            epochs=stop,
            drop_remainder=self.drop,
        )

    def _extract(self, views: list[int], *, before_epoch: int, ready: FeatureSet | None = None) -> FeatureSet:
        return prepare_features(
            self.config,
            self.model,
            self.splits,
            views=views,
            ready=ready,
            progress=extraction_progress(self.run_id, self.progress, before_epoch + 1),
        )


def segments(first_epoch: int, epochs: int, feature_set: FeatureSet) -> Iterator[tuple[int, int]]:
    """Runs of consecutive epochs (start, stop) for ``fit``: a new run needs view e only at epoch e, so
    the views are extracted one at a time between the first K epochs and the curves start after one view
    rather than K. A run whose views are all cached is one segment."""
    views = len(feature_set.train_views)
    pending = set(feature_set.missing_views())
    start = first_epoch
    while start < epochs:
        pending.discard(view_for_epoch(start, views))
        stop = start + 1
        while stop < epochs and view_for_epoch(stop, views) not in pending:
            stop += 1
        yield start, stop
        start = stop


def extraction_progress(run_id: str | None, progress: Progress | None, epoch: int) -> Progress:
    """Forwards extraction progress to the caller and to the run store (throttled, under the 1-based
    ``epoch`` it precedes), and turns a stop request into ``StopRequested`` within one batch."""
    last_write = {"at": 0.0}

    def report(done: int, total: int, message: str) -> None:
        if progress is not None:
            progress(done, total, message)
        if run_id is None:
            return
        if runs.stop_requested(run_id):
            raise StopRequested
        if time.monotonic() - last_write["at"] >= PROGRESS_EVERY_S or done >= total:
            runs.record_progress(run_id, phase=PHASE, epoch=epoch, batch=done, batches=total)
            last_write["at"] = time.monotonic()

    return report


# ---------------------------------------------------------------------------------------------- the head's data


def epoch_order(count: int, batch_size: int, *, seed: int, epoch: int, drop_remainder: bool) -> list[np.ndarray]:
    """Each batch's row indices for one epoch: a new seeded shuffle every epoch, every image once (bar a
    dropped remainder). Indices are sorted within a batch, which reads the memory map in order."""
    order = np.random.default_rng([seed, epoch]).permutation(count)
    stop = count - count % batch_size if drop_remainder and count >= batch_size else count
    return [np.sort(order[start : start + batch_size]) for start in range(0, stop, batch_size)]


def view_for_epoch(epoch: int, views: int) -> int:
    """Epoch e (0-based) trains on view e mod K."""
    return epoch % views


def feature_batches(
    feature_set: FeatureSet,
    num_classes: int,
    *,
    batch_size: int,
    seed: int,
    first_epoch: int,
    epochs: int,
    drop_remainder: bool,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(features, one-hot labels) for epochs ``first_epoch``..``epochs - 1``, one after the other."""
    one_hot = np.eye(num_classes, dtype=np.float32)[feature_set.labels]
    views = feature_set.train_views
    for epoch in range(first_epoch, epochs):
        features = views[view_for_epoch(epoch, len(views))].features
        for rows in epoch_order(len(one_hot), batch_size, seed=seed, epoch=epoch, drop_remainder=drop_remainder):
            yield np.asarray(features[rows]), one_hot[rows]


def training_dataset(feature_set: FeatureSet, num_classes: int, **schedule: Any) -> Any:
    """``feature_batches`` as one stream for the whole of ``fit`` (``schedule``: its keywords, which epochs in
    which order): with ``steps_per_epoch`` Keras keeps reading the same iterator from epoch to epoch, so the
    stream decides which view each epoch sees."""
    dim = feature_set.train_views[0].features.shape[1]
    signature = (tf.TensorSpec((None, dim), tf.float32), tf.TensorSpec((None, num_classes), tf.float32))
    ds = tf.data.Dataset.from_generator(
        lambda: feature_batches(feature_set, num_classes, **schedule), output_signature=signature
    )
    return ds.prefetch(2)


def test_dataset(test: CachedFeatures, num_classes: int, batch_size: int) -> Any:
    one_hot = np.eye(num_classes, dtype=np.float32)[test.labels]
    return tf.data.Dataset.from_tensor_slices((np.asarray(test.features), one_hot)).batch(batch_size)


# ---------------------------------------------------------------------------------------------- the head


def head_model(model: Any) -> Any:
    """The frozen model's head as a model of its own on pooled features. It shares the frozen model's layers,
    so training it trains the frozen model's head and nothing needs copying back."""
    missing = [name for name in (FEATURE_LAYER, *HEAD_LAYERS) if name not in {layer.name for layer in model.layers}]
    if missing:
        raise RunError(
            f"This model has no {', '.join(missing)} layer(s): cached features need the frozen "
            "regime's model (build_frozen)."
        )
    inputs = keras.Input(shape=(model.get_layer(FEATURE_LAYER).output.shape[-1],), name="features")
    x = inputs
    for name in HEAD_LAYERS:
        x = model.get_layer(name)(x)
    return keras.Model(inputs, x, name=f"{model.name}_head")


def models_for(
    config: RunConfig, run_id: str | None, num_classes: int, done: int, jit_compile: bool | str
) -> tuple[Any, Any]:
    """The frozen model (new, or the run's last checkpoint when resuming) and its compiled head. The model
    shares the head's optimizer, so its saved file carries the optimizer's state (resuming restores Adam's
    moments) and loads like any compiled run model."""
    restored = None
    if done:
        model = resumed_model(run_id, done, num_classes)
        restored = getattr(model, "optimizer", None)
    else:
        model = build_model(config.model, num_classes)
    head = head_model(model)
    compile_model(head, config.effective_learning_rate, config.effective_weight_decay, jit_compile=jit_compile)
    if restored is not None and restored.built:
        targets, sources = head.optimizer.variables, restored.variables
        if [v.shape for v in targets] == [v.shape for v in sources]:
            for target, source in zip(targets, sources):
                target.assign(source)
    compile_with_optimizer(model, head.optimizer)
    return model, head
