"""What a run can be downloaded as: its per-epoch metrics as CSV (its model and config are files already)."""

from __future__ import annotations

import csv
import io

from core import runs


def metrics_csv(run_id: str) -> str:
    """One row per finished epoch: the notebook's six metrics plus timing."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["epoch", *runs.METRICS, "seconds", "images_per_s"])
    for record in runs.epochs(run_id):
        writer.writerow([record.epoch, *(record.metrics()[m] for m in runs.METRICS), record.seconds, record.images_per_s])
    return buffer.getvalue()
