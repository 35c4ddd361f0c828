"""One process per run directory: an exclusive lock held for the whole training or resume.

Two trainings (or two resumes) in one directory used to interleave their checkpoints. The lock is
an OS file lock (`filelock`: flock on POSIX), so it is released when its process dies, even by
`kill -9`; the holder's pid is written beside it so the second process can say who holds it.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from lerf.data.atomic import write_text

LOCK_FILE = ".lock"
PID_FILE = ".lock.pid"


class RunInUseError(RuntimeError):
    """Another process holds the run directory's lock."""

    user_error = True  # lerf.cli prints it as one line


def _holder(run_dir: Path) -> str:
    try:
        return (run_dir / PID_FILE).read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold `run_dir`'s lock inside the `with`; raise RunInUseError at once if another process has it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunInUseError(f"run {run_dir} in use by pid {_holder(run_dir)} (another training or resume of it); "
                            "wait for it to finish or stop it, then try again") from None
    try:
        write_text(run_dir / PID_FILE, f"{os.getpid()}\n")
        yield
    finally:
        (run_dir / PID_FILE).unlink(missing_ok=True)
        lock.release()
