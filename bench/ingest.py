"""Your own photos, end to end: import a zip into a dataset made in the app, then train the live demo on it.

1. Zips ``../shared/datasets/dogs10`` (1,100 real photos of ten breeds: ``train/`` and ``test/``) and imports the
   zip into a new dataset through the same function as the Data page's zip upload (``core.datasets.import_zip``:
   checks, safe decode, hash, thumbnail, staged write), with a progress bar on stderr:
   ``ingest_img_per_s`` and ``ingest_total_s``.
2. Launches the Train page's live-demo preset on that dataset (``live_demo_preset`` of ``local:<name>``: a frozen
   run at the preset's size and epochs on the default backbone, in a worker process as the page does) and waits
   for it: ``live_demo_s`` from launch to the run's end, and ``live_demo_test_accuracy`` on the 300 test photos
   (the zip's ``test/`` folder, kept for testing).

Everything runs in a fresh data directory (no cached features, no drawn demo set). Prints one JSON line.
Goals on the 2-core CPU: at least 40 images/s ingest; the live demo within 60 s at 80% test accuracy or more.

Run: ``python bench/ingest.py`` (about two minutes; ``--photos`` for another folder of the same layout).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DOGS10 = ROOT.parent / "shared" / "datasets" / "dogs10"
DATASET = "dogs10"


def zip_folder(folder: Path, target: Path) -> int:
    """The folder as a zip with its own layout (train/<breed>/..., test/<breed>/...); returns the file count."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for path in files:
            archive.write(path, f"{folder.name}/{path.relative_to(folder)}")
    return len(files)


def progress_bar(done: int, total: int, message: str) -> None:
    """A bar on stderr, redrawn in place on a terminal, one line per tenth otherwise (a log stays short)."""
    width = 30
    filled = int(width * done / max(total, 1))
    line = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {message[:50]}"
    if sys.stderr.isatty():
        sys.stderr.write(f"\r{line:<90}" + ("\n" if done >= total else ""))
    elif done >= total or done % max(1, total // 10) == 0:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()


def live_demo_config(source: str):
    """The run the Train page launches with the live-demo preset on, for this data (as its form starts)."""
    from core import catalog
    from core.catalog import REGIMES
    from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig, live_demo_preset

    data, preset = live_demo_preset(DataConfig(source=source))
    row = REGIMES["frozen"]
    model = ModelConfig(backbone=catalog.default_backbone(), regime="frozen", weights=row.weights)
    train = TrainConfig(epochs=row.epochs, learning_rate=row.learning_rate, weight_decay=row.weight_decay)
    return RunConfig(
        name="live demo on my photos",
        data=data,
        model=model.replace(**preset["model"]),
        train=train.replace(**preset["train"]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=DOGS10, help="A folder with train/ and test/ class folders.")
    args = parser.parse_args()
    if not args.photos.is_dir():
        sys.exit(f"{args.photos} is not here: this benchmark needs the shared dogs10 photos.")
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as scratch:
        os.environ["TRANSFER_LAB_HOME"] = str(Path(scratch) / "home")
        from core import datasets, evaluation, runs
        from core.predictions import run_predictions

        archive = Path(scratch) / "photos.zip"
        files = zip_folder(args.photos, archive)
        datasets.create_dataset(DATASET)
        start = time.perf_counter()
        report = datasets.import_zip(DATASET, archive, progress=progress_bar)
        ingest_s = time.perf_counter() - start
        print(report.message(), file=sys.stderr)

        config = live_demo_config(datasets.source_of(DATASET))
        launched = time.time()
        run_id = runs.start_run(config)
        record = runs.wait_until_finished(run_id, timeout_s=1800)
        live_demo_s = (record.finished_at or time.time()) - launched
        if record.status != runs.COMPLETED:
            sys.exit(f"The live demo ended {record.status}: {record.error}")
        accuracy = evaluation.compute_metrics(run_predictions(run_id)).accuracy
        print(
            json.dumps(
                {
                    "photos": files,
                    "ingested": len(report.added),
                    "ingest_img_per_s": round(len(report.added) / ingest_s, 1),
                    "ingest_total_s": round(ingest_s, 2),
                    "live_demo_s": round(live_demo_s, 1),
                    "live_demo_test_accuracy": round(float(accuracy), 4),
                    "live_demo_train_images": record.config.data.max_train_images or "all",
                    "image_size": config.model.effective_image_size,
                    "backbone": config.model.backbone,
                    "epochs": config.effective_epochs,
                    "load_average": round(os.getloadavg()[0], 2),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
