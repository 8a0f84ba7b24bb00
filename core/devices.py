"""Which devices a run trains on: a table of ``tf.distribute`` strategies, first match wins.

- a TPU is configured (``TPU_NAME`` or Colab's ``COLAB_TPU_ADDR``): ``TPUStrategy``;
- ``TF_CONFIG`` names several workers: ``MultiWorkerMirroredStrategy`` (one process per worker);
- several GPUs are visible: ``MirroredStrategy``;
- otherwise the default strategy (one GPU, or the CPU).

The batch size in a config is always the global batch, split across replicas by the strategy.
Looking at ``TF_CONFIG`` and describing the machine do not import TensorFlow; creating a strategy does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core import system


def tf_config() -> dict[str, Any]:
    """The parsed ``TF_CONFIG`` environment variable ({} when unset or unreadable)."""
    try:
        return json.loads(os.environ.get("TF_CONFIG", "") or "{}")
    except json.JSONDecodeError:
        return {}


def worker_count() -> int:
    """How many processes train together (1 without a multi-worker TF_CONFIG)."""
    cluster = tf_config().get("cluster", {})
    return max(1, sum(len(cluster.get(kind, [])) for kind in ("chief", "worker")))


def is_chief() -> bool:
    """Whether this process records the run: the 'chief' task, or worker 0 when there is no chief."""
    config = tf_config()
    task = config.get("task", {})
    if worker_count() == 1 or not task:
        return True
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def tpu_address() -> str:
    return os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR", "")


def _gpus() -> list[Any]:
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


def _tpu_strategy() -> Any:
    import tensorflow as tf

    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address())
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _multi_worker_strategy() -> Any:
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy()


def _mirrored_strategy() -> Any:
    import tensorflow as tf

    return tf.distribute.MirroredStrategy()


def _default_strategy() -> Any:
    import tensorflow as tf

    return tf.distribute.get_strategy()


@dataclass(frozen=True)
class StrategyRule:
    name: str
    applies: Callable[[], bool]
    create: Callable[[], Any]


STRATEGIES: tuple[StrategyRule, ...] = (
    StrategyRule("TPU", lambda: bool(tpu_address()), _tpu_strategy),
    StrategyRule("multi-worker", lambda: worker_count() > 1, _multi_worker_strategy),
    StrategyRule("mirrored", lambda: len(_gpus()) > 1, _mirrored_strategy),
    StrategyRule("default", lambda: True, _default_strategy),
)


def choose_strategy() -> StrategyRule:
    return next(rule for rule in STRATEGIES if rule.applies())


def create_strategy() -> tuple[Any, str]:
    """The strategy for this process and a sentence describing it. Call before building any model or
    dataset (a multi-worker strategy must exist before other TensorFlow work)."""
    rule = choose_strategy()
    strategy = rule.create()
    return strategy, describe_strategy(rule.name, strategy)


def _gpu_names() -> list[str]:
    import tensorflow as tf

    names = []
    for gpu in _gpus():
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name", gpu.name))
    return names


def _cpu_text() -> str:
    return f"CPU ({os.cpu_count() or 1} cores)"


def _gpu_text(names: list[str]) -> str:
    if not names:
        return _cpu_text()
    distinct = sorted(set(names))
    return f"{len(names)} GPU{'s' if len(names) > 1 else ''}: {', '.join(distinct)}"


def describe_strategy(rule: str, strategy: Any) -> str:
    """What the training process really uses, e.g. 'CPU (2 cores)' or '2 GPUs: NVIDIA H100 (mirrored)'."""
    if rule == "TPU":
        return f"TPU {tpu_address()} ({strategy.num_replicas_in_sync} cores)"
    local = _gpu_text(_gpu_names())
    if rule == "multi-worker":
        return f"{worker_count()} workers × {local} (multi-worker mirrored)"
    if rule == "mirrored":
        return f"{local} (mirrored)"
    return local


def describe_device() -> str:
    """A forecast for a page, without importing TensorFlow: what a run started now would train on."""
    if tpu_address():
        return f"TPU {tpu_address()}"
    names = system.nvidia_gpus() if system.tensorflow_is_cuda_build() else []
    text = _gpu_text(names)
    if worker_count() > 1:
        return f"{worker_count()} workers × {text} (multi-worker mirrored)"
    return f"{text} (mirrored)" if len(names) > 1 else text


def has_accelerator() -> bool:
    """Whether TensorFlow sees a GPU or a TPU is configured (imports TensorFlow)."""
    return bool(tpu_address()) or bool(_gpus())


def apply_precision(choice: str) -> str:
    """Set Keras' global dtype policy for a run; mixed precision only on a GPU or TPU (a CPU gets no speed
    from it and loses accuracy). Returns the policy in force."""
    import keras

    policy = choice if choice != "off" and has_accelerator() else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def jit_compile_setting() -> bool | str:
    """XLA off on a CPU (it made EfficientNet training ~8x slower there); Keras' own choice elsewhere."""
    return "auto" if has_accelerator() else False
