"""The run store: every training run, its epochs and live progress, in one SQLite file, and the queries that
read it back as records.

The store is the only channel between a training process and the pages: a page polls it every second or two,
a training process writes to it, and nothing in a browser session is needed to recover a run. SQLite in WAL
mode lets many short-lived readers run beside the one writer. A data directory that cannot be written (read
only, disk full) still opens for reading; a write through it raises ``DataHomeUnavailable``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from core.data_home import data_home, write_error
from core.errors import DataHomeUnavailable, RunError
from core.runs.fairness import Waiting, owner_key, round_robin
from core.runs.records import QUEUED, RUNNING, EpochRecord, RunProgress, RunRecord

BUSY_TIMEOUT_S = 30.0

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
    progress_updated_at REAL,
    owner TEXT
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
COLUMNS_ADDED = {"owner": "TEXT"}  # columns added after stores were first made: added to an older store on open
_ready: set[Path] = set()


def store_path() -> Path:
    return data_home() / "runs.sqlite"


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
_WRITE_FAILURES = (
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_PERM,
)


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
            _add_new_columns(db)
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # opens the file (and the WAL) now
    except BaseException:
        db.close()
        raise
    return db


def _add_new_columns(db: sqlite3.Connection) -> None:
    """A store made by an older version gains the columns added since (NULL in its existing rows)."""
    present = {row["name"] for row in db.execute("PRAGMA table_info(runs)")}
    for name, kind in COLUMNS_ADDED.items():
        if name not in present:
            with contextlib.suppress(sqlite3.OperationalError):  # another process added it first
                db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")


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
        "at a folder you can write, then try again."
    )


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
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write, all or nothing; it takes the write lock at its start, so what it read cannot change under it."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.in_transaction:  # SQLite has already rolled back after some errors (a full disk)
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


_SELECT = """
SELECT runs.*, (SELECT COUNT(*) FROM epochs WHERE epochs.run_id = runs.id) AS epochs_done,
       (SELECT MAX(val_accuracy) FROM epochs WHERE epochs.run_id = runs.id) AS best_val_accuracy
FROM runs
"""


def _from_row(cls: type, row: sqlite3.Row, columns: Mapping[str, str] | None = None, **computed: Any) -> Any:
    """``cls`` (a record dataclass) from a row: each field is the column of its name, or the one ``columns``
    names, unless ``computed`` gives its value."""
    columns = columns or {}
    return cls(
        **{
            f.name: computed[f.name] if f.name in computed else row[columns.get(f.name, f.name)]
            for f in dataclasses.fields(cls)
        }
    )


def _owner(row: sqlite3.Row) -> str | None:
    """The run's learner; None also in a read-only store made before classes (it has no owner column)."""
    return row["owner"] if "owner" in row.keys() else None


def _record(row: sqlite3.Row) -> RunRecord:
    return _from_row(
        RunRecord,
        row,
        {"config_json": "config"},
        stop_requested=bool(row["stop_requested"]),
        owner=_owner(row),
        unfrozen_layers=json.loads(row["unfrozen_layers"]) if row["unfrozen_layers"] else None,
    )


_PROGRESS_COLUMNS = {"epochs": "epochs_planned"} | {
    name: f"progress_{name}" for name in ("epoch", "batch", "batches", "images_per_s", "updated_at")
}
"""RunProgress field -> runs column, where the names differ."""


# ---------------------------------------------------------------------------------------------- queries


def list_runs(
    status: str | tuple[str, ...] | None = None,
    regime: str | None = None,
    limit: int | None = None,
    owner: str | None = None,
) -> list[RunRecord]:
    """Runs, newest first, optionally only some statuses, one regime or one learner's (names compared without
    case, as ``core.classroom.Learner`` does)."""
    clauses, args = [], []
    if owner is not None:
        clauses.append("owner = ? COLLATE NOCASE")
        args.append(owner)
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
    return [_from_row(EpochRecord, row) for row in rows]


def queue_order(db: sqlite3.Connection) -> list[str]:
    """The ids of the queued runs in the order they will start: round-robin across learners
    (``core.runs.fairness``), first come, first served outside a class."""
    rows = db.execute("SELECT * FROM runs WHERE status = ? ORDER BY queued_at, id", (QUEUED,)).fetchall()
    if not rows:
        return []
    waiting = [Waiting(row["id"], _owner(row) or "", row["queued_at"] or 0.0) for row in rows]
    last_started: dict[str, float] = {}
    for row in db.execute("SELECT * FROM runs WHERE started_at IS NOT NULL"):
        key = owner_key(_owner(row))
        last_started[key] = max(last_started.get(key, row["started_at"]), row["started_at"])
    return round_robin(waiting, last_started)


def queue() -> list[RunRecord]:
    """Queued runs in the order they will start."""
    with connect() as db:
        order = queue_order(db)
        rows = {row["id"]: row for row in db.execute(_SELECT + " WHERE status = ?", (QUEUED,)).fetchall()}
    return [_record(rows[run_id]) for run_id in order if run_id in rows]


def queue_position(run_id: str) -> int | None:
    """1 for the next run to start, 2 for the one after, ...; None when the run is not queued."""
    ids = [record.id for record in queue()]
    return ids.index(run_id) + 1 if run_id in ids else None


def progress(run_id: str) -> RunProgress:
    with connect() as db:
        row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise RunError(f"There is no run {run_id!r}: it may have been deleted.")
    queued = row["status"] == QUEUED
    return _from_row(RunProgress, row, _PROGRESS_COLUMNS, queue_position=queue_position(run_id) if queued else None)


def running_run() -> RunRecord | None:
    runs = list_runs(status=RUNNING)
    return runs[0] if runs else None
