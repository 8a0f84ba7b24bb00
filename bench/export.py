"""Do the exports keep the model? A frozen Lite0 run on real photos, exported to every format and verified.

Trains a frozen EfficientNet-Lite0 run on ``../shared/datasets/dogs10`` (ten breeds, 800 training and 300 test
photos) at 224 px with cached features (one view, 5 epochs, learning rate 1e-2: about 1-2 minutes on 2 cores), then
``core.exports.convert(run, "all")`` in this process. Prints one JSON line: per format ``size_mb``, ``agreement``
(top-1 against the Keras model on the 300 test photos), ``accuracy`` and ``latency_ms`` (one image, warm, median),
the Keras accuracy, the seconds spent training and converting, and the issue's goals, each true or false:
int8 size at most 30% of float32's, agreement at least 0.99 for float16 and ONNX and 0.97 for int8, int8 faster
than float32. Everything is written to a temporary data directory. Run: ``python -m bench.export``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DOGS10 = ROOT.parent / "shared" / "datasets" / "dogs10"


def train(home: Path) -> str:
    from core import runs
    from core.catalog import LITE0
    from core.config import AUGMENT_PRESETS, DataConfig, ModelConfig, RunConfig, TrainConfig
    from core.training import engine

    config = RunConfig(
        name="bench export",
        data=DataConfig(source=f"folder:{DOGS10}"),
        augment=AUGMENT_PRESETS["none"],
        model=ModelConfig(backbone=LITE0, regime="frozen", image_size=224),
        train=TrainConfig(epochs=5, batch_size=32, learning_rate=1e-2, cached_views=1),
    )
    run_id = runs.create_run(config, runs.FOREGROUND)
    assert runs.claim_foreground(run_id)
    engine.execute(run_id)
    record = runs.get_run(run_id)
    assert record.status == runs.COMPLETED, record.error
    return run_id


def main() -> None:
    if not DOGS10.is_dir():
        print(json.dumps({"error": f"the dogs10 photos are not at {DOGS10}"}))
        sys.exit(2)
    with tempfile.TemporaryDirectory(prefix="bench-export-") as scratch:
        os.environ["TRANSFER_LAB_HOME"] = scratch
        from core import exports

        start = time.perf_counter()
        run_id = train(Path(scratch))
        trained = time.perf_counter()
        states = exports.convert(run_id, exports.ALL)
        converted = time.perf_counter()
    reports = {s.export_format.name: s.report for s in states if s.report is not None}
    failed = {s.export_format.name: s.error for s in states if s.report is None}
    figures = {
        name: {
            "size_mb": round(r.size_mb, 2),
            "agreement": r.agreement,
            "accuracy": r.accuracy,
            "latency_ms": r.latency_ms,
            "verified": r.passed,
        }
        for name, r in reports.items()
    }
    f32, f16, int8, onnx = (reports.get(n) for n in ("tflite-float32", "tflite-float16", "tflite-int8", "onnx"))
    goals = {
        "int8_size_at_most_30pct_of_float32": bool(f32 and int8 and int8.size_mb <= 0.3 * f32.size_mb),
        "float16_agreement_at_least_0.99": bool(f16 and f16.agreement >= 0.99),
        "onnx_agreement_at_least_0.99": bool(onnx and onnx.agreement >= 0.99),
        "int8_agreement_at_least_0.97": bool(int8 and int8.agreement >= 0.97),
        "int8_latency_below_float32": bool(f32 and int8 and int8.latency_ms < f32.latency_ms),
    }
    keras_accuracy = next(iter(reports.values())).keras_accuracy if reports else None
    print(
        json.dumps(
            {
                "test_images": next(iter(reports.values())).images if reports else 0,
                "keras_accuracy": keras_accuracy,
                "formats": figures,
                "failed": failed,
                "goals": goals,
                "train_s": round(trained - start, 1),
                "convert_s": round(converted - trained, 1),
            }
        )
    )
    sys.stdout.flush()
    os._exit(0)  # a tf.data iterator can hang an ordinary shutdown


if __name__ == "__main__":
    main()
