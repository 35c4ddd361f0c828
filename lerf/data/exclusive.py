"""An exclusive, non-waiting lock on one path, held by one process, that names its holder.

An OS file lock (`filelock`: flock on POSIX), so it is released when its process dies, even by
`kill -9`; the holder's pid is written beside the lock file, so a refused process can say who
holds it. Used for a run directory (`lerf.train.runlock`) and a query's prompt folders
(`lerf.query.outputs.prompt_folders_locked`).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock, Timeout

from lerf.data.atomic import write_text


def holder_pid(lock_file: Path) -> str:
    """The pid written beside `lock_file` by its holder ("unknown" while it is being written)."""
    try:
        return Path(f"{lock_file}.pid").read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@contextmanager
def exclusive(lock_file: str | Path, busy: Callable[[str], Exception]) -> Iterator[None]:
    """Hold `lock_file` inside the `with`; if another process holds it, raise `busy(holder pid)` at
    once. `<lock_file>.pid` holds this process's pid meanwhile."""
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_file), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise busy(holder_pid(lock_file)) from None
    pid_file = Path(f"{lock_file}.pid")
    try:
        write_text(pid_file, f"{os.getpid()}\n")
        yield
    finally:
        pid_file.unlink(missing_ok=True)
        lock.release()
