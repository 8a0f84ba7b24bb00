"""The run store: every training run, its epochs and live progress, in one SQLite file.

The store is the only channel between a training process and the pages: a page polls it every
second or two, a training process writes to it, and nothing in a browser session is needed to
recover a run. SQLite in WAL mode lets many short-lived readers run beside the one writer.

Runs train one at a time per machine. ``start_run`` puts a run in the queue and, if nothing is
training, launches ``python -m core.training --run-id ...`` as a detached process (it survives
browser refreshes and app restarts); a worker that finishes starts the next queued run, and
``reconcile`` (called when a page loads) marks runs whose process is gone as interrupted and
starts whatever is waiting. A file lock makes "is anything running? then start this one" atomic.

Statuses: queued -> running -> completed | stopped | failed | interrupted. Stopped, interrupted and
failed runs can be resumed from their last checkpoint; epochs keep their numbers.

This module does not import TensorFlow.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from core.config import RunConfig, TrainConfig
from core.errors import ConfigError, DataHomeUnavailable, RunError
from core.home import cannot_write, data_home, write_error

QUEUED, RUNNING, COMPLETED, STOPPED, FAILED, INTERRUPTED = (
    "queued", "running", "completed", "stopped", "failed", "interrupted")
STATUSES = (QUEUED, RUNNING, COMPLETED, STOPPED, FAILED, INTERRUPTED)
ACTIVE = (QUEUED, RUNNING)
RESUMABLE = (STOPPED, INTERRUPTED, FAILED)
BACKGROUND, FOREGROUND = "background", "foreground"  # who runs it: a spawned worker, or the CLI that made it

METRICS = ("loss", "accuracy", "top5_accuracy", "val_loss", "val_accuracy", "val_top5_accuracy")
LAST_MODEL, BEST_MODEL, TENSORBOARD_DIR, WORKER_LOG = (
    "model_last.keras", "model_best.keras", "tensorboard", "worker.log")
PARTIAL = "partial-"  # a checkpoint being written: partial-model_last.keras, renamed when complete
EPOCH_NOTE = "transfer_lab_epoch.json"  # inside a checkpoint's .keras archive: the epoch it holds, its metrics
BUSY_TIMEOUT_S = 30.0
OWNER_ENV = "TRANSFER_LAB_WORKER_OWNER"
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- records

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


# ---------------------------------------------------------------------------------------------- storage

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    regime TEXT NOT NULL,
    backbone TEXT NOT NULL,
    parent_id TEXT,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    launcher TEXT NOT NULL,
    created_at REAL NOT NULL,
    queued_at REAL,
    started_at REAL,
    finished_at REAL,
    error TEXT,
    pid INTEGER,
    pid_started TEXT,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    epochs_planned INTEGER NOT NULL,
    total_params INTEGER,
    trainable_params INTEGER,
    unfrozen_layers TEXT,
    device TEXT,
    resumed INTEGER NOT NULL DEFAULT 0,
    phase TEXT NOT NULL DEFAULT '',
    progress_epoch INTEGER NOT NULL DEFAULT 0,
    progress_batch INTEGER NOT NULL DEFAULT 0,
    progress_batches INTEGER,
    progress_images_per_s REAL,
    progress_updated_at REAL
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status, queued_at);
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    loss REAL, accuracy REAL, top5_accuracy REAL,
    val_loss REAL, val_accuracy REAL, val_top5_accuracy REAL,
    seconds REAL, images_per_s REAL,
    recorded_at REAL NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
"""
_ready: set[Path] = set()


def store_path() -> Path:
    return data_home() / "runs.sqlite"


def run_folder(run_id: str) -> Path:
    """``runs/<run_id>/`` under the data directory (not created)."""
    return data_home() / "runs" / run_id


