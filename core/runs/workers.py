"""The training processes: starting one for a run, and telling whether a process is still there.

A background run trains in ``python -m core.training.worker --run-id ...``, detached from the process that
started it, so it survives browser refreshes and app restarts. A pid alone cannot say a process is alive (pids
are recycled), so the store keeps each pid's start time beside it. Runs whose process is gone are marked
interrupted here, after the store has been made to agree with their last checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from core.data_home import data_home
from core.runs.recording import sync_checkpoint
from core.runs.records import FOREGROUND, INTERRUPTED, QUEUED, RUNNING, WORKER_LOG, run_folder
from core.runs.store import connect, transaction

OWNER_ENV = "TRANSFER_LAB_WORKER_OWNER"
ROOT = Path(__file__).resolve().parents[2]


def process_start_time(pid: int) -> str | None:
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


def worker_owner() -> str:
    """'pid:start' of the process that owns the background workers: the app (or script) that started the
    first of them. A worker that starts the next queued run passes its owner on; when the owner is gone
    (the app was shut down), workers end their run as interrupted instead of training on unseen."""
    return os.environ.get(OWNER_ENV) or f"{os.getpid()}:{process_start_time(os.getpid())}"


def owner_alive(owner: str) -> bool:
    pid, _, started = owner.partition(":")
    return process_alive(int(pid), None if started in ("", "None") else started) if pid.isdigit() else True


def spawn_worker(run_id: str) -> subprocess.Popen:
    """``python -m core.training.worker --run-id ID``, detached from this process's session, logging to its
    folder."""
    folder = run_folder(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "TRANSFER_LAB_HOME": str(data_home()),
        OWNER_ENV: worker_owner(),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
    }
    with open(folder / WORKER_LOG, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "core.training.worker", "--run-id", run_id],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _dead_runs(db: sqlite3.Connection) -> list[str]:
    """Running runs whose process is gone, and queued CLI runs whose CLI is gone."""
    rows = db.execute(
        "SELECT id, status, pid, pid_started, launcher FROM runs WHERE status IN (?, ?)", (RUNNING, QUEUED)
    ).fetchall()
    return [
        row["id"]
        for row in rows
        if (row["status"] == RUNNING or row["launcher"] == FOREGROUND)
        and not process_alive(row["pid"], row["pid_started"])
    ]


def interrupt_dead_runs() -> list[str]:
    """Mark runs whose process is gone as interrupted (callers hold the queue lock); returns their ids."""
    with connect() as db:
        candidates = _dead_runs(db)
    if not candidates:
        return []
    for run_id in candidates:
        sync_checkpoint(run_id)  # killed between saving a checkpoint and recording its epoch
    with connect() as db, transaction(db):
        dead = _dead_runs(db)
        for run_id in dead:
            done = db.execute("SELECT COUNT(*) FROM epochs WHERE run_id = ?", (run_id,)).fetchone()[0]
            db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, phase = '', error = ? WHERE id = ?",
                (
                    INTERRUPTED,
                    time.time(),
                    f"The training process ended unexpectedly after {done} finished epoch(s) (killed, out "
                    "of memory, or the machine restarted). Resume the run to continue from its last "
                    "checkpoint.",
                    run_id,
                ),
            )
    return dead
