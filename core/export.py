"""What a run can be downloaded as: its per-epoch metrics as CSV (its model and config are files already), and the
file names downloads take. The model in deployable formats (TFLite, ONNX, SavedModel) is ``core.exports``."""

from __future__ import annotations

import csv
import io
import re
import time

from core import runs


def metrics_csv(run_id: str) -> str:
    """One row per finished epoch: the notebook's six metrics plus timing."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["epoch", *runs.METRICS, "seconds", "images_per_s"])
    for record in runs.epochs(run_id):
        writer.writerow(
            [record.epoch, *(record.metrics()[m] for m in runs.METRICS), record.seconds, record.images_per_s]
        )
    return buffer.getvalue()


def download_stem(record: runs.RunRecord) -> str:
    """'frozen-lite0-96px-2026-11-30-1412': a file name made from the run's name and launch time, so a
    folder of downloads says what each file is (run ids do not)."""
    slug = re.sub(r"[^a-z0-9]+", "-", record.name.lower()).strip("-")[:60] or record.regime
    return f"{slug}-{time.strftime('%Y-%m-%d-%H%M', time.localtime(record.created_at))}"
