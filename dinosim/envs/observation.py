"""The observation of a :class:`~dinosim.envs.base.DinoEnv`: its layout, its space and how it is filled.

Layout (float32, ``12 + 2 * nu + n_feet + 3`` values, in the heading frame where a direction is involved):
torso height relative to standing height minus 1; gravity in the torso frame (3); cos/sin of the heading error (2);
torso linear velocity along / across the heading and vertical (3); torso angular velocity (3); joint angles
relative to the home pose in units of half the joint range (nu, qpos order); joint velocities x 0.1 (nu); foot
contacts (0/1, n_feet); target offset from the torso (3; zeros when the task has no target).

:class:`Observation` is a mixin of ``DinoEnv``: it reads the env's MuJoCo ``model``/``data`` and the caches set up
by ``DinoEnv._setup_model`` (listed below). :meth:`_setup_spaces` runs once after the model is loaded;
:meth:`_observation` fills one preallocated buffer and returns a float32 copy.
"""

from __future__ import annotations

import math
from typing import Any

import mujoco
import numpy as np
from gymnasium import spaces


class Observation:
    """Mixin: the observation of a DinoEnv (see the module docstring)."""

    # Provided by DinoEnv.
    model: mujoco.MjModel
    data: mujoco.MjData
    has_target: bool
    heading: float
    standing_height: float
    _cos_heading: float
    _sin_heading: float
    _xmat: np.ndarray
    _qpos_v: np.ndarray
    _qvel_v: np.ndarray
    _sensordata: np.ndarray
    _joint_qpos: slice
    _joint_qvel: slice
    _joint_home: np.ndarray
    _joint_inv_half_range: np.ndarray
    _nfeet: int
    _mocap: int
    action_space: Any
    observation_space: Any

    def _setup_spaces(self) -> None:
        nu = self.model.nu
        self.action_space = spaces.Box(-1.0, 1.0, shape=(nu,), dtype=np.float32)
        # height, gravity in torso frame (3), heading error cos/sin (2), linear velocity in heading frame (3),
        # torso angular velocity (3), joint angles (nu), joint velocities (nu), foot contacts, target offset (3).
        self._obs_size = 12 + 2 * nu + self._nfeet + 3
        self._obs = np.zeros(self._obs_size, dtype=np.float64)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(self._obs_size,), dtype=np.float32)

    def _observation(self, contacts: list[float] | None = None) -> np.ndarray:
        """Fill the preallocated observation buffer from the current MjData and return a float32 copy."""
        d, o, nu = self.data, self._obs, self.model.nu
        qpos, qvel = self._qpos_v, self._qvel_v
        ch, sh = self._cos_heading, self._sin_heading
        r = self._xmat.tolist()
        v = qvel[:6].tolist()
        yaw_err = math.atan2(r[3], r[0]) - self.heading
        o[:12] = (
            float(qpos[2]) / self.standing_height - 1.0,
            -r[6], -r[7], -r[8],
            math.cos(yaw_err), math.sin(yaw_err),
            v[0] * ch + v[1] * sh, -v[0] * sh + v[1] * ch, v[2],
            v[3], v[4], v[5],
        )  # fmt: skip
        joints = o[12 : 12 + nu]
        np.subtract(qpos[self._joint_qpos], self._joint_home, out=joints)
        joints *= self._joint_inv_half_range
        np.multiply(qvel[self._joint_qvel], 0.1, out=o[12 + nu : 12 + 2 * nu])
        k = 12 + 2 * nu
        if contacts is None:
            contacts = [1.0 if f > 0.0 else 0.0 for f in self._sensordata[: self._nfeet].tolist()]
        o[k : k + self._nfeet] = contacts
        if self.has_target:
            k += self._nfeet
            dx, dy, dz = (d.mocap_pos[self._mocap] - qpos[:3]).tolist()
            o[k : k + 3] = (dx * ch + dy * sh, -dx * sh + dy * ch, dz)
        return o.astype(np.float32)
