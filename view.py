"""Explore a trained run in the browser (the same as `lerf-view`; the program is lerf/apps/view.py).

    python view.py run=outputs/demo/<date>                  # prints http://localhost:8080
"""
from lerf.apps.view import cli, main  # noqa: F401 - main: tests call view.main(argv)

if __name__ == "__main__":
    cli()
