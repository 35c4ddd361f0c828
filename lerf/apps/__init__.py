"""The command-line programs: `lerf-train`, `lerf-query`, `lerf-view` and `lerf-eval <protocol>`
(console scripts, setup.py), which the repository's train.py, query.py and view.py call too.

Hydra's presets (conf/) and the evaluation protocols (eval/*.py) live in the repository beside
this package, so the programs need a checkout installed with `pip install -e .`; they then work
from any directory.
"""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def repo_dir(name: str) -> Path:
    """The checkout's `name` folder (conf, eval), or one clear error when the package was installed
    without its repository."""
    path = REPO_ROOT / name
    if not path.is_dir():
        raise SystemExit(f"{path} not found: lerf's programs read the repository's {name}/ folder; "
                         "install lerf from a checkout with `pip install -e .`")
    return path
