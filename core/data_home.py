"""The one data directory for everything the app writes.

``$TRANSFER_LAB_HOME`` (default ``./.transfer-lab``) holds ``runs.sqlite``, ``runs/<id>/``,
``cache/`` (converted weights, features) and ``datasets/`` (the generated demo set, TFDS data).

A directory that cannot be created (a file in its place or on its path), or written (read-only,
disk full), is a ``DataHomeUnavailable`` whose message names the folder and the fix; reading what
an existing directory holds never needs a write.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from core.errors import DataHomeUnavailable

FULL = (errno.ENOSPC, errno.EDQUOT)
READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
ELSEWHERE = "or point TRANSFER_LAB_HOME at a folder you can write"


def home_path() -> Path:
    """Where the data directory is (or would be), without creating it."""
    return Path(os.environ.get("TRANSFER_LAB_HOME", ".transfer-lab")).expanduser().absolute()


def data_home() -> Path:
    """The data directory, created on first use."""
    return _folder(home_path())


def subdir(*parts: str) -> Path:
    """A folder under the data directory (``subdir('cache', 'weights')``), created on first use."""
    return _folder(data_home().joinpath(*parts))


def _folder(path: Path) -> Path:
    if path.is_dir():
        return path.resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise cannot_write(path, error) from error
    return path.resolve()


def _file_in_the_way(path: Path) -> Path | None:
    """``path`` itself or the nearest folder above it that exists as something other than a folder."""
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return None if candidate.is_dir() else candidate
    return None


def cannot_write(path: Path, error: BaseException | None = None, *, then: str = "try again") -> DataHomeUnavailable:
    """The typed error for a folder under the data directory that cannot be created or written: one sentence
    naming the folder, what is wrong and the fix. ``then`` ends the fix ("resume the run", ...)."""
    blocker = _file_in_the_way(path)
    code = getattr(error, "errno", None)
    if blocker == path:
        return DataHomeUnavailable(
            f"The data directory {path} is a file, not a folder: move that file away {ELSEWHERE}, then {then}."
        )
    if blocker is not None:
        return DataHomeUnavailable(
            f"The data directory {path} cannot be created because {blocker} is a file, "
            f"not a folder: point TRANSFER_LAB_HOME at a folder you can write, then {then}."
        )
    if code in FULL:
        return DataHomeUnavailable(
            f"The disk is full: free space in {_existing(path)} or point TRANSFER_LAB_HOME "
            f"at a folder on another disk, then {then} ({os.strerror(code)})."
        )
    if code in READ_ONLY:
        return DataHomeUnavailable(
            f"The data directory {_existing(path)} is read-only: its runs can be viewed but "
            f"nothing new can be saved; make it writable {ELSEWHERE}, then {then} "
            f"({os.strerror(code)})."
        )
    reason = os.strerror(code) if code else (str(error) if error else "unknown reason")
    return DataHomeUnavailable(
        f"The data directory {_existing(path)} cannot be written: check its disk {ELSEWHERE}, then {then} ({reason})."
    )


def _existing(path: Path) -> Path:
    """The deepest existing folder of ``path`` (the one a person can look at)."""
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return path


def write_error(then: str = "try again") -> DataHomeUnavailable | None:
    """None when the data directory can be written, else the error saying why not and what to do. It writes
    and removes a small file, so a full disk, a read-only directory and a file in the way are told apart."""
    probe = None
    try:
        probe = data_home() / f".write-check-{os.getpid()}"
        with open(probe, "wb") as handle:
            handle.write(b"\0" * 4096)
    except DataHomeUnavailable as error:
        return error
    except OSError as error:
        return cannot_write(home_path(), error, then=then)
    finally:
        if probe is not None:
            with contextlib.suppress(OSError):
                probe.unlink()
    return None


def write_problem() -> str | None:
    """The sentence of ``write_error()`` (for a page's warning), or None when the data directory is writable."""
    error = write_error()
    return None if error is None else str(error)
