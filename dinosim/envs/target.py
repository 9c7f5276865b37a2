"""The stage-3 target of a :class:`~dinosim.envs.base.DinoEnv`: placement, distance, and when a touch counts.

:class:`TargetTask` is a mixin of ``DinoEnv`` (it reads the env's MuJoCo ``model``/``data``, ``has_target``, ``dt``
and ``success_hold_steps``). Species set the hooks: ``success_by_contact`` (a strike/bite: an effector touches the
prey; else a reach: the effector comes within :meth:`_success_distance` of the food), ``reach_scale`` (length
scale of the proximity term), ``target_weight_names`` (their own kwargs acting as the bonus, approach and
proximity weights) and :meth:`_spawn_target`.

Contract of :meth:`TargetTask._update_target` (called once per step when the task has a target): it sets the
step signals ``approach_speed``, ``proximity`` and ``success`` and returns the effector-target distance. Success
means still standing ``success_hold_steps`` after the touch (a lunge that ends in a fall is a fall, not a bite),
or, when reaching, with the effector kept at the target all that time (a sweep through it is no meal).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import mujoco
import numpy as np

if TYPE_CHECKING:
    from dinosim.envs.rewards import StepSignals

NO_TARGET_DISTANCE = -1.0  # value of info["target_distance"] when the task has no target
TARGET_PARK = (0.0, 0.0, -10.0)  # where the target body waits (below the floor) when the task has none


class TargetTask:
    """Mixin: the stage-3 target of a DinoEnv (see the module docstring)."""

    # ---- species hooks -------------------------------------------------------------------------------------------
    success_by_contact: ClassVar[bool] = True  # success = effector/target contact (else distance threshold)
    reach_scale: ClassVar[float] = 0.5  # m, length scale of the proximity term
    # Names of the species' own kwargs that act as the stage-3 bonus, approach weight and proximity weight.
    target_weight_names: ClassVar[tuple[str, str, str]] = ("", "", "")

    # Provided by DinoEnv.
    model: mujoco.MjModel
    data: mujoco.MjData
    has_target: bool
    dt: float
    success_hold_steps: int
    _mocap: int
    _effectors: Any
    _steps: int

    def _spawn_target(self, rng: np.random.Generator, origin: np.ndarray) -> np.ndarray:
        """World position of a new stage-3 target for an animal whose torso is at ``origin``."""
        raise NotImplementedError

    def _success_distance(self) -> float:
        """Effector-target distance (m) that counts as success when ``success_by_contact`` is False."""
        raise NotImplementedError

    # ---- weights read by dinosim.envs.rewards --------------------------------------------------------------------
    def _target_weight(self, index: int) -> float:
        name = self.target_weight_names[index]
        return float(getattr(self, name)) if name else 0.0

    @property
    def target_bonus(self) -> float:
        return self._target_weight(0)

    @property
    def target_approach_weight(self) -> float:
        return self._target_weight(1)

    @property
    def target_proximity_weight(self) -> float:
        return self._target_weight(2)

    # ---- per episode and per step --------------------------------------------------------------------------------
    def _place_target(self, rng: np.random.Generator, origin: np.ndarray) -> None:
        """At reset, before ``mj_forward``: a new target near ``origin``, or the target parked below the floor."""
        self.data.mocap_pos[self._mocap] = self._spawn_target(rng, origin) if self.has_target else TARGET_PARK

    def _reset_target(self) -> None:
        """At reset, after ``mj_forward``: the starting distance and no touch yet."""
        self._target_dist = self._target_distance()
        self._touched_at: int | None = None  # step at which the effector first touched/reached the target

    def _update_target(self, s: StepSignals, effector_contact: bool) -> float:
        """Set ``s.approach_speed``, ``s.proximity`` and ``s.success`` (``s.fell`` already set); return the
        effector-target distance."""
        dist = self._target_distance()
        s.approach_speed = (self._target_dist - dist) / self.dt
        s.proximity = math.exp(-dist / self.reach_scale)
        self._target_dist = dist
        if self.success_by_contact:  # a strike/bite: one touch, then stay standing
            if effector_contact and not s.fell and self._touched_at is None:
                self._touched_at = self._steps
        elif dist > self._success_distance():  # reaching: the effector must stay at the target
            self._touched_at = None
        elif self._touched_at is None and not s.fell:
            self._touched_at = self._steps
        s.success = (self._touched_at is not None and not s.fell
                     and self._steps - self._touched_at >= self.success_hold_steps)
        return dist

    def _target_distance(self) -> float:
        if not self.has_target:
            return NO_TARGET_DISTANCE
        pos = self.data.mocap_pos[self._mocap]
        return float(min(math.dist(self.data.geom_xpos[g], pos) for g in self._effectors))
