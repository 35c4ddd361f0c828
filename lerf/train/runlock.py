"""One process per run directory: an exclusive lock held for the whole training or resume.

Two trainings (or two resumes) in one directory used to interleave their checkpoints. The lock is
an OS file lock (`filelock`: flock on POSIX), so it is released when its process dies, even by
`kill -9`; the holder's pid is written beside it so the second process can say who holds it.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from lerf.data.exclusive import exclusive

LOCK_FILE = ".lock"
PID_FILE = ".lock.pid"


class RunInUseError(RuntimeError):
    """Another process holds the run directory's lock."""

    user_error = True  # lerf.apps.cli prints it as one line


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold `run_dir`'s lock inside the `with`; raise RunInUseError at once if another process has it."""
    run_dir = Path(run_dir)

    def busy(pid: str) -> RunInUseError:
        return RunInUseError(f"run {run_dir} in use by pid {pid} (another training or resume of it); "
                             "wait for it to finish or stop it, then try again")

    with exclusive(run_dir / LOCK_FILE, busy):
        yield
