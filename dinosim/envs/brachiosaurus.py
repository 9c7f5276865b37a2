"""`BrachiosaurusEnv`: a full-scale (~33 t, ~21 m) sauropod quadruped with a long, raisable neck.

Only the brachiosaur's own data lives here (model file, home pose, body names, stage-3 "food_reach" target);
everything else comes from :class:`dinosim.envs.base.DinoEnv`. Stage 3: food (a marker without collisions) spawns
where the mouth would be in a random neck pose (each neck servo target uniform within ``±food_pose_range`` of its
action range), at least ``food_min_offset`` from the resting mouth, and food spreads over the neck's whole
workspace (up, down, left, right, near, far) so no fixed pose reaches most of it. With the default
``food_distance_range = (0, 0)`` every food is reachable without walking; a range moves it that far ahead along the
heading (uniform), so the animal walks up to it first. The episode succeeds when the mouth comes within
``food_reach_threshold`` of the food and the animal is still standing ``success_hold_steps`` later.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import mujoco
import numpy as np

from dinosim.config.env_rules import FOOD_POSE_DRAWS, FOOD_REACH_SHARE, check_env_kwargs
from dinosim.envs.base import DinoEnv, base_default
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
        food_distance_range: tuple[float, float] = (0.0, 0.0),  # m, food moved this far ahead along the heading
        food_reach_threshold: float = 0.6,  # m, mouth-to-food distance that counts as reaching it
        food_reach_bonus: float = 0.0,  # reward when the mouth reaches the food (ends the episode)
        food_approach_weight: float = 0.0,  # reward per m/s of mouth-to-food closing speed
        food_proximity_weight: float = 0.0,  # reward per step times exp(-mouth-to-food distance / 2 m)
        **kwargs: Any,
    ) -> None:
        own = {k: v for k, v in locals().items() if k not in ("self", "kwargs", "__class__")}
        check_env_kwargs(self.species, {**own, **{k: kwargs.get(k, base_default(k)) for k in ("task", "action_scale")}})
        self.food_pose_range = float(food_pose_range)
        self.food_min_offset = float(food_min_offset)
        self.food_distance_range = (float(food_distance_range[0]), float(food_distance_range[1]))
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

    def _neck_pose_box(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) neck servo actions a food pose is drawn from: ``±food_pose_range`` within the action
        bounds that keep the servo targets inside the joint ranges (the joint angles it spans depend only on
        ``food_pose_range * action_scale``, see :func:`dinosim.config.env_rules.food_offset_limit`)."""
        act = self._neck_act
        return np.maximum(self._a_lo[act], -self.food_pose_range), np.minimum(self._a_hi[act], self.food_pose_range)

    def _mouth_in_pose(self, pose: np.ndarray) -> np.ndarray:
        """World position of the mouth with the neck servos at the actions ``pose`` (the rest of the body as is)."""
        act = self._neck_act
        qpos = self.data.qpos.copy()
        qpos[self._act_qpos[act]] = self._home[act] + pose * self._ctrl_scale[act]
        return self._mouth_at(qpos)

    def _spawn_target(self, rng: np.random.Generator, origin: np.ndarray) -> np.ndarray:
        # The mouth position of a random neck pose the servos can command (so every food is reachable without
        # walking), at least food_min_offset from where the mouth rests (standing still never reaches it). The
        # config rule (food_offset_limit) keeps food_min_offset where >= 1 in 5 poses reach it, so one of the
        # FOOD_POSE_DRAWS draws misses with probability < 1e-9; then the farthest draw is used. The pose is relative
        # to the spawned body, so ``origin`` is not needed. Then the food moves food_distance_range ahead (the
        # draw's rng call comes last, so with (0, 0) the foods are those of a seed before the option existed).
        rest = self._mouth_at(self.data.qpos)
        lo, hi = self._neck_pose_box()
        best, best_dist = (np.zeros_like(lo), rest), -1.0
        for _ in range(FOOD_POSE_DRAWS):
            pose = rng.uniform(lo, hi)
            food = self._mouth_in_pose(pose)
            dist = math.dist(food, rest)
            if dist > best_dist:
                best, best_dist = (pose, food), dist
            if dist >= self.food_min_offset:
                break
        self.food_pose_action = np.zeros(self.model.nu)
        self.food_pose_action[self._neck_act] = best[0]
        ahead = rng.uniform(*self.food_distance_range) if self.food_distance_range[1] > 0.0 else 0.0
        return best[1] + ahead * np.array([math.cos(self.heading), math.sin(self.heading), 0.0])

    def food_offsets(self, samples: int, seed: int = 0) -> np.ndarray:
        """Distances (m) from the resting mouth of the food of ``samples`` neck poses drawn as :meth:`_spawn_target`
        draws them, before the ``food_min_offset`` test (after a reset with ``seed``: the env's reset noise
        applies). What :data:`dinosim.config.env_rules.FOOD_OFFSET_REACHED` was measured with."""
        self.reset(seed=seed)
        rest = self._mouth_at(self.data.qpos)
        lo, hi = self._neck_pose_box()
        rng = np.random.default_rng(seed)
        return np.array([math.dist(self._mouth_in_pose(rng.uniform(lo, hi)), rest) for _ in range(samples)])

    def _success_distance(self) -> float:
        return self.food_reach_threshold


def measure_food_offset_reached(reach: float, samples: int = 2000, seed: int = 0) -> float:
    """The distance (m) from the resting mouth that a share ``FOOD_REACH_SHARE`` of the food poses reach at
    ``reach = food_pose_range * action_scale``, without reset noise: the measurement behind
    :data:`dinosim.config.env_rules.FOOD_OFFSET_REACHED` (``scripts/measure_food_reach.py`` prints the table)."""
    env = BrachiosaurusEnv(task="food_reach", action_scale=1.0, food_pose_range=reach, food_min_offset=0.0,
                           reset_noise_scale=0.0)
    try:
        return float(np.quantile(env.food_offsets(samples, seed), 1.0 - FOOD_REACH_SHARE))
    finally:
        env.close()
