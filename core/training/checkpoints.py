"""A run's checkpoints, for both training paths (every image through the backbone, or cached features).

After each finished epoch the model is saved as ``model_last.keras`` and, when its validation accuracy is the
best so far, as ``model_best.keras``. Each file carries a note of the epoch it holds and that epoch's metrics
(``runs.EPOCH_NOTE`` inside the archive; Keras ignores it when loading). It is written under a temporary name
and renamed, so the model and its note change together, and only then is the epoch recorded in the store:
after a kill at any point the checkpoint holds the recorded epoch or the one after it, and
``runs.sync_checkpoint`` records that one from the note, so a resume never trains an epoch twice.

A disk that fills (or a folder that turns read-only) while a checkpoint is written: its partial files are
removed, the previous checkpoint stays as it was, and the run fails with the sentence saying which folder
needs space (``DataHomeUnavailable``); it resumes from that previous checkpoint.

No TensorFlow here: ``save`` takes any model with Keras' ``save(path)``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core import runs
from core.data_home import cannot_write


def partial_paths(folder: Path) -> tuple[Path, Path]:
    return folder / f"{runs.PARTIAL}{runs.LAST_MODEL}", folder / f"{runs.PARTIAL}{runs.BEST_MODEL}"


def remove_partials(folder: Path) -> None:
    for path in partial_paths(folder):
        path.unlink(missing_ok=True)


def improves(metrics: Mapping[str, Any], best_val_accuracy: float | None) -> bool:
    score = metrics.get("val_accuracy")
    return (
        score is not None
        and math.isfinite(float(score))
        and (best_val_accuracy is None or float(score) > best_val_accuracy)
    )


def save(
    model: Any,
    folder: Path,
    *,
    epoch: int,
    metrics: Mapping[str, Any],
    best_val_accuracy: float | None,
    seconds: float | None = None,
    images_per_s: float | None = None,
) -> float | None:
    """Save ``model`` as it is after the 1-based ``epoch``, with its note; returns the best validation accuracy
    so far (this epoch's when it improved). Raises ``DataHomeUnavailable`` when the files cannot be written."""
    best = improves(metrics, best_val_accuracy)
    partial, partial_best = partial_paths(folder)
    note = runs.epoch_note(epoch, metrics, seconds=seconds, images_per_s=images_per_s, best=best)
    try:
        remove_partials(folder)  # a new file each time: never write into a name another one may share
        model.save(partial)
        with zipfile.ZipFile(partial, "a") as archive:
            archive.writestr(runs.EPOCH_NOTE, json.dumps(note))
        if best:
            _link_or_copy(partial, partial_best)
        os.replace(partial, folder / runs.LAST_MODEL)
    except OSError as error:
        remove_partials(folder)
        raise cannot_write(folder, error, then="resume the run") from error
    if best:
        os.replace(partial_best, folder / runs.BEST_MODEL)
    return float(metrics["val_accuracy"]) if best else best_val_accuracy


def _link_or_copy(source: Path, target: Path) -> None:
    """The best model is the same file as the last one: a hard link costs no space (a copy where links fail)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def epochs_done(run_id: str) -> int:
    """For a run about to train: bring the store level with its checkpoint, clear what a killed process left
    half-written, and return how many epochs it has finished (where it resumes)."""
    runs.sync_checkpoint(run_id)
    remove_partials(runs.run_folder(run_id))
    return len(runs.epochs(run_id))
