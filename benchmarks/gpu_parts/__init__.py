"""The parts of benchmarks/gpu_suite.py, one module each; each exposes `run(ctx) -> dict`."""
