"""`TRexEnv`: a full-scale (~7 t, ~10.5 m) Tyrannosaurus with a big skull, an actuated jaw and a heavy tail.

Only the T-Rex's own data lives here (model file, home pose, body names, stage-3 "bite" target); everything else
comes from :class:`dinosim.envs.base.DinoEnv`. Stage 3: a prey body (a pinned hadrosaur-sized capsule, 3.2 m long and
1.4 m thick, lying on the ground) spawns ahead at a distance drawn from ``prey_distance_range``; the episode
succeeds when the teeth or the lower jaw touch it, which needs the animal to walk up and lower its head.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from dinosim.config.env_rules import check_env_kwargs
from dinosim.envs.base import DinoEnv
from dinosim.envs.prey import prey_position
from dinosim.species import SPECIES


class TRexEnv(DinoEnv):
    """Tyrannosaurus rex; stage-3 task ``"bite"``. Extra kwargs: see :meth:`__init__`, the rest is in ``DinoEnv``."""

    species: ClassVar[str] = "trex"
    xml_file: ClassVar[str] = "trex.xml"
    behaviour: ClassVar[str] = "bite"
    home_pose: ClassVar[dict[str, float]] = {"neck_pitch": 0.1, "jaw": 0.05}
    foot_geoms: ClassVar[tuple[str, ...]] = ("foot_left", "foot_right")
    foot_pairs: ClassVar[tuple[tuple[int, int], ...]] = ((0, 1),)
    tail_joints: ClassVar[tuple[str, ...]] = ("tail1_pitch", "tail1_yaw", "tail2_pitch", "tail2_yaw")
    effector_geoms: ClassVar[tuple[str, ...]] = ("teeth", "jaw")
    success_by_contact: ClassVar[bool] = True
    reach_scale: ClassVar[float] = 1.5
    frame_skip: ClassVar[int] = 10  # 4 ms physics step -> 25 Hz control
    target_weight_names: ClassVar[tuple[str, str, str]] = SPECIES["trex"].target_weights

    def __init__(
        self,
        *,
        prey_distance_range: tuple[float, float] = (4.0, 7.0),  # m, prey spawn distance ahead of the torso
        prey_lateral_range: float = 0.5,  # m, prey spawns up to this far left/right of the heading line
        prey_height: float = 0.0,  # m, the prey's underside above the ground (0: lying on it)
        bite_bonus: float = 0.0,  # reward when the teeth or jaw touch the prey (ends the episode)
        bite_approach_weight: float = 0.0,  # reward per m/s of jaw-to-prey closing speed
        bite_proximity_weight: float = 0.0,  # reward per step times exp(-jaw-to-prey distance / 1.5 m)
        **kwargs: Any,
    ) -> None:
        check_env_kwargs(self.species, {k: v for k, v in locals().items() if k not in ("self", "kwargs", "__class__")})
        self.prey_distance_range = (float(prey_distance_range[0]), float(prey_distance_range[1]))
        self.prey_lateral_range = float(prey_lateral_range)
        self.prey_height = float(prey_height)
        self.bite_bonus = float(bite_bonus)
        self.bite_approach_weight = float(bite_approach_weight)
        self.bite_proximity_weight = float(bite_proximity_weight)
        super().__init__(**kwargs)

    def _spawn_target(self, rng: np.random.Generator, origin: np.ndarray) -> np.ndarray:
        radius = float(self.model.geom_size[self._target_geom][0])
        return prey_position(rng, origin, self.heading, self.prey_distance_range, self.prey_lateral_range,
                             radius, self.prey_height)
