"""Metres per unit of an SfM reconstruction, given or estimated.

SfM recovers a scene only up to scale, but LERF's language field searches physical scales in
metres (LERF §3.1: crops from 0 to 2 m; lerf.config's scale range): in arbitrary units a mug
could be 0.01 or 10 units across, and the scale search would look at the wrong sizes. Poses
are therefore written in metres, either from a known factor (`metres_per_unit=`) or from the
assumption that the camera moved about `step_cm` between consecutive frames (an estimate,
recorded as such).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from jaxtyping import Float

# A phone orbit: about 6 m of path (a 1 m radius circle around a table) over about 125 frames.
DEFAULT_STEP_CM = 5.0


@dataclass
class ScaleChoice:
    metres_per_unit: float
    source: str  # "given" | "estimate"
    note: str


def median_step(positions: Float[np.ndarray, "n 3"]) -> float:
    """Median distance between consecutive camera positions (capture order).

    Example: positions 0, 1, 3, 4 along x -> steps 1, 2, 1 -> 1.
    """
    if len(positions) < 2:
        return 0.0
    return float(np.median(np.linalg.norm(np.diff(positions, axis=0), axis=1)))


def choose_scale(positions: Float[np.ndarray, "n 3"], metres_per_unit: Optional[float],
                 step_cm: float) -> ScaleChoice:
    """Metres per SfM unit: `metres_per_unit` when given, else `step_cm` / the median step."""
    if metres_per_unit is not None:
        if not metres_per_unit > 0:
            raise ValueError(f"metres_per_unit={metres_per_unit}: expected a length > 0 (metres per SfM unit)")
        return ScaleChoice(float(metres_per_unit), "given", f"metres_per_unit={metres_per_unit} given")
    if not step_cm > 0:
        raise ValueError(f"step_cm={step_cm}: expected the camera's step between frames in cm, > 0")
    step = median_step(positions)
    if step <= 0:
        raise ValueError("the registered cameras do not move between frames, so no scale can be estimated; "
                         "give metres_per_unit=")
    return ScaleChoice(step_cm / 100 / step, "estimate",
                       f"ESTIMATE: assumes the camera moved about {step_cm:g} cm between consecutive frames "
                       f"(median step {step:.4g} SfM units). Sizes in metres are only as good as that guess; if "
                       "you know a length, measure it in this scene and train with scene.metres_per_unit="
                       "true_length / measured_length")
