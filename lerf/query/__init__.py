"""Read-only use of a trained run: open it, render views, relevancy, the cached query engine,
3D points, output files, and the public Python API over them (`run.py`, docs/api.md). Nothing
here imports training code."""
