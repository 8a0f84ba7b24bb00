"""A background worker: one process trains one run, then starts the next queued run and ends.

``core.runs.start_run`` launches ``python -m core.training.worker --run-id ID`` detached from the app;
the run trains through ``engine.execute`` while ``RunGuard`` watches the store beside it, and
``end_worker`` ends the process once its run is recorded. The engine (and with it TensorFlow) is imported
only once ``core.allocator`` has asked for TensorFlow's pooled CPU allocator.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any

from core import runs
from core.allocator import use_pooled_cpu_allocator
from core.errors import RunError

# Phases with no batch to stop after: a stop asked then ends the worker at once (a kill -9 there loses nothing).
BEFORE_TRAINING = ("starting", "loading data", "building model")
WATCH_EVERY_S = 0.5
# A worker still alive this long after its run ended is stuck in interpreter shutdown: end it.
LINGER_LIMIT_S = 20.0


OWNER_GONE_MESSAGE = (
    "The app that started this run was shut down, so the run stopped with it after {done} "
    "finished epoch(s). Resume it to continue from its last checkpoint."
)


class RunGuard(threading.Thread):
    """Watches the store for the worker's run, beside the training thread.

    - A stop asked while data loads or the model is built (phases with no batch to stop after) is
      recorded and the process ends at once, instead of after the data is ready.
    - When the app that started the worker is gone (shut down), the run stops as it would on Stop and
      is recorded as interrupted (resumable); no worker outlives the app.
    - A run that is no longer this process's (deleted, or resumed by another worker after this one was
      given up for dead) ends the process without writing anything.
    - A process still alive well after its run ended ends too.
    """

    def __init__(self, run_id: str, owner: str | None):
        super().__init__(name=f"run-guard-{run_id}", daemon=True)
        self.run_id = run_id
        self.owner = owner
        self.owner_gone = threading.Event()

    def run(self) -> None:
        while True:
            time.sleep(WATCH_EVERY_S)
            try:
                verdict = self._verdict()
            except Exception:  # a store busy or briefly unreadable: look again next time
                continue
            if verdict is not None:
                print(f"run {self.run_id}: {verdict}", flush=True)
                end_worker(0, kick=verdict == runs.STOPPED and not self.owner_gone.is_set())

    def _verdict(self) -> str | None:
        try:
            record = runs.get_run(self.run_id)
        except RunError:
            return "deleted while its process ran; ending it"
        if record.pid != os.getpid():
            return "taken over by another process; ending this one"
        if record.status != runs.RUNNING:
            lingering = time.time() - (record.finished_at or time.time())
            return (
                f"ended {lingering:.0f} s ago but its process lingered; ending it"
                if (lingering > LINGER_LIMIT_S)
                else None
            )
        if self.owner and not self.owner_gone.is_set() and not runs.owner_alive(self.owner):
            self.owner_gone.set()
            runs.request_stop(self.run_id)
            record = runs.get_run(self.run_id)
        if record.stop_requested and runs.progress(self.run_id).phase in BEFORE_TRAINING:
            self.finish_stopped()
            return runs.STOPPED
        return None

    def finish_stopped(self) -> str:
        """Record a stopped run: interrupted (with why) when the app is gone, else stopped. Returns the status."""
        if self.owner_gone.is_set():
            done = len(runs.epochs(self.run_id))
            runs.finish_run(self.run_id, runs.INTERRUPTED, OWNER_GONE_MESSAGE.format(done=done))
            return runs.INTERRUPTED
        runs.finish_run(self.run_id, runs.STOPPED)
        return runs.STOPPED


def end_worker(code: int, *, kick: bool = True) -> None:
    """End the worker process now that its run is recorded, after starting the next queued run.

    ``os._exit`` skips interpreter shutdown on purpose: there, destroying a ``tf.data`` iterator waits
    for its in-flight ``numpy_function`` calls, which wait for the lock the exiting thread holds, and a
    stopped worker hung for ever (1.8 GB each). Everything a run keeps is already in the store and on
    disk when this is called."""
    try:
        if kick:
            runs.kick_queue()
    except Exception:  # the next run then starts on the next page load (reconcile)
        traceback.print_exc(file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _end_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _wait_to_be_marked_running(run_id: str, timeout_s: float = 30.0) -> None:
    """The launcher records 'running' with our pid just after starting us; make sure we see it."""
    deadline = time.monotonic() + timeout_s
    while runs.get_run(run_id).status == runs.QUEUED and time.monotonic() < deadline:
        time.sleep(0.2)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of a background worker: train one run, start the next queued one, end."""
    parser = argparse.ArgumentParser(
        prog="python -m core.training.worker", description="Train one queued run (started by core.runs.start_run)."
    )
    parser.add_argument("--run-id", required=True)
    args = parser.parse_args(argv)
    use_pooled_cpu_allocator()  # before TensorFlow is imported
    from core.training.engine import execute

    signal.signal(signal.SIGTERM, _end_on_sigterm)
    code = 1
    guard = RunGuard(args.run_id, os.environ.get(runs.OWNER_ENV))
    try:
        _wait_to_be_marked_running(args.run_id)
        guard.start()
        outcome = execute(args.run_id)
        status = guard.finish_stopped() if outcome.status == runs.STOPPED else outcome.status
        print(f"run {args.run_id}: {status}" + (f" ({outcome.error})" if outcome.error else ""), flush=True)
        code = 0 if outcome.status != runs.FAILED else 1
    except SystemExit as error:
        code = error.code if isinstance(error.code, int) else 1
    except BaseException:
        traceback.print_exc(file=sys.stderr)
    finally:
        end_worker(code, kick=not guard.owner_gone.is_set())  # no app: queued runs wait for its next start
    return code


if __name__ == "__main__":
    sys.exit(main())
