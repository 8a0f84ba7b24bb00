"""Models: Keras networks built, compiled and loaded from the catalog's backbone and regime rows.

The tables themselves (``core.catalog``) are plain data; this module turns a ``ModelConfig`` into a Keras
model: the backbone the row names, the notebook's head for the frozen regime, the layers a fine-tune
unfreezes, the optimiser and metrics every regime compiles with, and the check that starting weights exist.

TensorFlow and Keras are imported inside functions, so checking weights before a run costs nothing.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.catalog import (
    BACKBONES,
    BUNDLED,
    KERAS_DOWNLOAD,
    LITE0,
    TOP_K,
    imagenet_weights_available,
    missing_weights_message,
)
from core.errors import ConfigError, RunError, WeightsUnavailable
from core.progress import Progress

if TYPE_CHECKING:
    from core.config import ModelConfig

# Keras' EfficientNetB0..B7 functions build stochastic depth with this rate and do not take it as an argument.
KERAS_DROP_CONNECT_RATE = 0.2


KERAS_WEIGHTS_SUFFIXES = (".weights.h5", ".h5", ".hdf5", ".keras")
"""What ``model.load_weights`` reads (HDF5, or a zipped ``.keras`` model)."""


def check_weights(model: ModelConfig) -> None:
    """Refuse, before a run starts, a configuration whose starting weights cannot be had here."""
    weights = model.effective_weights
    if weights == "imagenet" and not imagenet_weights_available(include_top=model.regime == "scratch")[model.backbone]:
        raise WeightsUnavailable(missing_weights_message(model.backbone) + f" Or pick {LITE0}, pretrained offline.")
    if weights not in (None, "imagenet", "none"):
        check_weights_file(Path(weights).expanduser(), model.backbone)


def check_weights_file(path: Path, backbone: str) -> None:
    """A weights file must exist and be of a kind the backbone loads: its header is read, never the network.

    A Lite0 ``.pth`` is read and converted (once; the result is cached for the run), which also refuses a
    hostile or foreign file. Whether a Keras file's layers fit is only known once the model is built.
    """
    if not path.exists():
        raise WeightsUnavailable(
            f"The weights file {path} does not exist: check the path, or choose 'imagenet' or 'none'."
        )
    if not path.is_file():
        raise WeightsUnavailable(
            f"The weights {path} is not a file: give the path of a Keras weights file "
            f"({', '.join(KERAS_WEIGHTS_SUFFIXES)}), or choose 'imagenet' or 'none'."
        )
    name = path.name.lower()
    if name.endswith(".pth"):
        if BACKBONES[backbone].weights_source != BUNDLED:
            raise WeightsUnavailable(
                f"{path.name} is a PyTorch file, which only {LITE0} reads; {backbone} needs a "
                f"Keras weights file ({', '.join(KERAS_WEIGHTS_SUFFIXES)})."
            )
        from core.backbones import lite0

        lite0.converted_weights(path)
        return
    if not name.endswith(KERAS_WEIGHTS_SUFFIXES):
        raise WeightsUnavailable(
            f"{path.name} is not a Keras weights file: Keras reads weights from "
            f"{', '.join(KERAS_WEIGHTS_SUFFIXES)} files. Save them with model.save_weights(...) "
            "or choose 'imagenet' or 'none'."
        )
    if name.endswith(".keras"):
        import zipfile

        readable = zipfile.is_zipfile(path)
    else:
        import h5py

        readable = h5py.is_hdf5(str(path))
    if not readable:
        raise WeightsUnavailable(
            f"{path.name} is named like a Keras weights file but is not one (its content is "
            f"not {'a .keras archive' if name.endswith('.keras') else 'HDF5'}); save the "
            "weights again with model.save_weights(...)."
        )


# ---------------------------------------------------------------------------------------------- building


def _build_backbone(
    backbone: str, *, weights: str | None, drop_connect_rate: float, progress: Progress | None = None, **kwargs: Any
) -> Any:
    """Call the table's builder; turn a failed download or unreadable file into WeightsUnavailable."""
    row = BACKBONES[backbone]
    build = row.build_function()
    accepts = inspect.signature(build).parameters
    if "drop_connect_rate" in accepts:
        kwargs["drop_connect_rate"] = drop_connect_rate
    if "progress" in accepts:
        kwargs["progress"] = progress
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise WeightsUnavailable(
            f"The weights file {weights} does not exist: check the path, or choose 'imagenet' or 'none'."
        )
    include_top = kwargs.get("include_top", True)
    try:
        model = build(weights=weights, **kwargs)
    except WeightsUnavailable:
        raise
    except Exception as error:  # Keras raises a bare Exception ("URL fetch failure") when offline.
        if weights == "imagenet" and row.weights_source == KERAS_DOWNLOAD:
            if not imagenet_weights_available(include_top)[backbone]:
                raise WeightsUnavailable(missing_weights_message(backbone, include_top)) from error
        if weights not in (None, "imagenet"):
            raise WeightsUnavailable(
                f"Could not load the weights file {weights} into {backbone}: {error}. "
                f"It must be a Keras weights file made for {backbone}."
            ) from error
        raise
    if "drop_connect_rate" not in accepts:
        _scale_drop_connect(model, drop_connect_rate / KERAS_DROP_CONNECT_RATE)
    return model


