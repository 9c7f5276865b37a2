"""`BrachiosaurusEnv`: a full-scale (~33 t, ~21 m) sauropod quadruped with a long, raisable neck.

Only the brachiosaur's own data lives here (model file, home pose, body names, stage-3 "food_reach" target);
everything else comes from :class:`dinosim.envs.base.DinoEnv`. Stage 3: food (a marker without collisions) spawns
where the mouth would be in a random neck pose (each neck servo target uniform within ``±food_pose_range`` of its
action range), at least ``food_min_offset`` from the resting mouth: every food is reachable without walking, and
food spreads over the neck's whole workspace (up, down, left, right, near, far) so no fixed pose reaches most of it.
The episode succeeds when the mouth comes within ``food_reach_threshold`` of the food and the animal is still
standing ``success_hold_steps`` later.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import mujoco
import numpy as np

from dinosim.config.env_rules import check_env_kwargs
from dinosim.envs.base import DinoEnv
from dinosim.species import SPECIES


class BrachiosaurusEnv(DinoEnv):
    """Brachiosaurus; stage-3 task ``"food_reach"``. Extra kwargs: see :meth:`__init__`, the rest is in ``DinoEnv``."""

    species: ClassVar[str] = "brachiosaurus"
    xml_file: ClassVar[str] = "brachiosaurus.xml"
    behaviour: ClassVar[str] = "food_reach"
    home_pose: ClassVar[dict[str, float]] = {"neck1_pitch": 0.2}
    foot_geoms: ClassVar[tuple[str, ...]] = ("manus_left", "manus_right", "pes_left", "pes_right")
    foot_pairs: ClassVar[tuple[tuple[int, int], ...]] = ((0, 1), (2, 3))
    tail_joints: ClassVar[tuple[str, ...]] = ("tail_pitch", "tail_yaw")
    effector_geoms: ClassVar[tuple[str, ...]] = ("mouth",)
    neck_joints: ClassVar[tuple[str, ...]] = ("neck1_pitch", "neck_yaw", "neck2_pitch", "head_pitch")
    success_by_contact: ClassVar[bool] = False
    reach_scale: ClassVar[float] = 2.0
    frame_skip: ClassVar[int] = 10  # 4 ms physics step -> 25 Hz control
    target_weight_names: ClassVar[tuple[str, str, str]] = SPECIES["brachiosaurus"].target_weights

    def __init__(
        self,
        *,
        food_pose_range: float = 0.8,  # food = mouth position of a random neck pose, actions within ±this per joint
        food_min_offset: float = 1.0,  # m, the food spawns at least this far from the resting mouth
        food_reach_threshold: float = 0.6,  # m, mouth-to-food distance that counts as reaching it
        food_reach_bonus: float = 0.0,  # reward when the mouth reaches the food (ends the episode)
        food_approach_weight: float = 0.0,  # reward per m/s of mouth-to-food closing speed
        food_proximity_weight: float = 0.0,  # reward per step times exp(-mouth-to-food distance / 2 m)
        **kwargs: Any,
    ) -> None:
        check_env_kwargs(self.species, {k: v for k, v in locals().items() if k not in ("self", "kwargs", "__class__")})
        self.food_pose_range = float(food_pose_range)
        self.food_min_offset = float(food_min_offset)
        self.food_reach_threshold = float(food_reach_threshold)
        self.food_reach_bonus = float(food_reach_bonus)
        self.food_approach_weight = float(food_approach_weight)
        self.food_proximity_weight = float(food_proximity_weight)
        super().__init__(**kwargs)
        self._neck_act = np.array([self.model.actuator(name).id for name in self.neck_joints])
        self.food_pose_action = np.zeros(self.model.nu)  # the action that holds the current food's neck pose

    def _mouth_at(self, qpos: np.ndarray) -> np.ndarray:
        """World position of the mouth for joint positions ``qpos`` (kinematics only; the state is restored)."""
        d = self.data
        saved = d.qpos.copy()
        d.qpos[:] = qpos
        mujoco.mj_kinematics(self.model, d)
        mouth = d.geom_xpos[self._effectors[0]].copy()
        d.qpos[:] = saved
        mujoco.mj_kinematics(self.model, d)
        return mouth

    def _spawn_target(self, rng: np.random.Generator, origin: np.ndarray) -> np.ndarray:
        # The mouth position of a random neck pose the servos can command (so every food is reachable without
        # walking), at least food_min_offset from where the mouth rests (standing still never reaches it). The
        # pose is relative to the spawned body, so ``origin`` is not needed.
        rest = self._mouth_at(self.data.qpos)
        act = self._neck_act
        lo = np.maximum(self._a_lo[act], -self.food_pose_range)
        hi = np.minimum(self._a_hi[act], self.food_pose_range)
        food = rest
        for _ in range(100):
            pose = rng.uniform(lo, hi)
            qpos = self.data.qpos.copy()
            qpos[self._act_qpos[act]] = self._home[act] + pose * self._ctrl_scale[act]
            food = self._mouth_at(qpos)
            if math.dist(food, rest) >= self.food_min_offset:
                break
        self.food_pose_action = np.zeros(self.model.nu)
        self.food_pose_action[act] = pose
        return food

    def _success_distance(self) -> float:
        return self.food_reach_threshold
