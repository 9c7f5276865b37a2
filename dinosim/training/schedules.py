"""Stage-local schedules for SB3 (learning rate, clip range) that stay correct across stages and resumes.

SB3 calls a schedule with ``progress_remaining = 1 - num_timesteps / _total_timesteps``. dinosim keeps
``num_timesteps`` global across stages (and across `resume`, via ``learn(reset_num_timesteps=False)``), and every
stage calls ``learn`` so that ``_total_timesteps == stage_start + budget``. A :class:`StageSchedule` converts SB3's
progress back to the stage-local fraction ``(num_timesteps - stage_start) / budget`` in [0, 1] and evaluates its
shape there, so a schedule decays over its own stage whatever happened before or whether the stage was resumed.

Objects here are plain picklable classes (they are saved inside ``model.zip``; plain ``PPO.load`` needs this module
importable, which it is once dinosim is installed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional


@dataclass
class StageClock:
    """Where a stage sits on the global step axis."""

    start: int  # global step at which the stage began
    budget: int  # steps the stage may train

    def stage_steps(self, progress_remaining: float) -> float:
        """Stage-local steps done, recovered from SB3's progress (``_total_timesteps = start + budget``)."""
        total = self.start + self.budget
        global_step = (1.0 - progress_remaining) * total
        return min(max(global_step - self.start, 0.0), float(self.budget))

    def fraction(self, progress_remaining: float) -> float:
        return self.stage_steps(progress_remaining) / self.budget if self.budget > 0 else 1.0


@dataclass
class StageSchedule:
    """``start`` -> ``end`` over the stage: constant (end None), linear or cosine; optional warm-up plateau.

    The decay takes the stage's whole budget, or its first ``decay_steps`` stage steps when set (then the value
    stays at ``end``), so a short decay does not tie the stage's budget to it. During the first ``warmup_steps``
    stage steps the value is ``warmup_value`` (when set); the decay is still measured from the stage's start so
    that it does not jump when the warm-up ends.
    """

    clock: StageClock
    start: float
    end: Optional[float] = None
    shape: str = "linear"  # "linear" or "cosine"
    warmup_steps: int = 0
    warmup_value: Optional[float] = None
    decay_steps: Optional[int] = None  # stage steps of the decay (None: the stage's budget); a class default, so
    # schedules pickled before the field existed load with it

    def value_at_fraction(self, fraction: float) -> float:
        if self.end is None:
            return float(self.start)
        fraction = min(max(fraction, 0.0), 1.0)
        if self.shape == "cosine":
            weight = 0.5 * (1.0 + math.cos(math.pi * fraction))
        elif self.shape == "linear":
            weight = 1.0 - fraction
        else:
            raise ValueError(f"unknown schedule shape {self.shape!r}")
        return float(self.end + (self.start - self.end) * weight)

    def __call__(self, progress_remaining: float) -> float:
        if self.warmup_value is not None and self.clock.stage_steps(progress_remaining) < self.warmup_steps:
            return float(self.warmup_value)
        if self.decay_steps:  # its own length; value_at_fraction holds the end value beyond it
            return self.value_at_fraction(self.clock.stage_steps(progress_remaining) / self.decay_steps)
        return self.value_at_fraction(self.clock.fraction(progress_remaining))


def ramp_value(old: float, new: float, stage_steps: int, ramp_steps: int) -> float:
    """Linear interpolation from ``old`` (stage step 0) to ``new`` (stage step ``ramp_steps`` and after)."""
    if ramp_steps <= 0 or stage_steps >= ramp_steps:
        return float(new)
    t = max(stage_steps, 0) / ramp_steps
    return float(old + (new - old) * t)


def changed_numeric_weights(previous: dict, current: dict) -> dict[str, tuple[float, float]]:
    """Every numeric (non-bool) ``[env]`` key present in both stages whose value differs: ``{key: (old, new)}``.

    Values keep their type (an int key such as ``max_episode_steps`` stays int; see :func:`ramp_typed`)."""
    out = {}
    for key, new in current.items():
        old = previous.get(key)
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (old, new))
        if numeric and old != new:
            out[key] = (old, new)
    return out


def ramp_typed(old: float, new: float, stage_steps: int, ramp_steps: int) -> float:
    """:func:`ramp_value`, rounded to int when both ends are ints."""
    value = ramp_value(old, new, stage_steps, ramp_steps)
    return int(round(value)) if isinstance(old, int) and isinstance(new, int) else value
