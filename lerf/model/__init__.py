"""The trained object: the model that wires fields and renderer together (lerf_model.py), its
saved form on disk with the versioned migrations of older runs (checkpoint.py), and the torch
device it runs on (device.py)."""
from lerf.model.lerf_model import LerfModel, SceneGeometry, build_model

__all__ = ["LerfModel", "SceneGeometry", "build_model"]
