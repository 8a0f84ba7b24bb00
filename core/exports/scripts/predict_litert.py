"""Top-5 classes of a photo with this TFLite model: python predict.py photo.jpg (needs numpy pillow ai-edge-litert)."""

import json
import sys
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from PIL import Image, ImageOps

HERE = Path(__file__).parent
INFO = json.loads((HERE / "model.json").read_text())
LABELS = (HERE / "labels.txt").read_text().splitlines()


def pixels(path: str, size: int) -> np.ndarray:
    """Stretch to size x size as in training: tf.image.resize's bilinear (half-pixel centres, no antialias), 0-255."""
    image = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"), np.float32)
    taps = []
    for n in image.shape[:2]:
        at = np.clip((np.arange(size, dtype=np.float32) + 0.5) * np.float32(n / size) - 0.5, 0, n - 1)
        low = np.floor(at).astype(int)
        taps.append((low, np.minimum(low + 1, n - 1), (at - low).astype(np.float32)))
    (y0, y1, fy), (x0, x1, fx) = taps
    top, bottom = (image[y][:, x0] + (image[y][:, x1] - image[y][:, x0]) * fx[None, :, None] for y in (y0, y1))
    return np.rint(top + (bottom - top) * fy[:, None, None]).clip(0, 255)


interpreter = Interpreter(model_path=str(HERE / INFO["model_file"]))
interpreter.allocate_tensors()
given, wanted = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
interpreter.set_tensor(given["index"], pixels(sys.argv[1], INFO["input_size"])[None].astype(given["dtype"]))
interpreter.invoke()
scores = interpreter.get_tensor(wanted["index"])[0].astype(np.float32)
scale, zero_point = wanted["quantization"]
scores = (scores - zero_point) * scale if scale else scores  # an int8 model's output is quantized
for k in np.argsort(-scores, kind="stable")[:5]:
    print(f"{scores[k]:.3f}  {LABELS[k]}")
