"""Language Embedded Radiance Fields in plain PyTorch.

The Python API (docs/api.md): `run = lerf.load_run("outputs/demo/<date>")`, then
`run.query("red mug", view=3)`, `run.render(view)`, `run.points("red mug")`.
"""

__all__ = ["load_run"]


def __getattr__(name: str):
    # Imported on first use, so that `import lerf.config` (every entry point, every test) does
    # not load the query stack and torch's models with it.
    if name == "load_run":
        from lerf.query.run import load_run

        return load_run
    raise AttributeError(f"module 'lerf' has no attribute '{name}'")
