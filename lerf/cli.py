"""`key=value` command lines for the read-only tools (query.py, eval/*.py), typed by a dataclass."""
from __future__ import annotations

import sys
from typing import Optional, Sequence, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


def parse_args(schema: type[T], argv: Optional[Sequence[str]] = None, usage: str = "") -> T:
    """Merge `key=value` arguments into the schema; unknown keys and bad values are errors."""
    argv = list(sys.argv[1:] if argv is None else argv)
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


def run(main) -> None:
    """Run an entry point; a user error (missing file, bad value) prints one line, not a traceback."""
    try:
        main()
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
