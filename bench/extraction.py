"""Is a cold run as fast as the forward pass? The backbone alone against real extraction, then a whole run.

On ``../shared/datasets/dogs10`` (800 training and 300 test photos) at 224 px with EfficientNet-Lite0 (ImageNet
weights, offline), in temporary data directories, one JSON line:

- ``bare_forward_img_per_s``: the backbone's pooled forward pass (the feature cache's extractor, traced) on random
  uint8 batches of the extraction batch size, warm: the ceiling;
- ``decode_only_img_per_s``: the training split's pipeline iterated without a model (fresh data directory):
  what decoding and resizing alone cost;
- ``extraction_img_per_s``: ``feature_cache.extract`` over the training split from a fresh data directory (first
  view, cold: decoding included), unaugmented;
- ``extraction_warm_img_per_s``: the same split loaded again (a new pipeline, as a second run, a second backbone
  or an evaluation gets it) and extracted again, after the first pass;
- ``augment_ms_per_image``: the notebook's augmentation alone (traced) on random batches of the extraction batch
  size; ``extraction_augmented_warm_img_per_s``: the warm extraction with it, as a launched run's training view;
- ``first_curve_point_s``: a frozen run (dogs10, 224 px, the notebook's augmentation, cached features) started
  through ``core.runs.start_run`` like the Train page's Launch, from a fresh data directory (only Lite0's converted
  weights copied in), until its first epoch is in the store; it is then stopped;
- ``first_curve_point_phases_s``: when the run first showed each phase (loading data, building model, extracting
  features, training), seconds after Launch;
- ``decode_ms_per_image``, ``forward_ms_per_image`` and ``cold_ratio_if_decode_shares_the_cores``: forward /
  (forward + decode), the best cold ratio when decoding and the forward pass take turns on the same cores;
- ``cold_ratio``, ``warm_ratio``, ``augmented_warm_ratio``: extraction over bare; ``first_curve_point_goal_s``:
  1.2 x (train + test images) / bare rate; ``goals``: cold >= 0.85, warm >= 0.95, the first curve point within
  its goal.

``load_before`` / ``load_after``: the 1-minute load average (a shared machine slows everything). ``pooled_allocator``:
this process uses TensorFlow's pooled CPU allocator as the training worker does (``core.allocator``);
``--default-allocator`` measures this process with TensorFlow's default one instead (the launched run's worker
pools either way). Not a test.
Run: ``python -m bench.extraction`` (about 3-4 minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DOGS10 = ROOT.parent / "shared" / "datasets" / "dogs10"
SIZE = 224
BARE_BATCHES = 12
COLD_GOAL, WARM_GOAL, CURVE_GOAL = 0.85, 0.95, 1.2


def use_home(path: Path) -> None:
    os.environ["TRANSFER_LAB_HOME"] = str(path)


def data_config():
    from core.config import DataConfig

    return DataConfig(source=f"folder:{DOGS10}")


def model_config():
    from core.catalog import LITE0
    from core.config import ModelConfig

    return ModelConfig(backbone=LITE0, regime="frozen", weights="imagenet", image_size=SIZE)


def bare_forward(model) -> float:
    import numpy as np
    import tensorflow as tf

    from core import feature_cache

    extractor = feature_cache.feature_extractor(model)
    forward = tf.function(lambda images: extractor(images, training=False))
    rng = np.random.default_rng(0)
    batch = feature_cache.extraction_batch()
    batches = [tf.cast(rng.integers(0, 256, (batch, SIZE, SIZE, 3), dtype=np.uint8), tf.float32) for _ in range(3)]
    for images in batches[:2]:
        forward(images).numpy()
    start = time.perf_counter()
    for i in range(BARE_BATCHES):
        forward(batches[i % 3]).numpy()
    return BARE_BATCHES * batch / (time.perf_counter() - start)


def augment_alone() -> float:
    """Milliseconds per image of the notebook's augmentation, traced, on random batches."""
    import numpy as np
    import tensorflow as tf

    from core import feature_cache
    from core.augment import build_augmenter
    from core.config import AUGMENT_PRESETS

    augmenter = build_augmenter(AUGMENT_PRESETS["notebook"])
    augment = tf.function(lambda images: augmenter(images, training=True))
    rng = np.random.default_rng(0)
    batch = feature_cache.extraction_batch()
    images = tf.constant(rng.integers(0, 256, (batch, SIZE, SIZE, 3), dtype=np.uint8))
    augment(images).numpy()
    start = time.perf_counter()
    for _ in range(BARE_BATCHES // 2):
        augment(images).numpy()
    return 1000 * (time.perf_counter() - start) / (BARE_BATCHES // 2 * batch)


def timed_extraction(model, augment=None) -> tuple[float, int]:
    """Images/s of one extraction over a freshly loaded training split (unaugmented unless told)."""
    from core import feature_cache
    from core.data import load_splits

    start = time.perf_counter()
    splits = load_splits(data_config(), SIZE)
    count = sum(len(labels) for _, labels in feature_cache.extract(model, splits.train, augment=augment))
    return count / (time.perf_counter() - start), count


def decode_only() -> float:
    from core.data import load_splits

    start = time.perf_counter()
    splits = load_splits(data_config(), SIZE)
    count = sum(int(images.shape[0]) for images, _ in splits.train.batch(32).prefetch(2))
    return count / (time.perf_counter() - start)


def first_curve_point(home: Path) -> tuple[float, str, dict[str, float]]:
    """Launch -> first epoch record of a frozen run through the run store and a worker process, with the
    seconds after Launch at which the run first showed each phase."""
    from core import runs
    from core.config import AUGMENT_PRESETS, RunConfig, TrainConfig

    use_home(home)
    config = RunConfig(
        name="bench extraction",
        data=data_config(),
        augment=AUGMENT_PRESETS["notebook"],
        model=model_config(),
        train=TrainConfig(epochs=5, batch_size=32, learning_rate=1e-2),
    )
    start = time.perf_counter()
    run_id = runs.start_run(config)
    phases: dict[str, float] = {}
    while not runs.epochs(run_id):
        phases.setdefault(runs.progress(run_id).phase or "starting", round(time.perf_counter() - start, 1))
        record = runs.get_run(run_id)
        if record.status in (runs.FAILED, runs.INTERRUPTED, runs.COMPLETED, runs.STOPPED):
            raise SystemExit(f"the run ended before its first epoch: {record.status} ({record.error})")
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    runs.request_stop(run_id)
    final = runs.wait_until_finished(run_id, timeout_s=300)
    return seconds, final.status, phases


def main() -> None:
    if not DOGS10.is_dir():
        print(json.dumps({"error": f"the dogs10 photos are not at {DOGS10}"}))
        sys.exit(2)
    result: dict[str, object] = {"load_before": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    if "--default-allocator" not in sys.argv[1:]:
        from core.allocator import use_pooled_cpu_allocator

        result["pooled_allocator"] = use_pooled_cpu_allocator()
    scratch = Path(tempfile.mkdtemp(prefix="bench-extraction-"))
    try:
        first, decoding, launch = scratch / "first", scratch / "decoding", scratch / "launch"
        use_home(first)
        from core.models import build_frozen

        model = build_frozen(model_config(), 10)
        result["bare_forward_img_per_s"] = round(bare_forward(model), 1)
        use_home(decoding)
        result["decode_only_img_per_s"] = round(decode_only(), 1)
        use_home(first)
        cold, count = timed_extraction(model)
        warm, _ = timed_extraction(model)
        from core.config import AUGMENT_PRESETS

        augmented, _ = timed_extraction(model, AUGMENT_PRESETS["notebook"])
        result["train_images"] = count
        result["extraction_img_per_s"] = round(cold, 1)
        result["extraction_warm_img_per_s"] = round(warm, 1)
        result["augment_ms_per_image"] = round(augment_alone(), 2)
        result["extraction_augmented_warm_img_per_s"] = round(augmented, 1)
        shutil.copytree(first / "cache" / "weights", launch / "cache" / "weights")
        seconds, status, phases = first_curve_point(launch)
        bare = result["bare_forward_img_per_s"]
        from core.data import describe

        info = describe(data_config())
        goal_s = CURVE_GOAL * (info.num_train + info.num_test) / bare
        result["first_curve_point_s"] = round(seconds, 1)
        result["first_curve_point_goal_s"] = round(goal_s, 1)
        result["first_curve_point_phases_s"] = phases
        result["run_after_stop"] = status
        decode_ms, forward_ms = 1000 / result["decode_only_img_per_s"], 1000 / bare
        result["decode_ms_per_image"] = round(decode_ms, 2)
        result["forward_ms_per_image"] = round(forward_ms, 2)
        result["cold_ratio_if_decode_shares_the_cores"] = round(forward_ms / (forward_ms + decode_ms), 3)
        result["cold_ratio"] = round(cold / bare, 3)
        result["warm_ratio"] = round(warm / bare, 3)
        result["augmented_warm_ratio"] = round(augmented / bare, 3)
        result["goals"] = {
            f"cold_at_least_{COLD_GOAL}x_bare": cold >= COLD_GOAL * bare,
            f"warm_at_least_{WARM_GOAL}x_bare": warm >= WARM_GOAL * bare,
            f"first_curve_point_within_{CURVE_GOAL}x": seconds <= goal_s,
        }
        result["load_after"] = round(os.getloadavg()[0], 2)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(result), flush=True)
    os._exit(0)  # a tf.data iterator can hang an ordinary shutdown


if __name__ == "__main__":
    main()
