"""Has the run store changed? One cheap answer for the pages that poll it.

Every write to the store (a training process's progress, a new epoch, a launch, a stop) changes the size or the
modification time of ``runs.sqlite`` or of its write-ahead log ``runs.sqlite-wal``, so two ``os.stat`` calls
tell whether anything new can be read. A page keys what it reads from the store by this stamp, and thirty
sessions polling the same store then share one read per change instead of each querying SQLite every second.
"""

from __future__ import annotations

import os

from core.runs.store import store_path


def stamp() -> tuple[int, ...]:
    """(modification time in ns, size) of the store and of its log; zeros for a file not there yet."""
    path = store_path()
    values: list[int] = []
    for name in (path, path.with_name(path.name + "-wal")):
        try:
            info = os.stat(name)
        except OSError:
            values += [0, 0]
        else:
            values += [info.st_mtime_ns, info.st_size]
    return tuple(values)
