"""Disks that refuse writes, for fault-injection tests (root ignores file modes, so modes alone prove nothing).

- ``DiskFull``: files opened for writing under a folder get a budget of bytes, then ``write`` fails with
  ENOSPC after writing what fitted, as on a disk with that much free space. It wraps ``open``, which is how
  Python code and Keras' saver write files; install it with ``DiskFull(folder, budget).install(monkeypatch)``.
- ``run_full``: a subprocess in which nothing can grow a file: C code (SQLite) meets the kernel's file size
  limit set to 0 (``RLIMIT_FSIZE``, so its writes fail like a full disk's: SQLite reports "disk I/O error"),
  and Python's ``open`` meets ``DiskFull`` with no budget (ENOSPC).
- ``kill_after_replacing``: a SIGKILL at an exact point of a subprocess (``run_python``).
- ``run_as_reader``: a subprocess that cannot write a folder ``make_read_only`` made read-only: as root it runs
  without the capabilities that override file modes, so the kernel refuses its writes (EACCES).
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


class _Budget:
    def __init__(self, budget: int | None):
        self.left = budget

    def take(self, wanted: int) -> int:
        if self.left is None:
            return wanted
        granted = min(wanted, self.left)
        self.left -= granted
        return granted


class _LimitedFile(io.FileIO):
    budget: _Budget

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        granted = self.budget.take(len(view))
        if granted < len(view):
            if granted:
                super().write(view[:granted])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.name)
        return super().write(view)


class DiskFull:
    """Writes under ``folder`` succeed for ``budget`` more bytes in all (None: no limit until ``fill``)."""

    def __init__(self, folder: Path, budget: int | None = 0):
        self.folder = Path(folder).resolve()
        self.budget = _Budget(budget)
        self._open = open

    def fill(self, budget: int = 0) -> None:
        """From now on only ``budget`` more bytes fit."""
        self.budget.left = budget

    def free(self) -> None:
        """Room again, without limit."""
        self.budget.left = None

    def _covers(self, file) -> bool:
        if not isinstance(file, (str, bytes, os.PathLike)):
            return False
        path = Path(os.fsdecode(file)).absolute()
        return path == self.folder or self.folder in path.parents

    def open(self, file, mode="r", buffering=-1, encoding=None, errors=None, newline=None, closefd=True, opener=None):
        if not self._covers(file) or not any(flag in mode for flag in "wax+"):
            return self._open(file, mode, buffering, encoding, errors, newline, closefd, opener)
        raw_mode = mode.replace("b", "").replace("t", "")
        raw = _LimitedFile(file, raw_mode, closefd=closefd, opener=opener)
        raw.budget = self.budget
        buffered = (io.BufferedRandom if "+" in mode else io.BufferedWriter)(raw)
        if "b" in mode:
            return buffered
        return io.TextIOWrapper(buffered, encoding=encoding, errors=errors, newline=newline)

    def install(self, monkeypatch=None) -> DiskFull:
        import builtins

        if monkeypatch is None:
            builtins.open = self.open
        else:
            monkeypatch.setattr(builtins, "open", self.open)
        return self


def _environment(home: Path, extra: dict | None = None) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env.update(
        {
            "TRANSFER_LAB_HOME": str(home),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]),
        }
    )
    env.update(extra or {})
    return env


def kill_after_replacing(name: str, times: int) -> None:
    """SIGKILL this process right after the ``times``-th ``os.replace`` onto a file called ``name``: the
    moment a renamed file is in place and nothing after it has run."""
    import signal

    real = os.replace
    seen = [0]

    def replace(source, target, *args, **kwargs):
        real(source, target, *args, **kwargs)
        if os.path.basename(os.fsdecode(target)) == name:
            seen[0] += 1
            if seen[0] == times:
                os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace


def run_python(code: str, home: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -c code`` with this checkout and the test helpers importable, writing into ``home``."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_environment(home), capture_output=True, text=True, timeout=timeout
    )


def fill_the_disk(home: str | Path) -> None:
    """From now on no file of this process can grow: the kernel's file size limit for C code (SIGXFSZ
    ignored, so a write fails with an error instead of killing us), ENOSPC for Python's ``open`` in ``home``."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
    DiskFull(Path(home), 0).install()


def run_full(code: str, home: Path, *, before: str = "", timeout: float = 300) -> subprocess.CompletedProcess:
    """Run Python ``code`` in a process whose disk is full (see the module's docstring); ``before`` runs while
    there is still room (a test harness that needs a temporary folder). Output comes back through pipes,
    which the size limit does not cover."""
    script = f"{before}\nimport faults\nfaults.fill_the_disk({str(home)!r})\n{code}"
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=_environment(home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def make_read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def make_writable(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def _without_override() -> None:
    """Root keeps its uid but loses the capabilities that let it ignore file modes (from the bounding set, so
    also after exec); prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def run_as_reader(args: list[str], home: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` so that the file modes ``make_read_only(home)`` set apply (as root: without the
    capabilities that override them)."""
    scratch = Path(tempfile.mkdtemp(prefix="transfer-lab-reader-"))  # its $HOME (Keras, Streamlit settings)
    try:
        return subprocess.run(
            [sys.executable, *args],
            cwd=ROOT,
            env=_environment(home, {"HOME": str(scratch)}),
            preexec_fn=_without_override if os.geteuid() == 0 else None,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
