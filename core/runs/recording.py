"""What the training process writes about its run: what it built, its live progress, each finished epoch and its
final status; and the note each checkpoint carries about itself, so that the store can be made to agree with
the last checkpoint after a kill (``sync_checkpoint``). The pages only read these rows.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.errors import RunError
from core.runs.records import (
    BEST_MODEL,
    COMPLETED,
    EPOCH_NOTE,
    FAILED,
    INTERRUPTED,
    LAST_MODEL,
    METRICS,
    PARTIAL,
    STOPPED,
    run_folder,
)
from core.runs.store import connect, epochs, transaction


def stop_requested(run_id: str) -> bool:
    """Has someone asked this run to stop? The training process polls it (``request_stop`` sets it)."""
    with connect() as db:
        row = db.execute("SELECT stop_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
    return bool(row and row["stop_requested"])


def record_setup(
    run_id: str, *, device: str, total_params: int, trainable_params: int, unfrozen_layers: list[str] | None = None
) -> None:
    """What the training process built: device, parameter counts, layers a fine-tune unfroze."""
    with connect() as db, transaction(db):
        db.execute(
            "UPDATE runs SET device = ?, total_params = ?, trainable_params = ?, "
            "unfrozen_layers = COALESCE(?, unfrozen_layers) WHERE id = ?",
            (
                device,
                total_params,
                trainable_params,
                json.dumps(unfrozen_layers) if unfrozen_layers is not None else None,
                run_id,
            ),
        )


def record_progress(
    run_id: str,
    *,
    phase: str,
    epoch: int | None = None,
    batch: int | None = None,
    batches: int | None = None,
    images_per_s: float | None = None,
) -> None:
    """Live progress; fields left None keep their value."""
    with connect() as db, transaction(db):
        db.execute(
            "UPDATE runs SET phase = ?, progress_epoch = COALESCE(?, progress_epoch), "
            "progress_batch = COALESCE(?, progress_batch), progress_batches = COALESCE(?, progress_batches), "
            "progress_images_per_s = COALESCE(?, progress_images_per_s), progress_updated_at = ? "
            "WHERE id = ?",
            (phase, epoch, batch, batches, images_per_s, time.time(), run_id),
        )


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def record_epoch(
    run_id: str,
    epoch: int,
    metrics: Mapping[str, Any],
    *,
    seconds: float | None = None,
    images_per_s: float | None = None,
) -> None:
    """A finished epoch (1-based). Written after its checkpoint, so a recorded epoch always has one."""
    with connect() as db, transaction(db):
        db.execute(
            f"INSERT OR REPLACE INTO epochs (run_id, epoch, {', '.join(METRICS)}, seconds, images_per_s, "
            f"recorded_at) VALUES ({', '.join('?' * (len(METRICS) + 5))})",
            (run_id, epoch, *(_number(metrics.get(name)) for name in METRICS), seconds, images_per_s, time.time()),
        )


def epoch_note(
    epoch: int,
    metrics: Mapping[str, Any],
    *,
    seconds: float | None = None,
    images_per_s: float | None = None,
    best: bool = False,
) -> dict[str, Any]:
    """What a checkpoint carries about itself (``EPOCH_NOTE``): the 1-based epoch it holds, that epoch's metrics
    and timing as ``record_epoch`` takes them, and whether it is also the run's best model."""
    return {
        "epoch": int(epoch),
        "metrics": {name: _number(metrics.get(name)) for name in METRICS},
        "seconds": _number(seconds),
        "images_per_s": _number(images_per_s),
        "best": bool(best),
    }


def checkpoint_note(path: Path) -> dict[str, Any] | None:
    """The note inside a saved checkpoint; None when there is no file, no note (saved before notes existed)
    or the file is not a complete archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            note = json.loads(archive.read(EPOCH_NOTE))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return note if isinstance(note, dict) and isinstance(note.get("epoch"), int) else None


def sync_checkpoint(run_id: str) -> int | None:
    """Make the store agree with the run's last checkpoint. A checkpoint is saved (model and note in one renamed
    file) before its epoch is recorded, so a process killed between the two leaves the checkpoint one epoch
    ahead: record that epoch from the note (and put its best model in place when it was the best), so a resume
    continues after the epoch the model holds instead of training it again. Returns the epoch recorded."""
    folder = run_folder(run_id)
    note = checkpoint_note(folder / LAST_MODEL)
    if note is None or note["epoch"] != len(epochs(run_id)) + 1:
        return None
    partial_best = folder / f"{PARTIAL}{BEST_MODEL}"
    if note.get("best") and (checkpoint_note(partial_best) or {}).get("epoch") == note["epoch"]:
        with contextlib.suppress(FileNotFoundError):  # another process got there first
            os.replace(partial_best, folder / BEST_MODEL)
    record_epoch(
        run_id, note["epoch"], note["metrics"], seconds=note.get("seconds"), images_per_s=note.get("images_per_s")
    )
    return note["epoch"]


def finish_run(run_id: str, status: str, error: str | None = None) -> None:
    """Final status of a run: completed, stopped, failed or interrupted."""
    if status not in (COMPLETED, STOPPED, FAILED, INTERRUPTED):
        raise RunError(f"{status!r} is not a final status.")
    with connect() as db, transaction(db):
        db.execute(
            "UPDATE runs SET status = ?, error = ?, finished_at = ?, phase = '', stop_requested = 0 WHERE id = ?",
            (status, error, time.time(), run_id),
        )
