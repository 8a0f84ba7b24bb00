"""What does the engine cost? Training speed per regime through the engine vs a plain Keras ``fit``.

For each regime (scratch, frozen, finetune) at 224 px, batch 32, EfficientNetB0 with random weights
(the compute is the same as with ImageNet weights), the same images are trained on

- through the engine (``core.training.engine.execute``: folder data source cached in memory, shuffle, the
  pipeline, RunRecorder writing to the store, checkpoints, TensorBoard), augmentation off, the frozen
  regime without the feature cache (every image through the backbone, as the notebook; the cache has
  its own benchmark, bench/frozen_head.py); and
- with a plain ``model.fit`` on the same images held in memory, batched and prefetched by ``tf.data``
  (the notebook's way),

each in its own process, for 3 epochs. Speed is 32 images over the median training step of epochs 2
and 3 (a step: from one batch's end to the next one's, so callbacks, store writes and waiting for
data count; epoch 1 pays for tracing; the median shrugs off other work on a shared machine).

Prints one JSON line per regime: ``regime``, ``engine_img_per_s``, ``keras_fit_img_per_s``,
``peak_rss_mb`` (the engine's training process), plus ``overhead_pct``, ``keras_peak_rss_mb``, the
CPU time per image of both (``engine_cpu_ms_per_img``, ``keras_cpu_ms_per_img``, ``cpu_overhead_pct``:
steadier than wall time when other work shares the machine) and the load average at the end.

Run: ``python bench/train.py`` (about 10 minutes on 2 cores; ``--images`` to change the sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIZE = 224
BATCH = 32
EPOCHS = 3
CLASSES = 8
TEST_IMAGES = 32
# Scratch trains ~5x slower than the others on a CPU: fewer images keep the benchmark short.
DEFAULT_IMAGES = {"scratch": 160, "frozen": 320, "finetune": 320}


def write_images(root: Path, train_images: int) -> None:
    """A folder source with train/ and test/ sub-folders of drawn shapes at 224 px."""
    from core import demo

    per_class = {"train": -(-train_images // CLASSES), "test": TEST_IMAGES // CLASSES}
    for split, count in per_class.items():
        for label in range(CLASSES):
            folder = root / split / demo.CLASS_NAMES[label]
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                demo.render(label, split, index, SIZE).save(folder / f"{index:04d}.png")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def batch_timer():
    """A callback timing each training step as the interval between consecutive batch ends (callbacks
    placed before it and waiting for data included), over epochs 2 and later (epoch 1 traces), in wall
    time and in this process's CPU time (all its threads)."""
    import keras

    def cpu_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.wall: list[float] = []
            self.cpu: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch, self.last = epoch, None

        def on_train_batch_end(self, batch, logs=None):
            now = (time.perf_counter(), cpu_seconds())
            if self.epoch >= 1 and self.last is not None:
                self.wall.append(now[0] - self.last[0])
                self.cpu.append(now[1] - self.last[1])
            self.last = now

        def images_per_s(self) -> float:
            """The median step: robust to bursts of other work on a shared machine."""
            return BATCH / statistics.median(self.wall)

        def cpu_ms_per_image(self) -> float:
            """CPU time is what the engine adds; unlike wall time it barely moves when others share the CPU."""
            return 1000 * statistics.median(self.cpu) / BATCH

    return Timer()


def engine(regime: str, root: Path, images: int, parent: str | None) -> dict:
    from core import runs
    from core.config import AUGMENT_PRESETS, DataConfig, ModelConfig, RunConfig, TrainConfig
    from core.training.engine import execute

    if regime == "finetune":
        config = runs.finetune_config(parent)
        config = config.replace(train=config.train.replace(epochs=EPOCHS))
    else:
        config = RunConfig(
            data=DataConfig(source=f"folder:{root}", max_train_images=images),
            augment=AUGMENT_PRESETS["none"],
            model=ModelConfig(regime=regime, weights="none", image_size=SIZE),
            train=TrainConfig(epochs=EPOCHS, batch_size=BATCH, feature_cache=False),
        )
    run_id = runs.create_run(config, runs.FOREGROUND)
    assert runs.claim_foreground(run_id)
    timer = batch_timer()
    outcome = execute(run_id, callbacks=[timer])
    assert outcome.status == "completed", outcome.error
    return {
        "run_id": run_id,
        "img_per_s": timer.images_per_s(),
        "cpu_ms_per_img": timer.cpu_ms_per_image(),
        "peak_rss_mb": peak_rss_mb(),
    }


