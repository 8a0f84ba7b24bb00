"""Is the GPU kept busy? Training speed on real photos vs synthetic tensors, GPU busy fraction, extraction speed,
and mixed_float16 vs float32, on one JSON line.

Without a GPU (no ``nvidia-smi`` GPU, or a TensorFlow that sees none) it prints
``{"gpu": false, "reason": ...}`` and exits 0, so it is safe to run anywhere.

With one, at 224 px on ``../shared/datasets/dogs10`` (a folder source, at most 512 training images), the machine's
default batch sizes (``core.machine_defaults``):

- per regime (frozen and fine-tune with EfficientNet-Lite0, scratch with EfficientNetB0 and weights none): training
  images/s over the second of two epochs on the real pipeline vs a ``tf.data`` of random tensors of the same shape
  (the gap is what the input pipeline costs);
- the GPU busy fraction (``nvidia-smi --query-gpu=utilization.gpu`` every 0.2 s) during one frozen epoch without
  the feature cache (the notebook's way) and one fine-tune epoch;
- cached-feature extraction images/s (``core.feature_cache.extract``);
- fine-tune images/s with mixed_float16 vs float32.

Run: ``.venv/bin/python bench/gpu.py`` (a few minutes on an H200; it was written to stay under 8).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DOGS10 = ROOT.parent / "shared" / "datasets" / "dogs10"
SIZE = 224
MAX_TRAIN = 512
LITE0 = "EfficientNet-Lite0 (offline ImageNet)"


def no_gpu_reason() -> str | None:
    """Why this benchmark cannot run here (None when it can); TensorFlow is imported only if a GPU is listed."""
    from core.system import gpu_details

    if not gpu_details():
        return "nvidia-smi lists no GPU"
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return "TensorFlow sees no GPU (the CPU-only build is installed: make run TF_BUILD=cuda)"
    if not DOGS10.is_dir():
        return f"the dogs10 photos are not at {DOGS10}"
    return None


class Busy:
    """Samples the GPU's utilisation every 0.2 s while in a ``with`` block; ``fraction`` is the mean / 100."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()

    def _poll(self) -> None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        while not self._stop.is_set():
            out = subprocess.run(query, capture_output=True, text=True).stdout.split()
            if out:
                self.samples.append(sum(float(v) for v in out) / len(out))
            self._stop.wait(0.2)

    def __enter__(self) -> Busy:
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def fraction(self) -> float | None:
        return round(sum(self.samples) / len(self.samples) / 100, 3) if self.samples else None


def build(regime: str, classes: int, precision: str):
    import keras

    from core.config import ModelConfig
    from core.devices import jit_compile_setting
    from core.models import build_model, compile_model, unfreeze_for_finetune

    keras.mixed_precision.set_global_policy(precision)
    if regime == "scratch":
        model = build_model(ModelConfig(backbone="EfficientNetB0", regime="scratch", image_size=SIZE), classes)
    else:
        model = build_model(ModelConfig(backbone=LITE0, image_size=SIZE), classes)
        if regime == "finetune":
            unfreeze_for_finetune(model, 20)
    compile_model(model, 1e-4, 0.0, jit_compile=jit_compile_setting())
    return model


def images_per_s(model, data, steps: int, batch: int, busy: Busy | None = None) -> float:
    """Images/s over the second of two epochs (the first pays for tracing)."""
    import keras

    times: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            times.append(time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter())

    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    if busy is None:
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[Clock()])
    else:
        with busy:
            model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[Clock()])
    return round(steps * batch / (times[1] - times[0]), 1)


def main() -> int:
    reason = no_gpu_reason()
    if reason:
        print(json.dumps({"gpu": False, "reason": reason}))
        return 0
    import keras
    import tensorflow as tf

    from core.config import AUGMENT_PRESETS, DataConfig
    from core.data import load_splits
    from core.feature_cache import extract
    from core.machine_defaults import this_machine
    from core.training.pipelines import training_pipeline

    machine = this_machine()
    splits = load_splits(DataConfig(source=f"folder:{DOGS10}", max_train_images=MAX_TRAIN), SIZE)
    info = splits.info
    splits_train = splits.train.cache()
    result: dict = {"gpu": True, "device": machine.device, "precision_default": machine.mixed_precision}
    off = AUGMENT_PRESETS["none"]
    for regime in ("frozen", "finetune", "scratch"):
        batch = machine.batch_size(regime)
        steps = max(1, info.num_train // batch)
        real = training_pipeline(
            splits_train,
            num_train=info.num_train,
            num_classes=info.num_classes,
            image_size=SIZE,
            batch_size=batch,
            augment=off,
            seed=0,
        ).repeat()
        images = tf.random.uniform((batch, SIZE, SIZE, 3), 0, 255)
        labels = tf.one_hot(tf.random.uniform((batch,), 0, info.num_classes, tf.int32), info.num_classes)
        synthetic = tf.data.Dataset.from_tensors((images, labels)).repeat()
        model = build(regime, info.num_classes, machine.mixed_precision)
        busy = Busy() if regime in ("frozen", "finetune") else None
        row = {"batch": batch, "real_img_per_s": images_per_s(model, real, steps, batch, busy)}
        row["synthetic_img_per_s"] = images_per_s(model, synthetic, steps, batch)
        if busy is not None:
            row["gpu_busy_fraction"] = busy.fraction
        if regime == "frozen":
            start, count = time.perf_counter(), 0
            for features, _ in extract(model, splits_train, batch_size=batch):
                count += len(features)
            row["extract_img_per_s"] = round(count / (time.perf_counter() - start), 1)
        if regime == "finetune":
            float32 = build(regime, info.num_classes, "float32")
            mixed = build(regime, info.num_classes, "mixed_float16")
            row["float32_img_per_s"] = images_per_s(float32, real, steps, batch)
            row["mixed_float16_img_per_s"] = images_per_s(mixed, real, steps, batch)
        result[regime] = row
        keras.backend.clear_session()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
