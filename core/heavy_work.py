"""Heavy work in a process that many sessions share: the app's server, with a class on it and a run training.

One Streamlit server runs every browser session's page in a thread of one process, on the same cores as the
training process. Work that cannot be shared between sessions through a cache (an augmentation preview for a
new setting, a Grad-CAM for a new photo) goes through ``bounded()``: ``SLOTS`` of it run at once, the rest wait
their turn, so thirty sessions asking at once queue instead of each starting TensorFlow's thread pools and
starving the trainer.

``share_tensorflow_with_sessions()`` sets up TensorFlow for such a process, once, before its first use there:

- few threads (``INTRA_OP_THREADS``, ``INTER_OP_THREADS``): a preview is small, and the cores belong to the
  training process first. Set through ``tf.config`` and not through the environment, which the training
  processes that the server starts would inherit. When TensorFlow was already started in the process it
  keeps its threads (TensorFlow allows no change then).
- Keras' global state is kept: Streamlit calls ``keras.backend.clear_session()`` after every script run once
  Keras is imported (each fragment refresh too), which runs a full garbage collection over TensorFlow's objects
  (most of the server's CPU with a class on the Train page), drops TensorFlow's kernel cache, and resets state
  that the other sessions' threads are using at that moment. Nothing in the app relies on it being cleared.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator

SLOTS = 1
INTRA_OP_THREADS = 1
INTER_OP_THREADS = 1

_slots = threading.BoundedSemaphore(SLOTS)


@contextlib.contextmanager
def bounded() -> Iterator[None]:
    """Hold one of the process's ``SLOTS`` for heavy work, waiting for one to be free."""
    with _slots:
        yield


@functools.cache
def share_tensorflow_with_sessions() -> None:
    """Few TensorFlow threads and a Keras state that is never cleared, for this process (see the module)."""
    import keras
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):  # TensorFlow already started here: it keeps its threads
        tf.config.threading.set_intra_op_parallelism_threads(INTRA_OP_THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(INTER_OP_THREADS)
    keras.backend.clear_session = _keep_keras_state


def _keep_keras_state(free_memory: bool = True) -> None:
    """Stands in for ``keras.backend.clear_session`` in a shared process: clears nothing."""
