"""A run's model in the formats people deploy, each verified against the Keras model before it is offered.

One module per concept:

- ``formats``: the table of formats (SavedModel, TFLite float32 / float16 / int8, ONNX): file, converter, runner,
  standalone script, agreement threshold.
- ``converters``, ``runners``: Keras model -> file; file -> class scores, with the runtime a deployment uses
  (LiteRT, onnxruntime, TensorFlow).
- ``verification``: the export against the Keras model on the run's test split: agreement, accuracy, size, latency.
- ``bundle``: the zip: model, ``labels.txt``, ``model.json``, ``predict.py`` (from ``scripts/``).
- ``jobs``: status files under ``runs/<id>/exports/<format>/``, the detached worker (``worker``), the conversion.
- ``cli`` (``python -m core.exports --run ID --format tflite-int8|all``).

Importing this package is cheap: TensorFlow, LiteRT, tf2onnx and onnxruntime load only inside a conversion.
"""

from core.exports.formats import ALL, FORMATS, ExportFormat
from core.exports.jobs import (
    DONE,
    FAILED,
    NOT_CONVERTED,
    OUTDATED,
    QUEUED,
    RUNNING,
    ExportState,
    chosen_formats,
    convert,
    export_states,
    format_folder,
    run_model,
    start_exports,
)
from core.exports.verification import Report

__all__ = [
    "ALL",
    "DONE",
    "FAILED",
    "FORMATS",
    "NOT_CONVERTED",
    "OUTDATED",
    "QUEUED",
    "RUNNING",
    "ExportFormat",
    "ExportState",
    "Report",
    "chosen_formats",
    "convert",
    "export_states",
    "format_folder",
    "run_model",
    "start_exports",
]