def _scale_drop_connect(model: Any, factor: float) -> None:
    """Keras' EfficientNets fix stochastic depth at 0.2; rescale the per-block rates (``blockNx_drop``)."""
    if factor == 1.0:
        return
    for layer in model.layers:
        if layer.name.startswith("block") and layer.name.endswith("_drop"):
            layer.rate = layer.rate * factor


def _probabilities(features: Any, num_classes: int, name: str) -> Any:
    """The softmax classifier, kept in float32 under mixed precision for a stable loss."""
    import keras
    from keras import layers

    mixed = keras.config.dtype_policy().compute_dtype != "float32"
    return layers.Dense(num_classes, activation="softmax", name=name, dtype="float32" if mixed else None)(features)


def build_scratch(model: ModelConfig, num_classes: int, progress: Progress | None = None) -> Any:
    """Notebook regime 1: the whole network with its own top, random weights."""
    import keras
    from keras import layers

    size = model.effective_image_size
    mixed = keras.config.dtype_policy().compute_dtype != "float32"
    network = _build_backbone(
        model.backbone,
        weights=None,
        drop_connect_rate=model.drop_connect_rate,
        progress=progress,
        include_top=True,
        classes=num_classes,
        input_shape=(size, size, 3),
        classifier_activation=None if mixed else "softmax",
    )
    if not mixed:
        return network
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(network.output)
    return keras.Model(network.input, outputs, name=network.name)


def build_frozen(model: ModelConfig, num_classes: int, progress: Progress | None = None) -> Any:
    """Notebook regime 2: a frozen backbone under a new head, layers flat in one model.

    The backbone is built on our input tensor (as the notebook does), so ``model.layers`` lists the
    backbone's layers one by one and "unfreeze the top 20 layers" means what the notebook means.
    """
    import keras
    from keras import layers

    size = model.effective_image_size
    inputs = layers.Input(shape=(size, size, 3), name="image")
    weights = model.effective_weights
    backbone = _build_backbone(
        model.backbone,
        weights=None if weights == "none" else weights,
        drop_connect_rate=model.drop_connect_rate,
        progress=progress,
        include_top=False,
        input_tensor=inputs,
    )
    backbone.trainable = False
    x = layers.GlobalAveragePooling2D(name="avg_pool")(backbone.output)
    x = layers.BatchNormalization(name="head_bn")(x)
    x = layers.Dropout(model.top_dropout, name="top_dropout")(x)
    outputs = _probabilities(x, num_classes, "pred")
    return keras.Model(inputs, outputs, name=re.sub(r"[^A-Za-z0-9_.-]+", "_", model.backbone).strip("_") + "_frozen")


BUILDERS: dict[str, Callable[..., Any]] = {"scratch": build_scratch, "frozen": build_frozen}


def build_model(model: ModelConfig, num_classes: int, progress: Progress | None = None) -> Any:
    """An uncompiled model for a scratch or frozen run (fine-tuning starts from a saved model instead)."""
    if model.regime not in BUILDERS:
        raise ConfigError(f"The {model.regime!r} regime starts from a saved model: use load_for_finetune().")
    return BUILDERS[model.regime](model, num_classes, progress)


