"""Every workaround for a Keras or TensorFlow behaviour that training relies on, in one place.

Written against Keras 3.15. After a Keras upgrade, check each function below the way its docstring says;
delete the ones that are no longer needed, and their calls.
"""

from __future__ import annotations

import warnings
from typing import Any

import tensorflow as tf

# The saver's skip-set names, one per kind of object it saves (keras.src.saving.saving_lib.get_attr_skipset).
SAVED_OBJECT_TYPES = ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss")


def fit_under_multi_worker_strategy(model: Any, dataset: tf.data.Dataset) -> None:
    """Two Keras 3.15 defects break ``fit`` under MultiWorkerMirroredStrategy; both are bypassed here.

    1. Before training, ``fit`` builds its metrics by ``strategy.reduce``-ing a whole distributed (x, y)
       batch as one value ("Attempt to convert a value (PerReplica...)"). Only shapes matter for that
       build, so it gets one local batch (of ``dataset``) instead.
    2. After each step it averages the scalar logs across workers with ``axis=0`` ("Invalid reduction
       dimension 0 for input with 0 dimensions"); the mean across replicas needs ``axis=None``.

    Still needed? Train a tiny run on two local workers (``TF_CONFIG`` with two ``localhost`` ports, the
    same ``python -m core.training`` command in two shells) without calling this: either error returns.
    """
    from keras.src.backend.tensorflow import trainer as keras_tf_trainer

    batch = next(iter(dataset.take(1)))
    build = model._maybe_symbolic_build
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: build(data_batch=batch)

    original = keras_tf_trainer.reduce_per_replica
    if getattr(original, "averages_across_workers", False):
        return

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction in ("auto", "mean") and keras_tf_trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return original(values, strategy, reduction)

    reduce_per_replica.averages_across_workers = True
    keras_tf_trainer.reduce_per_replica = reduce_per_replica


def cache_saving_skipsets() -> None:
    """Keras 3.15's saver stores the attribute skip-sets it computes under one name
    (``saving_attr_skipset_*``) and looks them up under another (``saving_attr_skiplist_*``), so every save
    rebuilds them by constructing reference objects: about a third of the time of a frozen model's
    checkpoint, which dominates an epoch on cached features. Store them where it looks; the sets are the
    ones Keras computes, so saved files do not change.

    Still needed? Read ``get_attr_skipset`` in ``keras/src/saving/saving_lib.py``: when the name it reads
    and the name it writes are the same, delete this function.
    """
    try:
        from keras.src.backend.common import global_state
        from keras.src.saving import saving_lib
    except ImportError:
        return
    if not hasattr(saving_lib, "get_attr_skipset"):
        return
    for obj_type in SAVED_OBJECT_TYPES:
        name = f"saving_attr_skiplist_{obj_type}"
        if global_state.get_global_attribute(name) is None:
            global_state.set_global_attribute(name, saving_lib.get_attr_skipset(obj_type))


def ignore_unknown_length_warning() -> None:
    """Keras warns "Your input ran out of data" at the end of every epoch of a dataset whose length it does
    not know, and our image pipelines' length is unknown to it (sources may skip unreadable files).

    Still needed? Train a tiny run with ``--no-feature-cache`` without calling this: if no such warning
    appears after each epoch, delete it.
    """
    warnings.filterwarnings("ignore", message="Your input ran out of data")
