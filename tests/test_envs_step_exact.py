"""The env's optimised step path equals the straightforward one, bit for bit, on every species and task.

``DinoEnv.step`` reads MuJoCo's state through views cached at construction, reads the torso once for both the
signals and the observation, and writes the observation into preallocated slices (see :mod:`dinosim.envs.base` and
:mod:`dinosim.envs.observation`). This test recomputes, after every step of seeded random rollouts, what the step
returned from fresh reads of ``MjData`` with the formulas of the documented layout (numpy arrays rebuilt every
time, nothing cached), and compares exactly (``==``, not approx): the observation, the servo targets the action
became, the torso signals and the target distance in ``info``, the action terms of the reward, and the reward as
the sum of its terms. ``tests/test_envs_reference.py`` guards the dynamics against recorded values (to 1e-9).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dinosim.envs import make_env
from dinosim.envs.rewards import REWARD_KEYS
from dinosim.species import SPECIES

STEPS = 300
# Pushes, a heading, short episodes (falls, time limits and resets occur), the tail term on (its signal is read
# only when weighted), actions beyond [-1, 1] (the clipping to the joint ranges is exercised).
KWARGS = {"push_force": 0.3, "push_interval": 0.4, "push_duration": 0.1, "heading": 0.7, "max_episode_steps": 80,
          "tail_stability_weight": 0.01, "smoothness_weight": 0.3, "energy_penalty_weight": 0.2}


class Straightforward:
    """The documented observation, action mapping and torso signals, from fresh reads of the model and data."""

    def __init__(self, env) -> None:
        m = env.model
        self.env, self.m, self.nu = env, m, m.nu
        self.torso = m.body("torso").id
        self.mocap = m.body_mocapid[m.body("target").id]
        self.effectors = [m.geom(name).id for name in env.effector_geoms]
        joints = m.actuator_trnid[:, 0]
        lo, hi = m.jnt_range[joints, 0], m.jnt_range[joints, 1]
        home = np.array([env.home_pose.get(m.joint(j).name, 0.0) for j in joints])
        half = 0.5 * (hi - lo)
        self.home, self.scale = home, env.action_scale * half
        self.a_lo = np.maximum(-1.0, (lo - home) / self.scale)
        self.a_hi = np.minimum(1.0, (hi - home) / self.scale)
        order = np.argsort([m.jnt_qposadr[j] for j in joints])  # observation: joints in qpos order
        self.joint_home, self.joint_inv_half = home[order], (1.0 / half)[order]

    def applied(self, action: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(action, dtype=np.float64), self.a_lo, self.a_hi)

    def ctrl(self, applied: np.ndarray) -> np.ndarray:
        out = applied * self.scale
        out += self.home
        return out

    def observation(self) -> np.ndarray:
        env, d, nu = self.env, self.env.data, self.nu
        r, v = d.xmat[self.torso], d.qvel[:6]
        ch, sh = math.cos(env.heading), math.sin(env.heading)
        yaw_err = math.atan2(r[3], r[0]) - env.heading
        head = [d.qpos[2] / env.standing_height - 1.0, -r[6], -r[7], -r[8], math.cos(yaw_err), math.sin(yaw_err),
                v[0] * ch + v[1] * sh, -v[0] * sh + v[1] * ch, v[2], v[3], v[4], v[5]]
        joints = (d.qpos[7 : 7 + nu] - self.joint_home) * self.joint_inv_half
        speeds = d.qvel[6 : 6 + nu] * 0.1
        feet = (d.sensordata[: len(env.foot_geoms)] > 0.0).astype(np.float64)
        target = np.zeros(3)
        if env.has_target:
            dx, dy, dz = d.mocap_pos[self.mocap] - d.qpos[:3]
            target = np.array([dx * ch + dy * sh, -dx * sh + dy * ch, dz])
        return np.concatenate([np.array(head, dtype=np.float64), joints, speeds, feet, target]).astype(np.float32)

    def signals(self, origin: tuple[float, float]) -> dict[str, float]:
        env, d = self.env, self.env.data
        r, v = d.xmat[self.torso], d.qvel[:6]
        ch, sh = math.cos(env.heading), math.sin(env.heading)
        out = {
            "forward_velocity": float(v[0] * ch + v[1] * sh), "lateral_velocity": float(-v[0] * sh + v[1] * ch),
            "yaw_rate": float(v[5]), "tilt": math.acos(max(-1.0, min(1.0, float(r[8])))), "height": float(d.qpos[2]),
            "drift": math.hypot(float(d.qpos[0]) - origin[0], float(d.qpos[1]) - origin[1]),
        }
        if env.has_target:
            target = d.mocap_pos[self.mocap]
            out["target_distance"] = float(min(math.dist(d.geom_xpos[g], target) for g in self.effectors))
        return out


def cases() -> list[tuple[str, str]]:
    return [(species, task) for species, spec in SPECIES.items() for task in ("balance", "locomotion", spec.behaviour)]


@pytest.mark.parametrize(("species", "task"), cases())
def test_step_equals_the_straightforward_computation(species: str, task: str) -> None:
    spec = SPECIES[species]
    behaviour = dict(zip(spec.target_weights, (50.0, 1.0, 0.5))) if task == spec.behaviour else {}
    env = make_env(species, {**KWARGS, "task": task, **behaviour}).unwrapped
    ref = Straightforward(env)
    rng = np.random.default_rng(11)
    obs, _ = env.reset(seed=5)
    origin, previous = (float(env.data.qpos[0]), float(env.data.qpos[1])), np.zeros(ref.nu)
    assert obs.tobytes() == ref.observation().tobytes()
    ends = 0
    for _ in range(STEPS):
        action = rng.uniform(-1.5, 1.5, ref.nu).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        applied = ref.applied(action)
        assert env.data.ctrl.tobytes() == ref.ctrl(applied).tobytes()
        assert obs.dtype == np.float32 and obs.tobytes() == ref.observation().tobytes()
        expected = ref.signals(origin)
        assert {key: info[key] for key in expected} == expected
        change = applied - previous
        assert info["reward_energy"] == -env.energy_penalty_weight * (float(applied @ applied) / ref.nu)
        assert info["reward_smoothness"] == -env.smoothness_weight * (float(change @ change) / ref.nu)
        total = 0.0
        for key in REWARD_KEYS:
            total += info[key]
        assert reward == total and isinstance(terminated, bool) and isinstance(truncated, bool)
        assert truncated == (info["termination_reason"] == "time_limit")
        previous = applied
        if terminated or truncated:
            ends += 1
            obs, _ = env.reset()
            origin, previous = (float(env.data.qpos[0]), float(env.data.qpos[1])), np.zeros(ref.nu)
            assert obs.tobytes() == ref.observation().tobytes()
    assert ends >= 2  # resets happened mid-rollout
