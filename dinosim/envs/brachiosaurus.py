"""`BrachiosaurusEnv`: a full-scale (~33 t, ~21 m) sauropod quadruped with a long, raisable neck.

Only the brachiosaur's own data lives here (model file, home pose, body names, stage-3 "food_reach" target);
everything else comes from :class:`dinosim.envs.base.DinoEnv`. Stage 3: food (a marker without collisions) spawns
ahead at a horizontal distance from ``food_distance_range`` and a height from ``food_height_range``, above the
resting mouth height (~10.6 m); every spawn point is reachable by the neck
without walking; the episode succeeds when the mouth comes within ``food_reach_threshold`` of it.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from dinosim.envs.base import DinoEnv


class BrachiosaurusEnv(DinoEnv):
    """Brachiosaurus; stage-3 task ``"food_reach"``. Extra kwargs: see :meth:`__init__`, the rest is in ``DinoEnv``."""

    xml_file: ClassVar[str] = "brachiosaurus.xml"
    behaviour: ClassVar[str] = "food_reach"
    home_pose: ClassVar[dict[str, float]] = {"neck1_pitch": 0.2}
    foot_geoms: ClassVar[tuple[str, ...]] = ("manus_left", "manus_right", "pes_left", "pes_right")
    foot_pairs: ClassVar[tuple[tuple[int, int], ...]] = ((0, 1), (2, 3))
    tail_joints: ClassVar[tuple[str, ...]] = ("tail_pitch", "tail_yaw")
    effector_geoms: ClassVar[tuple[str, ...]] = ("mouth",)
    success_by_contact: ClassVar[bool] = False
    reach_scale: ClassVar[float] = 2.0
    frame_skip: ClassVar[int] = 10  # 4 ms physics step -> 25 Hz control
    target_weight_names: ClassVar[tuple[str, str, str]] = (  # bonus, approach, proximity kwargs
        "food_reach_bonus", "food_approach_weight", "food_proximity_weight"
    )

    def __init__(
        self,
        *,
        food_height_range: tuple[float, float] = (11.5, 12.4),  # m above ground; the resting mouth is at ~10.6 m
        food_distance_range: tuple[float, float] = (5.5, 7.0),  # m, horizontal food distance ahead of the torso
        food_reach_threshold: float = 0.6,  # m, mouth-to-food distance that counts as reaching it
        food_reach_bonus: float = 0.0,  # reward when the mouth reaches the food (ends the episode)
        food_approach_weight: float = 0.0,  # reward per m/s of mouth-to-food closing speed
        food_proximity_weight: float = 0.0,  # reward per step times exp(-mouth-to-food distance / 2 m)
        **kwargs: Any,
    ) -> None:
        self.food_height_range = (float(food_height_range[0]), float(food_height_range[1]))
        self.food_distance_range = (float(food_distance_range[0]), float(food_distance_range[1]))
        self.food_reach_threshold = float(food_reach_threshold)
        self.food_reach_bonus = float(food_reach_bonus)
        self.food_approach_weight = float(food_approach_weight)
        self.food_proximity_weight = float(food_proximity_weight)
        super().__init__(**kwargs)

    def _spawn_target(self, rng: np.random.Generator, origin: np.ndarray) -> np.ndarray:
        dist = rng.uniform(*self.food_distance_range)
        height = rng.uniform(*self.food_height_range)
        ch, sh = math.cos(self.heading), math.sin(self.heading)
        return np.array([origin[0] + dist * ch, origin[1] + dist * sh, height])

    def _success_distance(self) -> float:
        return self.food_reach_threshold
