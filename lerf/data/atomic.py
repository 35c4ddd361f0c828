"""Atomic file writes: the one way this project writes JSON, YAML, `.npy` and checkpoints.

`replace_atomically(path, write)` lets `write` fill a temporary file beside `path`, fsyncs it and
renames it over `path`: a reader (or the next run after a crash or `kill -9`) sees the old file or
the complete new one, never a partial one. On any failure the temporary file is removed, and a
full disk is reported as `DiskFullError` ("no space left on <dir>: writing <file> needs about N MB,
M MB free") instead of the writer's own message (torch's is `unexpected pos ...`).
"""
from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from filelock import FileLock

log = logging.getLogger(__name__)


class DiskFullError(OSError):
    """A write failed because its file system is full; the temporary file was removed."""

    user_error = True  # lerf.apps.cli prints it as one line

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no space left on device"


def _mb(n_bytes: int | float) -> str:
    return f"{n_bytes / 2**20:.1f} MB"


def _is_disk_full(err: BaseException) -> bool:
    """ENOSPC anywhere in the exception chain, or torch's zip writer's rendering of it."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(err)
        if "No space left on device" in text or ("inline_container" in text and "unexpected pos" in text):
            return True
        err = err.__cause__ or err.__context__
    return False


def _too_little_space(path: Path, needed_bytes: Optional[int]) -> bool:
    """After a failed write: is the free space below what the file needs? (Some writers, e.g.
    torch's zip writer, report ENOSPC as "file write failed".)"""
    try:
        return bool(needed_bytes) and shutil.disk_usage(path.parent).free < needed_bytes
    except OSError:
        return False


def disk_full_error(path: Path, needed_bytes: Optional[int]) -> DiskFullError:
    """The one-line error for a write of about `needed_bytes` to `path` that ran out of space."""
    free = shutil.disk_usage(path.parent).free if path.parent.exists() else 0
    need = f"needs about {_mb(needed_bytes)}" if needed_bytes else "needs more space"
    return DiskFullError(f"no space left on {path.parent}: writing {path.name} {need}, {_mb(free)} free. "
                         "Free some space (or write elsewhere) and run the command again; nothing was replaced.")


def temp_path(path: Path) -> Path:
    """The temporary sibling `replace_atomically` writes first (hidden, per process); it keeps the
    suffix, since some writers (ffmpeg) pick the format from it: `.path.tmp-123.mp4`."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


_TEMP_NAME = re.compile(r"^\..+\.tmp-(\d+)(\.[^.]*)?$")
# A temporary younger than this is kept even when its writer's pid is gone here: the folder may
# be shared with another machine (a cluster's sweep), where that pid is a live writer. A writer
# refreshes its file's mtime as it goes (each newly dirtied page of a memmap, each write call).
STALE_AFTER_S = 600.0


def temp_owner(path: Path) -> Optional[int]:
    """The pid in a `temp_path` name, else None: `.x.tmp-123.npy` -> 123, `x.npy` -> None."""
    match = _TEMP_NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (signal 0 checks without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_temporaries(folder: str | Path, now: Optional[float] = None,
                             stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the `temp_path` files in `folder` whose writer is gone (a killed build, a crash):
    its pid runs no process here and the file has not changed for `stale_after_s`. A live
    writer's temporary (this process's own included) is never touched. Returns what was removed.

    Example: `.clip_pyramid_x.tmp-4242.npy`, pid 4242 gone, last written an hour ago -> removed.
    """
    folder, now = Path(folder), time.time() if now is None else now
    removed = []
    for path in sorted(folder.glob(".*.tmp-*")) if folder.is_dir() else []:
        pid = temp_owner(path)
        if pid is None or pid_alive(pid) or not path.is_file():
            continue
        try:
            age_s = now - path.stat().st_mtime
            if age_s < stale_after_s:
                continue
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:  # another process removed it first
            continue
        log.info("removed %s (%.1f MB), left by a killed write (process %d is gone)", path, size / 2**20, pid)
        removed.append(path)
    return removed


def replace_atomically(path: str | Path, write: Callable[[Path], Any], needed_bytes: Optional[int] = None) -> Path:
    """`write(tmp)` beside `path`, fsync, then rename over `path` (module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, Exception) and (_is_disk_full(err) or _too_little_space(path, needed_bytes)):
            raise disk_full_error(path, needed_bytes) from err
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    data = text.encode()
    return replace_atomically(path, lambda tmp: tmp.write_bytes(data), len(data))


def write_json(path: str | Path, obj: Any, indent: Optional[int] = 2, **kwargs) -> Path:
    return write_text(path, json.dumps(obj, indent=indent, **kwargs) + "\n")


def write_yaml(path: str | Path, obj: Any) -> Path:
    from omegaconf import OmegaConf

    return write_text(path, OmegaConf.to_yaml(obj))


def save_npy(path: str | Path, array: np.ndarray) -> Path:
    array = np.asarray(array)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # np.save(<path>) would append ".npy" to the temporary name
            np.save(f, array)

    return replace_atomically(path, write, array.nbytes + 128)


def build_directory_once(final: Path, is_complete: Callable[[Path], bool], build: Callable[[Path], Any]) -> Path:
    """`final` if `is_complete(final)`, else built once by `build(path)` (a path that does not exist yet).

    Under an OS file lock beside `final`, so parallel jobs (a sweep's) never race: one builds, the
    others wait and then find it complete — without it a late finisher replaced a folder another
    job was already reading. Built in a temporary sibling renamed into place when done, so a
    crash never leaves a folder that looks complete; an incomplete leftover is replaced.
    """
    if is_complete(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final.parent / f".{final.name}.lock")):
        if is_complete(final):  # another process built it while we waited
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
        try:
            build(tmp / "dir")
            if final.exists():  # an incomplete leftover; nobody else builds while we hold the lock
                shutil.rmtree(final)
            os.rename(tmp / "dir", final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final
