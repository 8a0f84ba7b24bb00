"""What people (and scripts) do to a run once it exists: stop it, resume it, delete it, wait for it to end.
Each says in words why it cannot, when the run's status forbids it, or, in a class, when the run is another
learner's (only its learner and the instructor may change it; ``learner=None`` is outside a class or the CLI).
"""

from __future__ import annotations

import shutil
import time

from core.classroom import Learner
from core.errors import RunError
from core.runs.queueing import kick_queue, queue_room, reconcile
from core.runs.records import ACTIVE, BACKGROUND, QUEUED, RESUMABLE, RUNNING, STOPPED, RunRecord, run_folder
from core.runs.store import connect, get_run, list_runs, transaction


def check_owner(record: RunRecord, learner: Learner | None, action: str) -> None:
    """RunError when ``learner`` may not ``action`` this run: in a class, only its learner and the instructor may."""
    if learner is None or learner.instructor or learner.owns(record.owner):
        return
    raise RunError(
        f"“{record.name}” is {record.owner or 'the instructor'}'s run: only they or the instructor can {action} it."
    )


def request_stop(run_id: str, learner: Learner | None = None) -> str:
    """Stop a run: a queued run leaves the queue at once; a running one stops within a batch and keeps its
    last checkpoint. Returns the run's status after the request."""
    check_owner(get_run(run_id), learner, "stop")
    with connect() as db, transaction(db):
        row = db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunError(f"There is no run {run_id!r} to stop.")
        if row["status"] == QUEUED:
            db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, phase = '' WHERE id = ?", (STOPPED, time.time(), run_id)
            )
            return STOPPED
        if row["status"] != RUNNING:
            raise RunError(f"Run {run_id} is {row['status']}, so there is nothing to stop.")
        db.execute("UPDATE runs SET stop_requested = 1 WHERE id = ?", (run_id,))
        return RUNNING


def resume_run(run_id: str, learner: Learner | None = None) -> str:
    """Queue a stopped, interrupted or failed run again; it continues from its last checkpoint with the
    next epoch number. Returns the run id."""
    record = get_run(run_id)
    check_owner(record, learner, "resume")
    if record.status not in RESUMABLE:
        raise RunError(f"Run {run_id} is {record.status}; only stopped, interrupted or failed runs can be resumed.")
    if record.epochs_done >= record.epochs_planned:
        raise RunError(
            f"Run {run_id} already trained all {record.epochs_planned} epochs. Start a new run "
            "(for example a fine-tune of it) to train more."
        )
    if queue_room(learner) == 0:
        raise RunError(
            "You already have as many runs waiting in the class queue as the instructor allows: wait until one "
            "starts, or stop one, then resume this run."
        )
    with connect() as db, transaction(db):
        db.execute(
            "UPDATE runs SET status = ?, queued_at = ?, stop_requested = 0, error = NULL, pid = NULL, "
            "launcher = ?, resumed = resumed + 1, phase = '' WHERE id = ?",
            (QUEUED, time.time(), BACKGROUND, run_id),
        )
    kick_queue()
    return run_id


def delete_run(run_id: str, learner: Learner | None = None) -> None:
    """Remove a finished run, its epochs and its folder (models, TensorBoard logs)."""
    record = get_run(run_id)
    check_owner(record, learner, "delete")
    if record.is_active:
        raise RunError(f"Run {run_id} is {record.status}: stop it before deleting it.")
    children = [r.id for r in list_runs(status=ACTIVE) if r.parent_id == run_id]
    if children:
        raise RunError(
            f"Run {run_id} is the starting point of fine-tune {children[0]}, which has not started "
            "yet: stop that one first."
        )
    with connect() as db, transaction(db):
        db.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
        db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
    shutil.rmtree(run_folder(run_id), ignore_errors=True)


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
