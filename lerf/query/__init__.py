"""Read-only use of a trained run: open it, render views, relevancy, the cached query engine,
3D points, output files. Nothing here imports training code."""
