"""What produced a run: package versions, the git commit, the command line."""
from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

from lerf.data.atomic import write_json

PACKAGES = ("torch", "numpy", "hydra-core", "open_clip_torch", "timm", "tinycudann", "triton")


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    repo = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance() -> dict:
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "python": sys.version.split()[0], "platform": platform.platform(), "argv": sys.argv,
        "packages": {name: _version(name) for name in PACKAGES},
        "git_commit": _git("rev-parse", "HEAD"), "git_dirty": bool(status) if status is not None else None,
    }


def write_provenance(run_dir: Path, step: int) -> Path:
    """provenance.json for a fresh run; provenance_resume_<step>.json for each resume."""
    name = "provenance.json" if step == 0 else f"provenance_resume_{step}.json"
    path = run_dir / name
    return write_json(path, provenance())
