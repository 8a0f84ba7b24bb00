"""How a run's Keras model becomes each deployable file.

Every converter takes a ``Source`` (the Keras model, a scratch folder, the run's calibration images) and writes
one model file or folder. The model keeps its own preprocessing (rescaling is a layer inside it), so every export
takes 0-255 RGB pixels, as the run's training images were. TensorFlow, LiteRT's converter and tf2onnx are
imported inside the converters.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ONNX_OPSET = 17
"""tf2onnx 1.17 converts EfficientNet-Lite0 and B0 cleanly at this opset; onnxruntime 1.32 runs it."""


@dataclass
class Source:
    """What the converters start from. The SavedModel is made once, on first use, and shared by the formats
    built on it (SavedModel itself and the three TFLite ones)."""

    model: Any
    image_size: int
    work: Path
    calibration: Callable[[], Iterable[np.ndarray]]  # uint8 (size, size, 3) training images
    _saved_model: Path | None = field(default=None, init=False, repr=False)

    def saved_model(self) -> Path:
        if self._saved_model is None:
            path = self.work / "saved_model"
            self.model.export(str(path), format="tf_saved_model", verbose=False)
            self._saved_model = path
        return self._saved_model


def saved_model(source: Source, target: Path) -> None:
    """TensorFlow Serving's format: Keras' own export, whose ``serve`` signature takes float32 0-255 batches."""
    shutil.copytree(source.saved_model(), target)


def _tflite(source: Source, target: Path, configure: Callable[[Any, Source], None]) -> None:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(source.saved_model()))
    configure(converter, source)
    target.write_bytes(converter.convert())


def _float16_weights(converter: Any, source: Source) -> None:
    import tensorflow as tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


def _full_integer(converter: Any, source: Source) -> None:
    """Every op in int8, calibrated on training images; uint8 in and out, so a camera frame goes in as it is
    (the input's scale is 1 and its zero point 0: the calibrated range is the pixels' own 0-255)."""
    import tensorflow as tf

    def representative() -> Iterable[list[np.ndarray]]:
        for image in source.calibration():
            yield [image[None].astype(np.float32)]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8


def tflite_float32(source: Source, target: Path) -> None:
    _tflite(source, target, lambda converter, source: None)


def tflite_float16(source: Source, target: Path) -> None:
    """Weights stored as float16 (half the size), computed in float32 on a CPU."""
    _tflite(source, target, _float16_weights)


def tflite_int8(source: Source, target: Path) -> None:
    _tflite(source, target, _full_integer)


def onnx(source: Source, target: Path) -> None:
    """tf2onnx straight from the Keras model, with a batch of any size named ``image``."""
    import tensorflow as tf
    import tf2onnx

    size = source.image_size
    signature = (tf.TensorSpec((None, size, size, 3), tf.float32, name="image"),)
    tf2onnx.convert.from_keras(source.model, input_signature=signature, opset=ONNX_OPSET, output_path=str(target))