def _enable_wal(db: sqlite3.Connection) -> None:
    """Switching a new store to WAL needs it to itself, and SQLite answers "locked" at once instead of
    waiting (no busy handler), so two first connections at once (two tabs, two launches) retry."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# SQLite's primary result codes that mean "this file or its folder cannot be written or grown".
_WRITE_FAILURES = (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL,
                   sqlite3.SQLITE_PERM)


def _is_write_failure(error: sqlite3.Error) -> bool:
    return (getattr(error, "sqlite_errorcode", -1) & 0xFF) in _WRITE_FAILURES


def _open(uri: str, *, setup: bool) -> sqlite3.Connection:
    db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys = ON")
        if setup:
            db.execute("PRAGMA synchronous = NORMAL")
            _enable_wal(db)
            db.executescript(SCHEMA)
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # opens the file (and the WAL) now
    except BaseException:
        db.close()
        raise
    return db


def _open_store(path: Path) -> sqlite3.Connection:
    """The store, read-write; read-only when its folder cannot be written (read-only, disk full: a WAL reader
    needs to create files beside it, so then it is opened read-only, else immutable); an empty read-only
    store when there is none and none can be made. Writes through a read-only one fail (SQLITE_READONLY)."""
    uri = "file:" + urllib.parse.quote(str(path))
    try:
        db = _open(uri, setup=path not in _ready)
    except sqlite3.Error as error:
        if not _is_write_failure(error):
            raise
    else:
        _ready.add(path)
        return db
    if path.is_file():
        for mode in ("mode=ro", "immutable=1"):
            with contextlib.suppress(sqlite3.Error):
                return _open(f"{uri}?{mode}", setup=False)
        raise _unwritable(path)
    db = _open(":memory:", setup=True)
    db.execute("PRAGMA query_only = ON")
    return db


def _unwritable(path: Path) -> DataHomeUnavailable:
    return write_error() or DataHomeUnavailable(
        f"The run store {path} cannot be opened for writing: check the disk holding it or point TRANSFER_LAB_HOME "
        "at a folder you can write, then try again.")


@contextlib.contextmanager
def connect() -> Iterator[sqlite3.Connection]:
    """A short-lived connection; commits on success. Readers never block the writer (WAL). When the data
    directory cannot be written (read-only, disk full) reading still works, and a write raises
    ``DataHomeUnavailable`` naming the folder and the fix."""
    path = store_path()
    db = _open_store(path)
    try:
        yield db
    except sqlite3.Error as error:
        if _is_write_failure(error):
            raise _unwritable(path) from error
        raise
    finally:
        db.close()


@contextlib.contextmanager
def keep_open() -> Iterator[None]:
    """Hold one connection open while a run trains. SQLite checkpoints (and fsyncs) the WAL whenever its
    last connection closes; with this one open, each short-lived write costs ~1 ms instead of ~20 ms."""
    with connect() as db:
        db.execute("SELECT 1 FROM runs LIMIT 1").fetchall()
        yield


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.in_transaction:  # SQLite has already rolled back after some errors (a full disk)
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


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


_SELECT = """
SELECT runs.*, (SELECT COUNT(*) FROM epochs WHERE epochs.run_id = runs.id) AS epochs_done,
       (SELECT MAX(val_accuracy) FROM epochs WHERE epochs.run_id = runs.id) AS best_val_accuracy
