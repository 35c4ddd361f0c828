"""`lerf-eval <protocol> key=value ...`: run one of the evaluation programs in the repository's
eval/ folder, as `python eval/<protocol>.py key=value ...` would.

    lerf-eval localization run=outputs/demo/<date>
    lerf-eval --help                                  # lists the protocols

The protocols are the eval/*.py files themselves, so a new one needs no registration here.
"""
from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Optional, Sequence

from lerf.apps import repo_dir


def protocols() -> dict[str, Path]:
    """Protocol name -> its program, e.g. {"localization": <repo>/eval/localization.py, ...}."""
    return {p.stem: p for p in sorted(repo_dir("eval").glob("*.py")) if not p.stem.startswith("_")}


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    known = protocols()
    usage = f"usage: lerf-eval <protocol> key=value ...; protocols: {', '.join(known)}"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        raise SystemExit(0 if argv else 2)
    if argv[0] not in known:
        print(f"lerf-eval: unknown protocol '{argv[0]}'. {usage}", file=sys.stderr)
        raise SystemExit(2)
    program = known[argv[0]]
    sys.argv = [str(program), *argv[1:]]  # the program parses its own key=value arguments
    runpy.run_path(str(program), run_name="__main__")


if __name__ == "__main__":
    main()
