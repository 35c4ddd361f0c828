"""Explore a trained run in the browser: orbit the scene, type prompts, see relevancy live.

    lerf-view run=outputs/demo/<date>                       # or python view.py; prints http://localhost:8080
    python view.py run=... port=8081 host=0.0.0.0 device=cpu

Reads the run's checkpoint only; the "save" button writes under <run>/queries/ like query.py.
Ctrl-C stops the server.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from omegaconf import MISSING

from lerf.apps.cli import parse_args, run
from lerf.viewer.backend import Backend
from lerf.viewer.server import Viewer
from lerf.viewer.session import ViewerOptions


@dataclass
class ViewArgs(ViewerOptions):
    run: str = MISSING


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    args = parse_args(ViewArgs, argv, usage=__doc__)
    try:
        backend = Backend(args.run, args.device, args.chunk)
        viewer = Viewer(backend, args)
    except KeyboardInterrupt:  # Ctrl-C while the run loads: nothing to shut down yet
        raise SystemExit(130) from None
    viewer.serve_forever()


def cli() -> None:
    """The console script: user errors as one line, exit status 2 (lerf.apps.cli.run)."""
    run(main)


if __name__ == "__main__":
    cli()
