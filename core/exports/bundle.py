"""What an export zip holds: the model, ``labels.txt`` (one class per line, in output order), ``model.json`` (what
a caller must know to feed it) and a standalone ``predict.py`` that prints a photo's top-5 without Transfer Lab."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

from core.exports.formats import ExportFormat
from core.exports.verification import Report

MODEL_CARD = "model.json"
LABELS = "labels.txt"
SCRIPT = "predict.py"
RESIZE = (
    "stretch the photo to input_size x input_size (no crop), bilinear as tf.image.resize (half-pixel centres, "
    "no antialiasing), round to whole pixel values"
)


def model_card(
    export_format: ExportFormat,
    *,
    run_id: str,
    run_name: str,
    image_size: int,
    class_names: Sequence[str],
    report: Report,
) -> dict:
    """``model.json``: the input a caller must give, what comes out, where the model came from, how it verified."""
    return {
        "format": export_format.name,
        "label": export_format.label,
        "model_file": export_format.model_file,
        "input_size": image_size,
        "input_shape": [1, image_size, image_size, 3],
        "input_dtype": export_format.input_dtype,
        "channel_order": "RGB",
        "value_range": [0, 255],
        "preprocessing": RESIZE + "; scaling to the network's range happens inside the model",
        "output": f"{len(class_names)} class probabilities (softmax), in the order of {LABELS}",
        "classes": len(class_names),
        "run": {"id": run_id, "name": run_name},
        "verification": report.to_dict(),
        "predict": f"pip install {export_format.requires}; python {SCRIPT} photo.jpg",
    }


def write_zip(
    target: Path, export_format: ExportFormat, model_file: Path, card: dict, class_names: Sequence[str]
) -> None:
    """Write the zip to a temporary name beside ``target``, then rename: a reader never sees half of it."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            if model_file.is_dir():
                for path in sorted(model_file.rglob("*")):
                    if path.is_file():
                        archive.write(path, f"{export_format.model_file}/{path.relative_to(model_file)}")
            else:
                archive.write(model_file, export_format.model_file)
            archive.writestr(LABELS, "".join(f"{name}\n" for name in class_names))
            archive.writestr(MODEL_CARD, json.dumps(card, indent=2) + "\n")
            archive.write(export_format.script_path, SCRIPT)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
