"""Random horizontal pushes on the torso: the perturbations that make stage-1 balance need feedback."""

from __future__ import annotations

import math

import numpy as np


class PushSchedule:
    """Start, hold and end pushes written into one body's ``xfrc_applied`` row.

    Pushes start every ``interval * U(0.5, 1.5)`` s (measured from the end of the previous push), last ``duration``
    s, point in a uniformly random horizontal direction and have magnitude ``force * U(0.75, 1.25)`` newtons.
    A ``force`` of 0 (or less) at reset disables pushes for that episode.
    """

    def __init__(self, xfrc: np.ndarray) -> None:
        self._xfrc = xfrc  # view of data.xfrc_applied[body]
        self._next = math.inf
        self._end = -1.0

    def reset(self, rng: np.random.Generator, force: float, interval: float) -> None:
        self._xfrc[:] = 0.0
        self._end = -1.0
        self._next = self._draw(rng, 0.0, force, interval)

    def update(self, now: float, rng: np.random.Generator, force: float, interval: float, duration: float) -> None:
        """Apply the schedule at simulation time ``now`` (s since reset)."""
        if now >= self._next:
            angle = float(rng.uniform(-math.pi, math.pi))
            magnitude = force * float(rng.uniform(0.75, 1.25))
            self._xfrc[0] = magnitude * math.cos(angle)
            self._xfrc[1] = magnitude * math.sin(angle)
            self._end = now + duration
            self._next = self._draw(rng, self._end, force, interval)
        elif self._end >= 0.0 and now >= self._end:
            self._xfrc[:3] = 0.0
            self._end = -1.0

    @staticmethod
    def _draw(rng: np.random.Generator, now: float, force: float, interval: float) -> float:
        if force <= 0.0:
            return math.inf
        return now + interval * float(rng.uniform(0.5, 1.5))