def plain_keras(regime: str, root: Path, images: int) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from core.config import ModelConfig
    from core.models import build_model, unfreeze_for_finetune

    def load(split: str, limit: int) -> tuple[np.ndarray, np.ndarray]:
        files = sorted((root / split).glob("*/*.png"))[:limit]
        names = sorted({f.parent.name for f in files})
        x = np.stack([np.asarray(Image.open(f).convert("RGB"), dtype="float32") for f in files])
        y = keras.utils.to_categorical([names.index(f.parent.name) for f in files], CLASSES)
        return x, y

    x, y = load("train", images)
    validation = load("test", TEST_IMAGES)
    keras.utils.set_random_seed(0)
    model = build_model(
        ModelConfig(regime="scratch" if regime == "scratch" else "frozen", weights="none", image_size=SIZE), CLASSES
    )
    learning_rate, weight_decay = {"scratch": (1e-3, None), "frozen": (1e-4, 0.01), "finetune": (1e-5, 0.01)}[regime]
    if regime == "finetune":
        unfreeze_for_finetune(model, top_layers=20)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate, weight_decay=weight_decay),
        loss="categorical_crossentropy",
        metrics=["accuracy", keras.metrics.TopKCategoricalAccuracy(k=5, name="top5_accuracy")],
    )
    timer = batch_timer()
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).prefetch(tf.data.AUTOTUNE)
    test = tf.data.Dataset.from_tensor_slices(validation).batch(BATCH).prefetch(tf.data.AUTOTUNE)
    model.fit(train, epochs=EPOCHS, validation_data=test, callbacks=[timer], verbose=0)
    return {"img_per_s": timer.images_per_s(), "cpu_ms_per_img": timer.cpu_ms_per_image(), "peak_rss_mb": peak_rss_mb()}


def child(args: argparse.Namespace) -> None:
    if args.child == "engine":
        result = engine(args.regime, Path(args.root), args.images, args.parent)
    else:
        result = plain_keras(args.regime, Path(args.root), args.images)
    print(json.dumps(result), flush=True)


def run_child(kind: str, regime: str, root: Path, home: Path, images: int, parent: str | None = None) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--regime",
        regime,
        "--root",
        str(root),
        "--images",
        str(images),
    ] + (["--parent", parent] if parent else [])
    result = subprocess.run(
        command, env={**os.environ, "TRANSFER_LAB_HOME": str(home)}, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"{kind} {regime} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def cpu_comparison(engine_result: dict, plain_result: dict) -> dict:
    if "cpu_ms_per_img" not in engine_result or "cpu_ms_per_img" not in plain_result:
        return {}
    engine_cpu, plain_cpu = engine_result["cpu_ms_per_img"], plain_result["cpu_ms_per_img"]
    return {
        "engine_cpu_ms_per_img": round(engine_cpu, 1),
        "keras_cpu_ms_per_img": round(plain_cpu, 1),
        "cpu_overhead_pct": round(100 * (engine_cpu / plain_cpu - 1), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", choices=("engine", "keras"), help=argparse.SUPPRESS)
    parser.add_argument("--regime", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--parent", help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, help="Training images per regime (default: 160 scratch, 320 others).")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root, home = Path(tmp) / "images", Path(tmp) / "home"
        write_images(root, args.images or max(DEFAULT_IMAGES.values()))
        parent = None
        for regime in ("scratch", "frozen", "finetune"):
            images = args.images or DEFAULT_IMAGES[regime]
            measured = run_child("engine", regime, root, home, images, parent)
            plain = run_child("keras", regime, root, home, images)
            if regime == "frozen":
                parent = measured["run_id"]
            print(
                json.dumps(
                    {
                        "regime": regime,
                        "engine_img_per_s": round(measured["img_per_s"], 1),
                        "keras_fit_img_per_s": round(plain["img_per_s"], 1),
                        "peak_rss_mb": round(measured["peak_rss_mb"]),
                        "overhead_pct": round(100 * (1 - measured["img_per_s"] / plain["img_per_s"]), 1),
                        "keras_peak_rss_mb": round(plain["peak_rss_mb"]),
                        **cpu_comparison(measured, plain),
                        "images": images,
                        "image_size": SIZE,
                        "batch_size": BATCH,
                        "load_average": round(os.getloadavg()[0], 1),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