def is_batch_norm(layer: Any) -> bool:
    from keras import layers

    return isinstance(layer, layers.BatchNormalization)


def layers_to_unfreeze(model: Any, top_layers: int, from_block: int | None = None) -> list[Any]:
    """The layers a fine-tune makes trainable: the top ``top_layers`` (or everything from block N on),
    never a BatchNormalization layer, which must keep its ImageNet statistics (Keras 3 runs a
    non-trainable BatchNormalization in inference mode)."""
    candidates = model.layers
    if from_block is not None:
        prefix = f"block{from_block}"
        starts = [
            i
            for i, layer in enumerate(candidates)
            if layer.name.startswith(prefix) and layer.name[len(prefix) : len(prefix) + 1].isalpha()
        ]
        if not starts:
            blocks = sorted(
                {layer.name[5] for layer in candidates if layer.name.startswith("block") and layer.name[5:6].isdigit()}
            )
            raise ConfigError(f"This model has no block {from_block}; its blocks are {', '.join(blocks)}.")
        candidates = candidates[starts[0] :]
    else:
        candidates = candidates[-top_layers:]
    return [layer for layer in candidates if not is_batch_norm(layer)]


def unfreeze_for_finetune(model: Any, top_layers: int, from_block: int | None = None) -> list[str]:
    """Make the chosen layers trainable (notebook's ``unfreeze_model``); returns their names."""
    chosen = layers_to_unfreeze(model, top_layers, from_block)
    for layer in chosen:
        layer.trainable = True
    return [layer.name for layer in chosen]


def load_saved_model(path: str | Path, compile: bool = True) -> Any:
    """A model saved by a run (``.keras``): with its optimizer state when ``compile`` (to train on), without
    it to predict. The one loader of saved models: training, classifying and evaluating all come here.

    Transfer Lab's augmentation layers are registered first, so models that contain them load (Keras' safe
    mode stays on). A missing file raises ``WeightsUnavailable``; a file Keras cannot read, ``RunError``.
    """
    import keras

    from core.augment import register_layers

    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailable(f"The saved model {path} is missing; it may have been deleted with its run.")
    register_layers()
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=compile)
    except Exception as error:  # Keras raises many types for a bad file; one message for people
        raise RunError(
            f"The model file {path} could not be loaded ({type(error).__name__}: "
            f"{' '.join(str(error).split())[:200]}). It may be damaged or saved by another "
            "version: train the run again."
        ) from error


def compile_model(model: Any, learning_rate: float, weight_decay: float, jit_compile: bool | str = False) -> None:
    """A new Adam, with the loss and metrics of ``compile_with_optimizer``. Call inside the strategy's scope."""
    import keras

    optimizer = keras.optimizers.Adam(learning_rate=learning_rate, weight_decay=weight_decay or None)
    compile_with_optimizer(model, optimizer, jit_compile=jit_compile)
    # Create Adam's slots now: created inside the first traced step they make TensorFlow trace it twice,
    # which tripled the first epoch's start-up for a scratch B0 (~95 s -> ~30 s on 2 cores).
    optimizer.build(model.trainable_variables)


def compile_with_optimizer(model: Any, optimizer: Any, jit_compile: bool | str = "auto") -> None:
    """Categorical cross-entropy on one-hot labels, accuracy and top-5 accuracy (history keys ``accuracy``,
    ``top5_accuracy`` and their ``val_`` twins) with ``optimizer``, which another model may share (the cached
    path's whole model shares its head's, so its checkpoints carry the optimizer state)."""
    import keras

    model.compile(
        optimizer=optimizer,
        loss="categorical_crossentropy",
        metrics=[
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.TopKCategoricalAccuracy(k=TOP_K, name="top5_accuracy"),
        ],
        jit_compile=jit_compile,
    )


def parameter_counts(model: Any) -> tuple[int, int]:
    """(total, trainable) parameter counts, as ``model.summary()`` reports them."""
    import numpy as np

    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return int(model.count_params()), trainable
