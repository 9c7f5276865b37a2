"""The observation of a :class:`~dinosim.envs.base.DinoEnv`: its layout, its space and how it is filled.

Layout (float32, ``12 + 2 * nu + n_feet + 3`` values, in the heading frame where a direction is involved):
torso height relative to standing height minus 1; gravity in the torso frame (3); cos/sin of the heading error (2);
torso linear velocity along / across the heading and vertical (3); torso angular velocity (3); joint angles
relative to the home pose in units of half the joint range (nu, qpos order); joint velocities x 0.1 (nu); foot
contacts (0/1, n_feet); target offset from the torso (3; zeros when the task has no target).

:class:`Observation` is a mixin of ``DinoEnv``: it reads the env's MuJoCo ``model``/``data`` and the caches set up
by ``DinoEnv._setup_model`` (listed below: views into ``MjData``'s arrays, which MuJoCo never reallocates).
:meth:`_setup_spaces` runs once after the model is loaded and makes the buffer and views of its slices once;
:meth:`_observation` fills that buffer in place and returns a float32 copy (the caller's array is its own).
"""

from __future__ import annotations

import math
from typing import Any

import mujoco
import numpy as np
from gymnasium import spaces

TorsoState = tuple[list, list, float]
"""What a step reads of the torso once, for its signals and its observation: the rotation matrix (row-major, 9
floats), the root velocity (linear 3, angular 3; world frame) and the yaw minus the commanded heading (rad, not
wrapped)."""


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
    _heading: float
    _xmat: np.ndarray
    _root_pos: np.ndarray
    _root_vel: np.ndarray
    _joint_pos: np.ndarray
    _joint_vel: np.ndarray
    _target_pos: np.ndarray
    _sensordata: np.ndarray
    _joint_home: np.ndarray
    _joint_inv_half_range: np.ndarray
    _nfeet: int
    _nu: int
    action_space: Any
    observation_space: Any

    def _setup_spaces(self) -> None:
        nu = self.model.nu
        self.action_space = spaces.Box(-1.0, 1.0, shape=(nu,), dtype=np.float32)
        # height, gravity in torso frame (3), heading error cos/sin (2), linear velocity in heading frame (3),
        # torso angular velocity (3), joint angles (nu), joint velocities (nu), foot contacts, target offset (3).
        self._obs_size = 12 + 2 * nu + self._nfeet + 3
        o = self._obs = np.zeros(self._obs_size, dtype=np.float64)
        k = 12 + 2 * nu  # views of the buffer's slices, made once (see the module docstring)
        self._obs_joint_pos, self._obs_joint_vel = o[12 : 12 + nu], o[12 + nu : k]
        self._obs_contacts, self._obs_target = o[k : k + self._nfeet], o[k + self._nfeet :]
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(self._obs_size,), dtype=np.float32)

    def _observation(self, contacts: list[float] | None = None, torso: TorsoState | None = None) -> np.ndarray:
        """Fill the preallocated observation buffer from the current MjData and return a float32 copy.

        ``contacts`` (foot contacts, 0/1) and ``torso`` (see :data:`TorsoState`) are what the step already read
        from the same state; without them (at reset) they are read here."""
        o = self._obs
        ch, sh = self._cos_heading, self._sin_heading
        if torso is None:
            r = self._xmat.tolist()
            torso = r, self._root_vel.tolist(), math.atan2(r[3], r[0]) - self._heading
        r, v, yaw_err = torso
        x, y, z = self._root_pos.tolist()
        o[:12] = (
            z / self.standing_height - 1.0,
            -r[6], -r[7], -r[8],
            math.cos(yaw_err), math.sin(yaw_err),
            v[0] * ch + v[1] * sh, -v[0] * sh + v[1] * ch, v[2],
            v[3], v[4], v[5],
        )  # fmt: skip
        joints = self._obs_joint_pos
        np.subtract(self._joint_pos, self._joint_home, out=joints)
        joints *= self._joint_inv_half_range
        np.multiply(self._joint_vel, 0.1, out=self._obs_joint_vel)
        if contacts is None:
            contacts = [1.0 if f > 0.0 else 0.0 for f in self._sensordata[: self._nfeet].tolist()]
        self._obs_contacts[:] = contacts
        if self.has_target:
            tx, ty, tz = self._target_pos.tolist()
            dx, dy = tx - x, ty - y
            self._obs_target[:] = (dx * ch + dy * sh, -dx * sh + dy * ch, tz - z)
        return o.astype(np.float32)
