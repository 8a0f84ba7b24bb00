"""The export formats, one table: what each is for, its file, how it is converted and run, and how closely its
top-1 answers must agree with the Keras model's before it is offered as a plain download."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.catalog import by_name
from core.exports import converters, runners

SCRIPTS = Path(__file__).with_name("scripts")


@dataclass(frozen=True)
class ExportFormat:
    name: str  # what the CLI and the status folder call it
    label: str
    use: str  # where people deploy it, for the page
    model_file: str  # in the zip: a file, or a folder for a SavedModel
    converter: Callable[[converters.Source, Path], None]
    runner: Callable[[Path], runners.Runner]
    script: str  # the standalone predict.py shipped in the zip, from scripts/
    requires: str  # what predict.py needs, for pip
    input_dtype: str  # what the model takes: 0-255 pixels as float32 or as uint8
    threshold: float  # least top-1 agreement with the Keras model on the test split

    @property
    def script_path(self) -> Path:
        return SCRIPTS / self.script


FLOAT_AGREEMENT = 0.99
INT8_AGREEMENT = 0.97  # quantizing every op to 8 bits moves some close calls

FORMATS: dict[str, ExportFormat] = by_name(
    ExportFormat(
        "savedmodel",
        "SavedModel",
        "TensorFlow Serving, TensorFlow in Python",
        "saved_model",
        converters.saved_model,
        runners.tensorflow,
        "predict_tensorflow.py",
        "numpy pillow tensorflow",
        "float32",
        FLOAT_AGREEMENT,
    ),
    ExportFormat(
        "tflite-float32",
        "TFLite float32",
        "phones and single-board computers (LiteRT), as trained",
        "model.tflite",
        converters.tflite_float32,
        runners.litert,
        "predict_litert.py",
        "numpy pillow ai-edge-litert",
        "float32",
        FLOAT_AGREEMENT,
    ),
    ExportFormat(
        "tflite-float16",
        "TFLite float16",
        "phones (LiteRT, GPU delegates), half the size",
        "model.tflite",
        converters.tflite_float16,
        runners.litert,
        "predict_litert.py",
        "numpy pillow ai-edge-litert",
        "float32",
        FLOAT_AGREEMENT,
    ),
    ExportFormat(
        "tflite-int8",
        "TFLite int8",
        "microcontrollers, Edge TPU, fast phone CPUs: full integer, uint8 pixels in",
        "model.tflite",
        converters.tflite_int8,
        runners.litert,
        "predict_litert.py",
        "numpy pillow ai-edge-litert",
        "uint8",
        INT8_AGREEMENT,
    ),
    ExportFormat(
        "onnx",
        "ONNX",
        "onnxruntime: Windows, C#, Java, the browser (onnxruntime-web)",
        "model.onnx",
        converters.onnx,
        runners.onnxruntime,
        "predict_onnx.py",
        "numpy pillow onnxruntime",
        "float32",
        FLOAT_AGREEMENT,
    ),
)
ALL = "all"
