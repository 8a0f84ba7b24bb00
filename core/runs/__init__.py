"""Training runs: the store every run lives in, the queue that starts them one at a time, and the processes
that train them. Pages and the rest of ``core`` use the names below (``from core import runs``, then
``runs.get_run(...)``, ``runs.RUNNING``); the modules behind them, each leaning only on those above it:

    records     what a run is: statuses, the files in its folder, RunRecord / EpochRecord / RunProgress
    fairness    who trains next: round-robin across a class's learners (first come, first served outside one)
    store       the SQLite file (WAL; readable even when it cannot be written) and the queries that read it
    recording   what the training process writes: setup, progress, epochs, checkpoint notes, final status
    workers     the training processes: spawning one, telling whether one is alive, marking dead runs
    queueing    creating and queueing runs (a class's limits), starting the next one under a machine-wide lock,
                fine-tune parents
    controls    stop, resume, delete, wait

The store is the only channel between a training process and the pages, so nothing in a browser session is
needed to recover a run. Statuses: queued -> running -> completed | stopped | failed | interrupted. Stopped,
interrupted and failed runs can be resumed from their last checkpoint; epochs keep their numbers.

Nothing here imports TensorFlow.
"""

from core.runs.changes import stamp as stamp  # has the store changed? (a cheap key for what pages read)
from core.runs.controls import delete_run, request_stop, resume_run, wait_until_finished
from core.runs.queueing import (
    check_parent,
    claim_foreground,
    config_summary,
    create_run,
    finetune_config,
    finetune_parents,
    kick_queue,
    queue_room,
    reconcile,
    start_run,
)
from core.runs.recording import (
    checkpoint_note,
    epoch_note,
    finish_run,
    record_epoch,
    record_progress,
    record_setup,
    stop_requested,
    sync_checkpoint,
)
from core.runs.records import (
    ACTIVE,
    BACKGROUND,
    BEST_MODEL,
    COMPLETED,
    EPOCH_NOTE,
    FAILED,
    FOREGROUND,
    INTERRUPTED,
    LAST_MODEL,
    METRICS,
    PARTIAL,
    QUEUED,
    RESUMABLE,
    RUNNING,
    STATUSES,
    STOPPED,
    TENSORBOARD_DIR,
    TRAINING,
    WORKER_LOG,
    EpochRecord,
    RunProgress,
    RunRecord,
    run_folder,
)
from core.runs.store import (
    connect,
    epochs,
    get_run,
    keep_open,
    list_runs,
    progress,
    queue,
    queue_order,
    queue_position,
    running_run,
    store_path,
)
from core.runs.workers import OWNER_ENV, owner_alive, process_alive, worker_owner

__all__ = [
    # records
    "QUEUED",
    "RUNNING",
    "COMPLETED",
    "STOPPED",
    "FAILED",
    "INTERRUPTED",
    "STATUSES",
    "ACTIVE",
    "RESUMABLE",
    "TRAINING",
    "BACKGROUND",
    "FOREGROUND",
    "METRICS",
    "LAST_MODEL",
    "BEST_MODEL",
    "TENSORBOARD_DIR",
    "WORKER_LOG",
    "PARTIAL",
    "EPOCH_NOTE",
    "EpochRecord",
    "RunProgress",
    "RunRecord",
    "run_folder",
    # store
    "store_path",
    "connect",
    "keep_open",
    "list_runs",
    "get_run",
    "epochs",
    "queue",
    "queue_order",
    "queue_position",
    "progress",
    "running_run",
    # recording
    "stop_requested",
    "record_setup",
    "record_progress",
    "record_epoch",
    "epoch_note",
    "checkpoint_note",
    "sync_checkpoint",
    "finish_run",
    # workers
    "OWNER_ENV",
    "worker_owner",
    "owner_alive",
    "process_alive",
    # queueing
    "check_parent",
    "finetune_parents",
    "finetune_config",
    "config_summary",
    "create_run",
    "start_run",
    "kick_queue",
    "queue_room",
    "claim_foreground",
    "reconcile",
    # controls
    "request_stop",
    "resume_run",
    "delete_run",
    "wait_until_finished",
]
