"""Top-5 classes of a photo with this ONNX model: python predict.py photo.jpg (pip install numpy pillow onnxruntime)."""

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime
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


session = onnxruntime.InferenceSession(str(HERE / INFO["model_file"]), providers=["CPUExecutionProvider"])
batch = pixels(sys.argv[1], INFO["input_size"])[None].astype(np.float32)
scores = session.run(None, {session.get_inputs()[0].name: batch})[0][0]
for k in np.argsort(-scores, kind="stable")[:5]:
    print(f"{scores[k]:.3f}  {LABELS[k]}")
