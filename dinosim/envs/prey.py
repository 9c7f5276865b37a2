"""Placement of a prey body ahead of a predator (raptor strike, T-Rex bite): on the ground or raised above it."""

from __future__ import annotations

import math

import numpy as np


def prey_position(rng: np.random.Generator, origin: np.ndarray, heading: float,
                  distance_range: tuple[float, float], lateral_range: float, radius: float,
                  height: float = 0.0) -> np.ndarray:
    """The centre of a prey of ``radius`` whose underside is ``height`` above the ground (0: resting on it), at a
    uniform distance in ``distance_range`` along ``heading`` from ``origin`` and a uniform sideways offset within
    ``±lateral_range``."""
    dist = rng.uniform(*distance_range)
    side = rng.uniform(-lateral_range, lateral_range)
    ch, sh = math.cos(heading), math.sin(heading)
    return np.array([origin[0] + dist * ch - side * sh, origin[1] + dist * sh + side * ch, height + radius])
