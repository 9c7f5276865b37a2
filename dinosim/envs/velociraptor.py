"""`VelociraptorEnv`: a ~15 kg, ~1.8 m biped with a stiffened tail, small arms and a sickle claw on each foot.

Only the raptor's own data lives here (model file, home pose, body names, stage-3 "strike" target); physics,
observation, actuation and rewards come from :class:`dinosim.envs.base.DinoEnv`. Stage 3: a prey (a pinned
capsule on the ground) spawns ahead at a distance drawn from ``prey_distance_range``; the episode succeeds when a
sickle claw touches it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from dinosim.config.env_rules import check_env_kwargs
from dinosim.envs.base import DinoEnv
from dinosim.envs.prey import prey_position
from dinosim.species import SPECIES


class VelociraptorEnv(DinoEnv):
    """Velociraptor; stage-3 task ``"strike"``. Extra kwargs: see :meth:`__init__`, the rest is in ``DinoEnv``."""

    species: ClassVar[str] = "velociraptor"
    xml_file: ClassVar[str] = "velociraptor.xml"
    behaviour: ClassVar[str] = "strike"
    home_pose: ClassVar[dict[str, float]] = {"neck_pitch": -0.1, "head_pitch": 0.1}
    foot_geoms: ClassVar[tuple[str, ...]] = ("foot_left", "foot_right")
    foot_pairs: ClassVar[tuple[tuple[int, int], ...]] = ((0, 1),)
    tail_joints: ClassVar[tuple[str, ...]] = ("tail1_pitch", "tail1_yaw", "tail2_pitch", "tail2_yaw")
    effector_geoms: ClassVar[tuple[str, ...]] = ("claw_left", "claw_right")
    success_by_contact: ClassVar[bool] = True
    reach_scale: ClassVar[float] = 0.4
    frame_skip: ClassVar[int] = 10  # 4 ms physics step -> 25 Hz control
    target_weight_names: ClassVar[tuple[str, str, str]] = SPECIES["velociraptor"].target_weights

    def __init__(
        self,
        *,
        prey_distance_range: tuple[float, float] = (0.6, 1.5),  # m, prey spawn distance ahead of the torso
        prey_lateral_range: float = 0.2,  # m, prey spawns up to this far left/right of the heading line
        prey_height: float = 0.0,  # m, the prey's underside above the ground (0: lying on it)
        strike_bonus: float = 0.0,  # reward when a sickle claw touches the prey (ends the episode)
        strike_approach_weight: float = 0.0,  # reward per m/s of claw-to-prey closing speed
        strike_proximity_weight: float = 0.0,  # reward per step times exp(-claw-to-prey distance / 0.4 m)
        **kwargs: Any,
    ) -> None:
        check_env_kwargs(self.species, {k: v for k, v in locals().items() if k not in ("self", "kwargs", "__class__")})
        self.prey_distance_range = (float(prey_distance_range[0]), float(prey_distance_range[1]))
        self.prey_lateral_range = float(prey_lateral_range)
        self.prey_height = float(prey_height)
        self.strike_bonus = float(strike_bonus)
        self.strike_approach_weight = float(strike_approach_weight)
        self.strike_proximity_weight = float(strike_proximity_weight)
        super().__init__(**kwargs)

    def _spawn_target(self, rng: np.random.Generator, origin: np.ndarray) -> np.ndarray:
        radius = float(self.model.geom_size[self._target_geom][0])
        return prey_position(rng, origin, self.heading, self.prey_distance_range, self.prey_lateral_range,
                             radius, self.prey_height)
