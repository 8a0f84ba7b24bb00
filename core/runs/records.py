"""What a run is, as the pages and the training process see it: its statuses, the files in its folder, and the
records the store hands out (a run, one of its epochs, its live progress). Plain values: nothing here opens
the store, so every other module of the package can lean on these names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.config import RunConfig
from core.data_home import data_home

QUEUED, RUNNING, COMPLETED, STOPPED, FAILED, INTERRUPTED = (
    "queued",
    "running",
    "completed",
    "stopped",
    "failed",
    "interrupted",
)
STATUSES = (QUEUED, RUNNING, COMPLETED, STOPPED, FAILED, INTERRUPTED)
ACTIVE = (QUEUED, RUNNING)
TRAINING = "training"  # the phase of a run while its epochs' batches are trained
RESUMABLE = (STOPPED, INTERRUPTED, FAILED)
BACKGROUND, FOREGROUND = "background", "foreground"  # who runs it: a spawned worker, or the CLI that made it

METRICS = ("loss", "accuracy", "top5_accuracy", "val_loss", "val_accuracy", "val_top5_accuracy")
LAST_MODEL, BEST_MODEL, TENSORBOARD_DIR, WORKER_LOG = (
    "model_last.keras",
    "model_best.keras",
    "tensorboard",
    "worker.log",
)
PARTIAL = "partial-"  # a checkpoint being written: partial-model_last.keras, renamed when complete
EPOCH_NOTE = "transfer_lab_epoch.json"  # inside a checkpoint's .keras archive: the epoch it holds, its metrics


def run_folder(run_id: str) -> Path:
    """``runs/<run_id>/`` under the data directory (not created)."""
    return data_home() / "runs" / run_id


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch (numbered from 1)."""

    epoch: int
    loss: float | None
    accuracy: float | None
    top5_accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    val_top5_accuracy: float | None
    seconds: float | None
    images_per_s: float | None
    recorded_at: float

    def metrics(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in METRICS}


@dataclass(frozen=True)
class RunProgress:
    """Where a run is right now, for a progress bar."""

    status: str
    phase: str  # e.g. "loading data", "training", "validating"
    epoch: int  # 1-based epoch in progress (0 before the first)
    epochs: int  # planned
    batch: int  # batches done in this epoch
    batches: int | None  # per epoch
    images_per_s: float | None
    updated_at: float | None
    queue_position: int | None

    @property
    def fraction(self) -> float:
        """Overall completion 0..1 (epochs done plus the current epoch's share)."""
        if self.status == COMPLETED:
            return 1.0
        if not self.epochs:
            return 0.0
        within = self.batch / self.batches if self.batches else 0.0
        return min(1.0, max(0.0, (max(self.epoch, 1) - 1 + within) / self.epochs))

    def seconds_left(self, epochs: Sequence[EpochRecord], started_at: float | None) -> float | None:
        """Seconds to the run's end at the pace of its last epoch: the time between the last two epochs recorded
        since it (re)started at ``started_at`` (validation and extracting the next view's features included).
        None before that: loading the data, building the model and the first extraction come once (an estimate
        from the overall fraction read "~1:47 left" for a live demo that ended 10 s later), and one epoch's own
        seconds leave out the next view's extraction, most of an epoch in a run on cached features."""
        recent = [e for e in epochs if started_at is None or e.recorded_at >= started_at]
        if self.status != RUNNING or len(recent) < 2:
            return None
        pace = recent[-1].recorded_at - recent[-2].recorded_at
        if pace <= 0:
            return None
        done = max(e.epoch for e in epochs)
        within = self.batch / self.batches if self.phase == TRAINING and self.batches else 0.0
        return max(0.0, (self.epochs - done - within) * pace)


@dataclass(frozen=True)
class RunRecord:
    """One row of the run list."""

    id: str
    name: str
    regime: str
    backbone: str
    parent_id: str | None
    config_json: str
    status: str
    launcher: str
    created_at: float
    queued_at: float | None
    started_at: float | None
    finished_at: float | None
    error: str | None
    pid: int | None
    stop_requested: bool
    epochs_planned: int
    epochs_done: int
    best_val_accuracy: float | None
    total_params: int | None
    trainable_params: int | None
    unfrozen_layers: list[str] | None
    device: str | None
    resumed: int
    owner: str | None  # the learner who launched it, in a class; None outside one

    @property
    def config(self) -> RunConfig:
        return RunConfig.from_json(self.config_json)

    @property
    def folder(self) -> Path:
        return run_folder(self.id)

    @property
    def last_model(self) -> Path | None:
        """The model saved after the last finished epoch, if there is one."""
        path = self.folder / LAST_MODEL
        return path if path.is_file() else None

    @property
    def best_model(self) -> Path | None:
        """The model saved after the epoch with the best validation accuracy, if there is one."""
        path = self.folder / BEST_MODEL
        return path if path.is_file() else None

    @property
    def model_path(self) -> Path | None:
        """The model a run is used and judged by: the best saved model, else the last, else None (no epoch
        finished yet)."""
        return self.best_model or self.last_model

    @property
    def tensorboard_dir(self) -> Path:
        return self.folder / TENSORBOARD_DIR

    @property
    def log_file(self) -> Path:
        return self.folder / WORKER_LOG

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def can_resume(self) -> bool:
        return self.status in RESUMABLE and self.epochs_done < self.epochs_planned
