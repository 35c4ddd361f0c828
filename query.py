"""Ask a trained run questions in words (the same as `lerf-query`; the program is lerf/apps/query.py).

    python query.py run=outputs/demo/<date> prompt="red mug"
    python query.py run=... prompt='[red mug, blue teapot]' views=eval video=true ply=true
"""
from lerf.apps.query import cli, main  # noqa: F401 - main: tests call query.main(argv)

if __name__ == "__main__":
    cli()