FROM runs
"""


def _record(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        id=row["id"], name=row["name"], regime=row["regime"], backbone=row["backbone"],
        parent_id=row["parent_id"], config_json=row["config"], status=row["status"], launcher=row["launcher"],
        created_at=row["created_at"], queued_at=row["queued_at"], started_at=row["started_at"],
        finished_at=row["finished_at"], error=row["error"], pid=row["pid"],
        stop_requested=bool(row["stop_requested"]), epochs_planned=row["epochs_planned"],
        epochs_done=row["epochs_done"], best_val_accuracy=row["best_val_accuracy"],
        total_params=row["total_params"], trainable_params=row["trainable_params"],
        unfrozen_layers=json.loads(row["unfrozen_layers"]) if row["unfrozen_layers"] else None,
        device=row["device"], resumed=row["resumed"])


def _new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


# ---------------------------------------------------------------------------------------------- queries

def list_runs(status: str | tuple[str, ...] | None = None, regime: str | None = None,
              limit: int | None = None) -> list[RunRecord]:
    """Runs, newest first, optionally only some statuses or one regime."""
    clauses, args = [], []
    if status is not None:
        statuses = (status,) if isinstance(status, str) else tuple(status)
        clauses.append(f"status IN ({','.join('?' * len(statuses))})")
        args.extend(statuses)
    if regime is not None:
        clauses.append("regime = ?")
        args.append(regime)
    sql = _SELECT + (" WHERE " + " AND ".join(clauses) if clauses else "") + " ORDER BY created_at DESC, id DESC"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    with connect() as db:
        return [_record(row) for row in db.execute(sql, args)]


def get_run(run_id: str) -> RunRecord:
    with connect() as db:
        row = db.execute(_SELECT + " WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise RunError(f"There is no run {run_id!r} in {store_path()}: it may have been deleted.")
    return _record(row)


def epochs(run_id: str) -> list[EpochRecord]:
    """Finished epochs of a run, in order."""
    with connect() as db:
        rows = db.execute("SELECT * FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,)).fetchall()
    return [EpochRecord(**{key: row[key] for key in row.keys() if key != "run_id"}) for row in rows]


def queue() -> list[RunRecord]:
    """Queued runs in the order they will start."""
    with connect() as db:
        rows = db.execute(_SELECT + " WHERE status = ? ORDER BY queued_at, id", (QUEUED,)).fetchall()
    return [_record(row) for row in rows]


def queue_position(run_id: str) -> int | None:
    """1 for the next run to start, 2 for the one after, ...; None when the run is not queued."""
    ids = [record.id for record in queue()]
    return ids.index(run_id) + 1 if run_id in ids else None


def progress(run_id: str) -> RunProgress:
    with connect() as db:
        row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise RunError(f"There is no run {run_id!r}: it may have been deleted.")
    return RunProgress(status=row["status"], phase=row["phase"], epoch=row["progress_epoch"],
                       epochs=row["epochs_planned"], batch=row["progress_batch"], batches=row["progress_batches"],
                       images_per_s=row["progress_images_per_s"], updated_at=row["progress_updated_at"],
                       queue_position=queue_position(run_id) if row["status"] == QUEUED else None)


def finetune_parents() -> list[RunRecord]:
    """Frozen runs a fine-tune can start from: they saved a model after at least one epoch."""
    return [r for r in list_runs(status=(COMPLETED, STOPPED, INTERRUPTED), regime="frozen") if r.last_model]


def running_run() -> RunRecord | None:
    runs = list_runs(status=RUNNING)
    return runs[0] if runs else None


# ---------------------------------------------------------------------------------------------- starting runs

def check_parent(config: RunConfig) -> RunRecord | None:
    """For a fine-tune: the parent run, which must be a frozen run with a saved model, trained on the same
    data with the same network (its classes, backbone and image size are what the fine-tune continues)."""
    if config.model.regime != "finetune":
        return None
    parent = get_run(config.model.parent_run_id)
    named = f"The frozen run “{parent.name}”"
    if parent.regime != "frozen":
        raise ConfigError(f"“{parent.name}” trained the {parent.regime!r} regime; fine-tuning continues "
                          "a frozen-backbone run. Pick a frozen run to fine-tune.")
    if parent.last_model is None:
        raise ConfigError(f"{named} has no saved model yet: let it finish at least one epoch, then fine-tune it.")
    parent_model, parent_data = parent.config.model, parent.config.data
    if parent_model.backbone != config.model.backbone or (
            parent_model.effective_image_size != config.model.effective_image_size):
        raise ConfigError(
            f"{named} trained {parent_model.backbone} at {parent_model.effective_image_size} px, and a fine-tune "
            f"continues that network, so it keeps its backbone and image size (got {config.model.backbone} at "
            f"{config.model.effective_image_size} px). Leave them unset and they are taken from the frozen run.")
    same_data = (parent_data.source, parent_data.test_fraction, parent_data.seed) == (
        config.data.source, config.data.test_fraction, config.data.seed)
    if not same_data:
        raise ConfigError(
            f"{named} learnt its classes from {parent_data.summary()} (split seed {parent_data.seed}); a fine-tune "
            f"continues on the same data and split (got {config.data.summary()}, split seed {config.data.seed}). "
            "Leave the data unset and it is taken from the frozen run.")
    return parent


def finetune_config(parent_id: str, **model_changes: Any) -> RunConfig:
    """A fine-tune of a frozen run: same data, augmentation, backbone and image size; regime defaults."""
    parent = get_run(parent_id)
    base = parent.config
    model = base.model.replace(regime="finetune", weights=None, parent_run_id=parent_id, **model_changes)
    return RunConfig(name="", data=base.data, augment=base.augment, model=model,
                     train=TrainConfig(batch_size=base.train.batch_size,
                                       mixed_precision=base.train.mixed_precision, seed=base.train.seed))


def create_run(config: RunConfig, launcher: str = BACKGROUND) -> str:
    """Put a run in the store as queued (it does not start it); returns its id."""
    check_parent(config)
    run_id = _new_run_id()
    now = time.time()
    owner = (os.getpid(), _process_start_time(os.getpid())) if launcher == FOREGROUND else (None, None)
    with connect() as db, _transaction(db):
        db.execute(
            "INSERT INTO runs (id, name, regime, backbone, parent_id, config, status, launcher, created_at, "
            "queued_at, epochs_planned, pid, pid_started) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, config.display_name(), config.model.regime, config.model.backbone,
             config.model.parent_run_id, config.to_json(), QUEUED, launcher, now, now,
             config.effective_epochs, *owner))
    folder = run_folder(run_id)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise cannot_write(folder, error) from error
    return run_id


def start_run(config: RunConfig) -> str:
    """Queue a run and start it in its own process if nothing else is training. Returns at once."""
    run_id = create_run(config, BACKGROUND)
    kick_queue()
    return run_id


def worker_owner() -> str:
    """'pid:start' of the process that owns the background workers: the app (or script) that started the
    first of them. A worker that starts the next queued run passes its owner on; when the owner is gone
    (the app was shut down), workers end their run as interrupted instead of training on unseen."""
    return os.environ.get(OWNER_ENV) or f"{os.getpid()}:{_process_start_time(os.getpid())}"


def owner_alive(owner: str) -> bool:
    pid, _, started = owner.partition(":")
    return process_alive(int(pid), None if started in ("", "None") else started) if pid.isdigit() else True


def _spawn_worker(run_id: str) -> subprocess.Popen:
    """``python -m core.training --run-id ID``, detached from this process's session, logging to its folder."""
    folder = run_folder(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TRANSFER_LAB_HOME": str(data_home()), OWNER_ENV: worker_owner(),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}
    with open(folder / WORKER_LOG, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "core.training.worker", "--run-id", run_id], cwd=ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _startable(db: sqlite3.Connection) -> sqlite3.Row | None:
    """The head of the queue, if nothing is running."""
    if db.execute("SELECT 1 FROM runs WHERE status = ?", (RUNNING,)).fetchone():
        return None
    return db.execute("SELECT id, launcher FROM runs WHERE status = ? ORDER BY queued_at, id LIMIT 1",
                      (QUEUED,)).fetchone()


def kick_queue() -> str | None:
    """If nothing is training, start the next queued background run. Returns its id, if one started."""
    with _queue_lock():
        _interrupt_dead_runs()
        with connect() as db:
            if _startable(db) is None:
                return None  # the common case when a page polls: decided without taking the write lock
            with _transaction(db):
                head = _startable(db)
                if head is None or head["launcher"] == FOREGROUND:
                    return None  # a foreground run is started by its own CLI process (claim_foreground)
                try:
                    worker = _spawn_worker(head["id"])
                except OSError as error:
                    db.execute("UPDATE runs SET status = ?, error = ?, finished_at = ? WHERE id = ?",
                               (FAILED, f"The training process could not be started: {error}", time.time(),
                                head["id"]))
                    return None
                _set_running(db, head["id"], worker.pid)
    return head["id"]


def claim_foreground(run_id: str) -> bool:
    """For the CLI: mark its own queued run running if it is next in line and nothing else trains."""
    with _queue_lock():
        _interrupt_dead_runs()
        with connect() as db, _transaction(db):
            head = _startable(db)
            if head is None or head["id"] != run_id:
                return False
            _set_running(db, run_id, os.getpid())
    return True


def _set_running(db: sqlite3.Connection, run_id: str, pid: int) -> None:
    db.execute("UPDATE runs SET status = ?, pid = ?, pid_started = ?, started_at = ?, finished_at = NULL, "
               "error = NULL, phase = 'starting', progress_updated_at = ? WHERE id = ?",
               (RUNNING, pid, _process_start_time(pid), time.time(), time.time(), run_id))


# ---------------------------------------------------------------------------------------------- processes

def _process_start_time(pid: int) -> str | None:
    """The kernel's start time of a process (guards against a recycled pid); None without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_alive(pid: int | None, started: str | None = None) -> bool:
    """Is this process still running (not a zombie, not a new process that reused the pid)?"""
    if not pid:
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it was our child, so it does not linger as a zombie
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return False
    return started is None or fields[19] == started


def _dead_runs(db: sqlite3.Connection) -> list[str]:
    """Running runs whose process is gone, and queued CLI runs whose CLI is gone."""
    rows = db.execute("SELECT id, status, pid, pid_started, launcher FROM runs WHERE status IN (?, ?)",
                      (RUNNING, QUEUED)).fetchall()
    return [row["id"] for row in rows
            if (row["status"] == RUNNING or row["launcher"] == FOREGROUND)
            and not process_alive(row["pid"], row["pid_started"])]


def _interrupt_dead_runs() -> list[str]:
    with connect() as db:
        candidates = _dead_runs(db)
    if not candidates:
        return []
    for run_id in candidates:
        sync_checkpoint(run_id)  # killed between saving a checkpoint and recording its epoch
    with connect() as db, _transaction(db):
        dead = _dead_runs(db)
        for run_id in dead:
            done = db.execute("SELECT COUNT(*) FROM epochs WHERE run_id = ?", (run_id,)).fetchone()[0]
            db.execute("UPDATE runs SET status = ?, finished_at = ?, phase = '', error = ? WHERE id = ?",
                       (INTERRUPTED, time.time(),
                        f"The training process ended unexpectedly after {done} finished epoch(s) (killed, out "
                        "of memory, or the machine restarted). Resume the run to continue from its last "
                        "checkpoint.", run_id))
    return dead


def reconcile() -> list[str]:
    """Call when a page loads: mark runs whose process is gone as interrupted, start the next queued run.
    Returns the ids newly marked interrupted. When the data directory cannot be written (read-only, disk
    full) nothing can be marked or started, and it returns [] so that the runs can still be listed."""
    try:
        with _queue_lock():
            dead = _interrupt_dead_runs()
        kick_queue()
    except DataHomeUnavailable:
        return []
    return dead


# ---------------------------------------------------------------------------------------------- controls

def request_stop(run_id: str) -> str:
    """Stop a run: a queued run leaves the queue at once; a running one stops within a batch and keeps its
    last checkpoint. Returns the run's status after the request."""
    with connect() as db, _transaction(db):
        row = db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunError(f"There is no run {run_id!r} to stop.")
        if row["status"] == QUEUED:
            db.execute("UPDATE runs SET status = ?, finished_at = ?, phase = '' WHERE id = ?",
                       (STOPPED, time.time(), run_id))
            return STOPPED
        if row["status"] != RUNNING:
            raise RunError(f"Run {run_id} is {row['status']}, so there is nothing to stop.")
        db.execute("UPDATE runs SET stop_requested = 1 WHERE id = ?", (run_id,))
        return RUNNING


def resume_run(run_id: str) -> str:
    """Queue a stopped, interrupted or failed run again; it continues from its last checkpoint with the
    next epoch number. Returns the run id."""
    record = get_run(run_id)
    if record.status not in RESUMABLE:
        raise RunError(f"Run {run_id} is {record.status}; only stopped, interrupted or failed runs can be resumed.")
    if record.epochs_done >= record.epochs_planned:
        raise RunError(f"Run {run_id} already trained all {record.epochs_planned} epochs. Start a new run "
                       "(for example a fine-tune of it) to train more.")
    with connect() as db, _transaction(db):
        db.execute("UPDATE runs SET status = ?, queued_at = ?, stop_requested = 0, error = NULL, pid = NULL, "
                   "launcher = ?, resumed = resumed + 1, phase = '' WHERE id = ?",
                   (QUEUED, time.time(), BACKGROUND, run_id))
    kick_queue()
    return run_id


def delete_run(run_id: str) -> None:
    """Remove a finished run, its epochs and its folder (models, TensorBoard logs)."""
    record = get_run(run_id)
    if record.is_active:
        raise RunError(f"Run {run_id} is {record.status}: stop it before deleting it.")
    children = [r.id for r in list_runs(status=ACTIVE) if r.parent_id == run_id]
    if children:
        raise RunError(f"Run {run_id} is the starting point of fine-tune {children[0]}, which has not started "
                       "yet: stop that one first.")
    with connect() as db, _transaction(db):
        db.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
        db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
    shutil.rmtree(run_folder(run_id), ignore_errors=True)


# ---------------------------------------------------------------------------------------------- writing (training side)

def stop_requested(run_id: str) -> bool:
    with connect() as db:
        row = db.execute("SELECT stop_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
    return bool(row and row["stop_requested"])


def record_setup(run_id: str, *, device: str, total_params: int, trainable_params: int,
                 unfrozen_layers: list[str] | None = None) -> None:
    """What the training process built: device, parameter counts, layers a fine-tune unfroze."""
    with connect() as db, _transaction(db):
        db.execute("UPDATE runs SET device = ?, total_params = ?, trainable_params = ?, "
                   "unfrozen_layers = COALESCE(?, unfrozen_layers) WHERE id = ?",
                   (device, total_params, trainable_params,
                    json.dumps(unfrozen_layers) if unfrozen_layers is not None else None, run_id))


def record_progress(run_id: str, *, phase: str, epoch: int | None = None, batch: int | None = None,
                    batches: int | None = None, images_per_s: float | None = None) -> None:
    """Live progress; fields left None keep their value."""
    with connect() as db, _transaction(db):
        db.execute("UPDATE runs SET phase = ?, progress_epoch = COALESCE(?, progress_epoch), "
                   "progress_batch = COALESCE(?, progress_batch), progress_batches = COALESCE(?, progress_batches), "
                   "progress_images_per_s = COALESCE(?, progress_images_per_s), progress_updated_at = ? "
                   "WHERE id = ?", (phase, epoch, batch, batches, images_per_s, time.time(), run_id))


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def record_epoch(run_id: str, epoch: int, metrics: Mapping[str, Any], *, seconds: float | None = None,
                 images_per_s: float | None = None) -> None:
    """A finished epoch (1-based). Written after its checkpoint, so a recorded epoch always has one."""
    with connect() as db, _transaction(db):
        db.execute(f"INSERT OR REPLACE INTO epochs (run_id, epoch, {', '.join(METRICS)}, seconds, images_per_s, "
                   f"recorded_at) VALUES ({', '.join('?' * (len(METRICS) + 5))})",
                   (run_id, epoch, *(_number(metrics.get(name)) for name in METRICS), seconds, images_per_s,
                    time.time()))


def epoch_note(epoch: int, metrics: Mapping[str, Any], *, seconds: float | None = None,
               images_per_s: float | None = None, best: bool = False) -> dict[str, Any]:
    """What a checkpoint carries about itself (``EPOCH_NOTE``): the 1-based epoch it holds, that epoch's metrics
    and timing as ``record_epoch`` takes them, and whether it is also the run's best model."""
    return {"epoch": int(epoch), "metrics": {name: _number(metrics.get(name)) for name in METRICS},
            "seconds": _number(seconds), "images_per_s": _number(images_per_s), "best": bool(best)}


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
    record_epoch(run_id, note["epoch"], note["metrics"], seconds=note.get("seconds"),
                 images_per_s=note.get("images_per_s"))
    return note["epoch"]


def finish_run(run_id: str, status: str, error: str | None = None) -> None:
    """Final status of a run: completed, stopped, failed or interrupted."""
    if status not in (COMPLETED, STOPPED, FAILED, INTERRUPTED):
        raise RunError(f"{status!r} is not a final status.")
    with connect() as db, _transaction(db):
        db.execute("UPDATE runs SET status = ?, error = ?, finished_at = ?, phase = '', stop_requested = 0 "
                   "WHERE id = ?", (status, error, time.time(), run_id))


def wait_until_finished(run_id: str, timeout_s: float = 600.0, poll_s: float = 0.5) -> RunRecord:
    """Block until a run leaves queued/running (for scripts and tests); RunError on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        reconcile()
        record = get_run(run_id)
        if not record.is_active:
            return record
        if time.monotonic() > deadline:
            raise RunError(f"Run {run_id} is still {record.status} after {timeout_s:.0f} s.")
        time.sleep(poll_s)


def config_summary(config: RunConfig) -> dict[str, Any]:
    """The numbers a run will really use, with regime defaults filled in (for pages and the CLI)."""

    return {"backbone": config.model.backbone, "regime": config.model.regime,
            "image_size": config.model.effective_image_size, "weights": config.model.effective_weights,
            "epochs": config.effective_epochs, "batch_size": config.train.batch_size,
            "learning_rate": config.effective_learning_rate,
            "weight_decay": config.effective_weight_decay}

