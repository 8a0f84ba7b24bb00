"""How an exported file is run here, to verify it: each takes one uint8 (size, size, 3) image and gives its
class scores, as the standalone ``predict.py`` of its zip does (same runtime, same input type)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

Runner = Callable[[np.ndarray], np.ndarray]


def litert(path: Path) -> Runner:
    """LiteRT's interpreter (no TensorFlow needed), an int8 model's uint8 output turned back into scores."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count())
    interpreter.allocate_tensors()
    given, wanted = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = wanted["quantization"]

    def run(image: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(given["index"], image[None].astype(given["dtype"]))
        interpreter.invoke()
        scores = interpreter.get_tensor(wanted["index"])[0].astype(np.float32)
        return (scores - zero_point) * scale if scale else scores

    return run


def onnxruntime(path: Path) -> Runner:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda image: session.run(None, {name: image[None].astype(np.float32)})[0][0]


def tensorflow(path: Path) -> Runner:
    """The SavedModel's ``serve`` signature, as TensorFlow Serving calls it."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # kept: its variables die with it, and ``serve`` needs them
    return lambda image: loaded.serve(tf.constant(image[None], tf.float32)).numpy()[0]
