"""The queue: runs train one at a time per machine; in a class, round-robin across learners
(``core.runs.fairness``), else in the order they were queued.

``create_run`` puts a run in the store as queued; ``start_run`` also kicks the queue, which, if nothing is
training, hands the head of the queue to a new worker process (``core.runs.workers``). A worker that finishes
kicks the queue again, and ``reconcile`` (called when a page loads) marks runs whose process is gone as
interrupted and starts whatever is waiting. A file lock makes "is anything running? then start this one"
atomic across processes. A foreground run (the CLI's) waits in the same queue and claims its turn itself.

A fine-tune starts from a frozen run; ``check_parent`` says which runs qualify, before one is queued.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

from core import classroom
from core.classroom import Learner
from core.config import RunConfig, TrainConfig
from core.data_home import cannot_write, data_home
from core.errors import ConfigError, DataHomeUnavailable
from core.runs.records import (
    BACKGROUND,
    COMPLETED,
    FAILED,
    FOREGROUND,
    INTERRUPTED,
    QUEUED,
    RUNNING,
    STOPPED,
    RunRecord,
    run_folder,
)
from core.runs.store import connect, get_run, list_runs, queue_order, transaction
from core.runs.workers import interrupt_dead_runs, process_start_time, spawn_worker

# ---------------------------------------------------------------------------------------------- a new run's settings


def check_parent(config: RunConfig) -> RunRecord | None:
    """For a fine-tune: the parent run, which must be a frozen run with a saved model, trained on the same
    data with the same network (its classes, backbone and image size are what the fine-tune continues)."""
    if config.model.regime != "finetune":
        return None
    parent = get_run(config.model.parent_run_id)
    named = f"The frozen run “{parent.name}”"
    if parent.regime != "frozen":
        raise ConfigError(
            f"“{parent.name}” trained the {parent.regime!r} regime; fine-tuning continues "
            "a frozen-backbone run. Pick a frozen run to fine-tune."
        )
    if parent.last_model is None:
        raise ConfigError(f"{named} has no saved model yet: let it finish at least one epoch, then fine-tune it.")
    parent_model, parent_data = parent.config.model, parent.config.data
    if parent_model.backbone != config.model.backbone or (
        parent_model.effective_image_size != config.model.effective_image_size
    ):
        raise ConfigError(
            f"{named} trained {parent_model.backbone} at {parent_model.effective_image_size} px, and a fine-tune "
            f"continues that network, so it keeps its backbone and image size (got {config.model.backbone} at "
            f"{config.model.effective_image_size} px). Leave them unset and they are taken from the frozen run."
        )
    same_data = (parent_data.source, parent_data.test_fraction, parent_data.seed) == (
        config.data.source,
        config.data.test_fraction,
        config.data.seed,
    )
    if not same_data:
        raise ConfigError(
            f"{named} learnt its classes from {parent_data.summary()} (split seed {parent_data.seed}); a fine-tune "
            f"continues on the same data and split (got {config.data.summary()}, split seed {config.data.seed}). "
            "Leave the data unset and it is taken from the frozen run."
        )
    return parent


def finetune_parents(owner: str | None = None) -> list[RunRecord]:
    """Frozen runs a fine-tune can start from (one learner's, in a class): they saved a model after at least
    one epoch."""
    done = list_runs(status=(COMPLETED, STOPPED, INTERRUPTED), regime="frozen", owner=owner)
    return [r for r in done if r.last_model]


def finetune_config(parent_id: str, **model_changes: Any) -> RunConfig:
    """A fine-tune of a frozen run: same data, augmentation, backbone and image size; regime defaults."""
    parent = get_run(parent_id)
    base = parent.config
    model = base.model.replace(regime="finetune", weights=None, parent_run_id=parent_id, **model_changes)
    return RunConfig(
        name="",
        data=base.data,
        augment=base.augment,
        model=model,
        train=TrainConfig(
            batch_size=base.train.batch_size, mixed_precision=base.train.mixed_precision, seed=base.train.seed
        ),
    )


def config_summary(config: RunConfig) -> dict[str, Any]:
    """The numbers a run will really use, with regime defaults filled in (for pages and the CLI)."""
    return {
        "backbone": config.model.backbone,
        "regime": config.model.regime,
        "image_size": config.model.effective_image_size,
        "weights": config.model.effective_weights,
        "epochs": config.effective_epochs,
        "batch_size": config.effective_batch_size,
        "learning_rate": config.effective_learning_rate,
        "weight_decay": config.effective_weight_decay,
    }


# ---------------------------------------------------------------------------------------------- the queue


def _new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def waiting_runs(db: sqlite3.Connection, learner: Learner) -> int:
    """How many runs ``learner`` has waiting in the queue."""
    return db.execute(
        "SELECT COUNT(*) FROM runs WHERE status = ? AND owner = ? COLLATE NOCASE", (QUEUED, learner.name)
    ).fetchone()[0]


def queue_room(learner: Learner | None) -> int | None:
    """How many more runs ``learner`` may queue now under the class's limit; None when there is no limit
    (outside a class, or for the instructor)."""
    if learner is None or learner.instructor:
        return None
    with connect() as db:
        return max(0, classroom.limits().max_queued_per_learner - waiting_runs(db, learner))


def create_run(config: RunConfig, launcher: str = BACKGROUND, learner: Learner | None = None) -> str:
    """Put a run in the store as queued (it does not start it); returns its id. The stored config has the
    machine's defaults written in (``RunConfig.resolved``): the batch size and precision the run will use.
    In a class the run belongs to ``learner`` and must keep to the instructor's limits (``ClassLimits``),
    checked in the same transaction that queues it, so two tabs cannot both take the last place."""
    check_parent(config)
    config = config.resolved()
    run_id = _new_run_id()
    now = time.time()
    owner = (os.getpid(), process_start_time(os.getpid())) if launcher == FOREGROUND else (None, None)
    limits = classroom.limits() if learner is not None and not learner.instructor else None
    with connect() as db, transaction(db):
        if limits is not None:
            limits.check(config, waiting_runs(db, learner))
        db.execute(
            "INSERT INTO runs (id, name, regime, backbone, parent_id, config, status, launcher, created_at, "
            "queued_at, epochs_planned, pid, pid_started, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                config.display_name(),
                config.model.regime,
                config.model.backbone,
                config.model.parent_run_id,
                config.to_json(),
                QUEUED,
                launcher,
                now,
                now,
                config.effective_epochs,
                *owner,
                learner.name if learner is not None else None,
            ),
        )
    folder = run_folder(run_id)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise cannot_write(folder, error) from error
    return run_id


def start_run(config: RunConfig, learner: Learner | None = None) -> str:
    """Queue a run (``learner``'s, in a class) and start it in its own process if nothing else is training.
    Returns at once."""
    run_id = create_run(config, BACKGROUND, learner)
    kick_queue()
    return run_id


@contextlib.contextmanager
def _queue_lock() -> Iterator[None]:
    """Machine-wide: only one process at a time decides what trains next."""
    path = data_home() / "runs.lock"
    try:
        handle = open(path, "a+")
    except OSError as error:
        raise cannot_write(path.parent, error) from error
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _startable(db: sqlite3.Connection) -> sqlite3.Row | None:
    """The head of the queue, if nothing is running."""
    if db.execute("SELECT 1 FROM runs WHERE status = ?", (RUNNING,)).fetchone():
        return None
    order = queue_order(db)
    if not order:
        return None
    return db.execute("SELECT id, launcher FROM runs WHERE id = ?", (order[0],)).fetchone()


def kick_queue() -> str | None:
    """If nothing is training, start the next queued background run. Returns its id, if one started."""
    with _queue_lock():
        interrupt_dead_runs()
        with connect() as db:
            if _startable(db) is None:
                return None  # the common case when a page polls: decided without taking the write lock
            with transaction(db):
                head = _startable(db)
                if head is None or head["launcher"] == FOREGROUND:
                    return None  # a foreground run is started by its own CLI process (claim_foreground)
                try:
                    worker = spawn_worker(head["id"])
                except OSError as error:
                    db.execute(
                        "UPDATE runs SET status = ?, error = ?, finished_at = ? WHERE id = ?",
                        (FAILED, f"The training process could not be started: {error}", time.time(), head["id"]),
                    )
                    return None
                _set_running(db, head["id"], worker.pid)
    return head["id"]


def claim_foreground(run_id: str) -> bool:
    """For the CLI: mark its own queued run running if it is next in line and nothing else trains."""
    with _queue_lock():
        interrupt_dead_runs()
        with connect() as db, transaction(db):
            head = _startable(db)
            if head is None or head["id"] != run_id:
                return False
            _set_running(db, run_id, os.getpid())
    return True


def _set_running(db: sqlite3.Connection, run_id: str, pid: int) -> None:
    db.execute(
        "UPDATE runs SET status = ?, pid = ?, pid_started = ?, started_at = ?, finished_at = NULL, "
        "error = NULL, phase = 'starting', progress_updated_at = ? WHERE id = ?",
        (RUNNING, pid, process_start_time(pid), time.time(), time.time(), run_id),
    )


def reconcile() -> list[str]:
    """Call when a page loads: mark runs whose process is gone as interrupted, start the next queued run.
    Returns the ids newly marked interrupted. When the data directory cannot be written (read-only, disk
    full) nothing can be marked or started, and it returns [] so that the runs can still be listed."""
    try:
        with _queue_lock():
            dead = interrupt_dead_runs()
        kick_queue()
    except DataHomeUnavailable:
        return []
    return dead
