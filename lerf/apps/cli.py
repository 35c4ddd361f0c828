"""Command lines of the entry points: `key=value` parsing for the read-only tools (query.py,
eval/*.py, view.py), and one-line user errors for all of them (train.py included)."""
from __future__ import annotations

import os
import sys
from typing import Callable, Optional, Sequence, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


def parse_args(schema: type[T], argv: Optional[Sequence[str]] = None, usage: str = "") -> T:
    """Merge `key=value` arguments into the schema; unknown keys and bad values are errors."""
    argv = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("debug=")]
    if any(a in ("-h", "--help") for a in argv):
        print(usage or schema.__doc__)
        print(OmegaConf.to_yaml(OmegaConf.structured(schema)))
        raise SystemExit(0)
    bad = [a for a in argv if "=" not in a]
    if bad:
        raise SystemExit(f"expected key=value arguments, got {bad}. {usage}")
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(argv))
        missing = sorted(OmegaConf.missing_keys(cfg))
    except OmegaConfBaseException as err:
        raise SystemExit(f"bad argument: {err}") from None
    if missing:
        raise SystemExit(f"missing required argument(s): {', '.join(k + '=...' for k in missing)}. {usage}")
    return OmegaConf.to_object(cfg)


USER_ERRORS = (FileNotFoundError, FileExistsError, ValueError)


def is_user_error(err: BaseException) -> bool:
    """Errors the user can fix (a missing file, a bad value, a full disk, a run in use...): they
    are printed as one line. Error classes opt in with `user_error = True`."""
    return isinstance(err, USER_ERRORS) or bool(getattr(err, "user_error", False))


def wants_traceback(argv: Optional[Sequence[str]] = None) -> bool:
    """Full tracebacks with HYDRA_FULL_ERROR=1 or a `debug=true` argument."""
    argv = sys.argv[1:] if argv is None else argv
    return os.environ.get("HYDRA_FULL_ERROR") == "1" or any(a.lower() in ("debug=true", "debug=1") for a in argv)


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return f"error: {text} (HYDRA_FULL_ERROR=1 or debug=true shows the traceback)"


def run(main: Callable[[], object]) -> None:
    """Run an entry point; a user error prints one line on stderr and exits with status 2."""
    try:
        main()
    except Exception as err:
        if not is_user_error(err) or wants_traceback():
            raise
        print(one_line(err), file=sys.stderr)
        raise SystemExit(2) from None
