"""`DinoEnv`: the one Gymnasium environment class behind every dinosim species and curriculum stage.

Design
------
* **Physics.** MuJoCo is driven directly (no ``MujocoEnv``): one ``mj_step(model, data, nstep=frame_skip)`` call per
  env step, preallocated observation buffer, cached ids and array views, so the Python cost per step stays small
  next to the physics. Contacts are filtered in the MJCF (contype/conaffinity) so that only feet/trunk-vs-floor and
  effector-vs-target pairs are ever tested, and the facts the env needs (foot contact, fall contact, strike/bite
  contact) are MuJoCo sensors read from one ``sensordata`` slice (see :mod:`dinosim.envs.model`).
* **Actuation.** Every actuated joint has a MuJoCo position servo. The policy's action ``a`` in ``[-1, 1]^nu`` is a
  *residual* around the species' home pose: ``target = home + action_scale * a * half_range``, with ``a`` clipped to
  ``[-1, 1]`` and further so that the target stays inside the joint range; that clipped ``a`` is "the action the
  plant receives" and is what the smoothness/energy penalties see. Residual targets make the zero action a
  meaningful posture and keep exploration near it. The weight-bearing leg servos are deliberately soft (below the
  stiffness at which the zero-action home pose is passively stable; see the MJCF files and docs/envs.md), so, like
  muscle tone, standing needs policy feed-forward and feedback: a zero-action "statue" sags and falls, and pushes
  (``push_force``) demand feedback on top.
* **Stages are kwargs, not classes.** ``task`` selects balance / locomotion / the species behaviour; every other
  constructor kwarg is a reward weight or task parameter. The signature of ``__init__`` (literal defaults only) is
  the single source of truth for the ``[env]`` config table; the config validator reads it with ``ast``.
* **Rewards** are the weighted terms of :mod:`dinosim.envs.rewards`, each reported in ``info`` as ``reward_<term>``.

Species subclasses provide only their own data: MJCF file, home pose, names of feet/trunk/effector geoms, tail
joints, and the target placement of their behaviour (see the ``ClassVar`` hooks below and in
:mod:`dinosim.envs.target`).
"""

from __future__ import annotations

import inspect
import math
import os
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np

from dinosim.config.env_rules import TASKS_COMMON, check_env_kwargs
from dinosim.envs.model import load_model
from dinosim.envs.observation import Observation, TorsoState
from dinosim.envs.pushes import PushSchedule
from dinosim.envs.rewards import StepSignals, compute_reward
from dinosim.envs.target import NO_TARGET_DISTANCE, TargetTask

GAIT_EMA = 0.05  # per-step smoothing of the stance fractions used by the gait-symmetry term


class DinoEnv(TargetTask, Observation, gym.Env):
    """Base MuJoCo dinosaur env; see the module docstring for the design and :meth:`__init__` for the kwargs.

    ``info`` on every step (same keys every step of an env instance): ``reward_<term>`` for each term of
    :data:`dinosim.envs.rewards.TERMS`, ``forward_velocity`` and ``lateral_velocity`` (m/s along / across the
    heading), ``yaw_rate`` (rad/s), ``drift`` (m from the spawn point), ``gait_asymmetry`` (the gait-symmetry
    signal, whatever its weight), ``tilt`` (rad), ``height``
    (m, torso), ``target_distance`` (m, effector to target; ``-1.0`` without target), ``termination_reason``
    (``""``, ``"fell_height"``, ``"fell_tilt"``, ``"fell_contact"``, ``"success"``, ``"time_limit"``), and, when the
    task has a target, ``is_success`` (bool).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 25}
    _render_error: ClassVar[str | None] = None  # set once creating a GL context has failed in this process

    # ---- species hooks -------------------------------------------------------------------------------------------
    xml_file: ClassVar[str] = ""
    species: ClassVar[str] = ""  # key of dinosim.species.SPECIES: selects the value rules of the kwargs
    behaviour: ClassVar[str] = ""  # the stage-3 task name of the species
    home_pose: ClassVar[dict[str, float]] = {}  # joint name -> radians, joints not listed are 0
    foot_geoms: ClassVar[tuple[str, ...]] = ()  # touch sensors carry the same names
    foot_pairs: ClassVar[tuple[tuple[int, int], ...]] = ()  # (left, right) indices into foot_geoms
    tail_joints: ClassVar[tuple[str, ...]] = ()
    effector_geoms: ClassVar[tuple[str, ...]] = ()  # geoms whose positions define the target distance
    frame_skip: ClassVar[int] = 10

    def __init__(
        self,
        *,
        task: str = "balance",  # "balance", "locomotion" or the species behaviour ("strike"/"bite"/"food_reach")
        alive_bonus: float = 1.0,  # reward per step while not fallen
        forward_vel_weight: float = 0.0,  # reward per m/s of speed along the heading (capped at forward_vel_max)
        forward_vel_max: float = 1.0,  # m/s, speed above which the forward reward stops growing
        forward_posture_gate: float = 0.0,  # 0..1: share of the forward pay scaled by the posture factor
        posture_weight: float = 0.5,  # reward for an upright torso at standing height (max per step)
        nosedive_weight: float = 0.5,  # penalty per unit sine of nose-down torso pitch
        drift_penalty_weight: float = 0.0,  # penalty per m of horizontal distance from the spawn point
        speed_penalty_weight: float = 0.0,  # penalty per (m/s)^2 above forward_vel_max
        spin_penalty_weight: float = 0.05,  # penalty per (rad/s)^2 of yaw rate
        heading_weight: float = 0.0,  # penalty weight on (1 - cos(heading error))
        lateral_penalty_weight: float = 0.0,  # penalty per (m/s)^2 of sideways velocity
        smoothness_weight: float = 0.05,  # penalty per mean squared change of the applied action
        energy_penalty_weight: float = 0.02,  # penalty per mean squared applied action
        gait_symmetry_weight: float = 0.0,  # penalty per squared left/right stance-fraction difference
        tail_stability_weight: float = 0.0,  # penalty per mean squared tail joint velocity
        fall_penalty: float = -20.0,  # added once on the step the animal falls (negative)
        max_tilt: float = 0.8,  # rad, torso tilt beyond which the animal counts as fallen
        success_hold_steps: int = 0,  # steps to stay standing after a touch (or at the target, when reaching)
        min_height_fraction: float = 0.7,  # torso height below this fraction of standing height counts as fallen
        heading: float = 0.0,  # rad, world yaw of the direction to walk / of the target
        action_scale: float = 0.5,  # servo target range per unit action, as a fraction of half the joint range
        reset_noise_scale: float = 0.05,  # uniform joint-angle noise (rad) and velocity noise at reset
        reset_forward_speed: float = 0.0,  # m/s: the body starts moving along the heading at up to this speed
        push_force: float = 0.0,  # horizontal push on the torso, in multiples of body weight (0 = no pushes)
        push_interval: float = 3.0,  # s, mean time between pushes (uniform in [0.5, 1.5] x this)
        push_duration: float = 0.2,  # s, how long each push lasts
        max_episode_steps: int = 1000,  # the env truncates episodes itself after this many steps
        render_mode: str | None = None,  # None or "rgb_array"
    ) -> None:
        # the value rules shared with the config validator (InvalidValue is a ValueError)
        check_env_kwargs(self.species, {k: v for k, v in locals().items() if k not in ("self", "render_mode")})
        if task not in TASKS_COMMON + (self.behaviour,):
            raise ValueError(f"task must be one of {TASKS_COMMON + (self.behaviour,)}, got {task!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.task = task
        self.alive_bonus = float(alive_bonus)
        self.forward_vel_weight = float(forward_vel_weight)
        self.forward_vel_max = float(forward_vel_max)
        self.forward_posture_gate = float(forward_posture_gate)
        self.posture_weight = float(posture_weight)
        self.nosedive_weight = float(nosedive_weight)
        self.drift_penalty_weight = float(drift_penalty_weight)
        self.speed_penalty_weight = float(speed_penalty_weight)
        self.spin_penalty_weight = float(spin_penalty_weight)
        self.heading_weight = float(heading_weight)
        self.lateral_penalty_weight = float(lateral_penalty_weight)
        self.smoothness_weight = float(smoothness_weight)
        self.energy_penalty_weight = float(energy_penalty_weight)
        self.gait_symmetry_weight = float(gait_symmetry_weight)
        self.tail_stability_weight = float(tail_stability_weight)
        self.fall_penalty = float(fall_penalty)
        self.max_tilt = float(max_tilt)
        self.success_hold_steps = int(success_hold_steps)
        self.min_height_fraction = float(min_height_fraction)
        self._action_scale = float(action_scale)
        self.reset_noise_scale = float(reset_noise_scale)
        self.reset_forward_speed = float(reset_forward_speed)
        self.push_force = float(push_force)
        self.push_interval = float(push_interval)
        self.push_duration = float(push_duration)
        self.max_episode_steps = int(max_episode_steps)
        self.render_mode = render_mode
        self.has_target = task == self.behaviour
        self._touched_at: int | None = None  # step at which the effector first touched/reached the target
        self.heading = heading  # property: also caches cos/sin

        self._setup_model()
        self._setup_spaces()
        self._renderer: mujoco.Renderer | None = None
        self._signals = StepSignals(has_target=self.has_target)
        self._begun: np.ndarray | None = None  # the applied action between begin_step and the step it begins

    # ---- kwargs with derived caches (settable at any time, e.g. through VecEnv.set_attr) ----------------------
    @property
    def heading(self) -> float:
        """World yaw (rad) of the walking / target direction."""
        return self._heading

    @heading.setter
    def heading(self, value: float) -> None:
        self._heading = float(value)
        self._cos_heading, self._sin_heading = math.cos(self._heading), math.sin(self._heading)

    @property
    def action_scale(self) -> float:
        """Servo target range per unit action, as a fraction of half the joint range."""
        return self._action_scale

    @action_scale.setter
    def action_scale(self, value: float) -> None:
        self._action_scale = float(value)
        self._ctrl_scale = self._action_scale * self._half_range  # rad of servo target per unit action
        # Action bounds that keep every servo target inside its joint range: the action the plant receives.
        self._a_lo = np.maximum(-1.0, (self._ctrl_lo - self._home) / self._ctrl_scale)
        self._a_hi = np.minimum(1.0, (self._ctrl_hi - self._home) / self._ctrl_scale)

    # ---- model setup ---------------------------------------------------------------------------------------------
    def _setup_model(self) -> None:
        lm = load_model(self.xml_file, self.home_pose, self.foot_geoms, self.effector_geoms, self.tail_joints)
        m = lm.model
        d = mujoco.MjData(m)
        self.model, self.data = m, d
        self.dt = m.opt.timestep * self.frame_skip
        self.metadata = {**self.metadata, "render_fps": int(round(1.0 / self.dt))}
        self._torso, self._target_body, self._target_geom, self._mocap = (
            lm.torso, lm.target_body, lm.target_geom, lm.mocap,
        )  # fmt: skip
        self._act_qpos, self._act_qvel, self._home = lm.act_qpos, lm.act_qvel, lm.home
        self._ctrl_lo, self._ctrl_hi = lm.ctrl_lo, lm.ctrl_hi
        self._half_range = 0.5 * (lm.ctrl_hi - lm.ctrl_lo)
        self._inv_half_range = 1.0 / self._half_range
        self.action_scale = self._action_scale  # property: also derives the servo target scale and action bounds
        # Observation of joints in qpos order (contiguous slices instead of gathers).
        order = np.argsort(lm.act_qpos)
        self._joint_home, self._joint_inv_half_range = lm.home[order], self._inv_half_range[order]
        nu = self._nu = m.nu  # a plain int: MjModel attributes cost a binding call per read
        self._tail_dofs, self._effectors = lm.tail_dofs, lm.effectors
        self._nfeet, self._fall_end, self._hit_end = lm.n_feet, lm.fall_end, lm.hit_end
        self._qpos_home = lm.qpos_home
        self.standing_height = lm.standing_height
        self.body_mass = float(m.body_subtreemass[self._torso])
        self.body_weight = self.body_mass * float(-m.opt.gravity[2])
        # Cached views into MjData, made once: MjData never reallocates its arrays (mj_step, mj_forward and
        # mj_resetData write into them in place), so each view always shows the live state, and the per-step code
        # neither re-reads the binding's attributes nor slices anew.
        self._xmat = d.xmat[self._torso]  # torso rotation matrix, row-major (9)
        self._root_pos, self._root_vel = d.qpos[:3], d.qvel[:6]  # torso position; linear + angular velocity
        self._joint_pos, self._joint_vel = d.qpos[7 : 7 + nu], d.qvel[6 : 6 + nu]  # hinge joints, qpos order
        self._ctrl_v = d.ctrl
        self._sensordata = d.sensordata
        self._target_pos = d.mocap_pos[self._mocap]
        self._pushes = PushSchedule(d.xfrc_applied[self._torso])

    # ---- gymnasium API -------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        m, d, rng = self.model, self.data, self.np_random
        mujoco.mj_resetData(m, d)
        d.qpos[:] = self._qpos_home
        noise = self.reset_noise_scale
        d.qpos[self._act_qpos] += rng.uniform(-noise, noise, m.nu)
        d.qvel[:] = rng.uniform(-noise, noise, m.nv)
        if self.reset_forward_speed > 0.0:  # drawn only when asked for, so 0 keeps every reset as before
            speed = rng.uniform(0.0, self.reset_forward_speed)
            d.qvel[0] += speed * self._cos_heading
            d.qvel[1] += speed * self._sin_heading
        d.ctrl[:] = self._home
        self._origin = tuple(self._qpos_home[:2].tolist())
        self._place_target(rng, self._qpos_home[:3])
        mujoco.mj_forward(m, d)
        self._steps = 0
        self._begun = None
        self._prev_action = np.zeros(m.nu)
        self._stance = [0.5] * self._nfeet  # exponential moving average of each foot's contact state
        self._pushes.reset(rng, self.push_force * self.body_weight, self.push_interval)
        self._reset_target()
        return self._observation(), self._reset_info()

    def step(self, action: np.ndarray):
        """Apply the action, advance the physics, read the step's signals, decide how the episode ends, then
        reward (:func:`~dinosim.envs.rewards.compute_reward`) and observe; each step a method below, in order.

        A vector env may run the first two parts itself, for several envs at once (:meth:`begin_step` with this
        step's action, then :meth:`simulate`, on any thread); ``step`` then continues from the advanced physics.
        """
        a = self._begun
        if a is None:
            a = self.begin_step(action)
            self.simulate()
        self._begun = None
        s = self._signals
        torso = self._read_torso()
        height, tilt = self._read_body(s, torso)
        self._read_action(s, a)
        sensors = self._sensordata.tolist()
        contacts = self._read_feet_and_tail(s, sensors)
        reason = self._fall_reason(sensors, height, tilt)
        s.fell = reason != ""
        dist, s.success = NO_TARGET_DISTANCE, False
        if self.has_target:
            dist = self._update_target(s, any(sensors[self._fall_end : self._hit_end]))
            if s.success:
                reason = "success"
        terminated = reason != ""
        truncated = not terminated and self._steps >= self.max_episode_steps
        if truncated:
            reason = "time_limit"
        info: dict[str, Any] = {}
        reward = compute_reward(self, s, info)
        info["forward_velocity"] = s.forward_velocity
        info["lateral_velocity"] = s.lateral_velocity
        info["yaw_rate"] = s.yaw_rate
        info["drift"] = s.drift
        info["gait_asymmetry"] = s.gait_asymmetry
        info["tilt"] = tilt
        info["height"] = height
        info["target_distance"] = dist
        info["termination_reason"] = reason
        if self.has_target:
            info["is_success"] = s.success
        return self._observation(contacts, torso), reward, terminated, truncated, info

    # ---- the parts of a step -------------------------------------------------------------------------------------
    def _apply_action(self, action: np.ndarray) -> np.ndarray:
        """Set the servo targets; return the action the plant receives (clipped to [-1, 1] and to the joint
        ranges of the servo targets)."""
        a = np.maximum(action, self._a_lo)  # float64 (the bounds' dtype) whatever the action's float type
        np.minimum(a, self._a_hi, out=a)
        np.multiply(a, self._ctrl_scale, out=self._ctrl_v)
        self._ctrl_v += self._home
        return a

    def begin_step(self, action: np.ndarray) -> np.ndarray:
        """The step's start, before its physics: servo targets (:meth:`_apply_action`) and this step's pushes.
        The next :meth:`simulate` advances the physics and the next ``step`` (same action) finishes the step.
        Returns the action the plant receives."""
        a = self._apply_action(action)
        self._pushes.update(
            self._steps * self.dt, self.np_random, self.push_force * self.body_weight, self.push_interval,
            self.push_duration,
        )  # fmt: skip
        self._steps += 1
        self._begun = a
        return a

    def simulate(self) -> None:
        """``frame_skip`` MuJoCo steps. Touches only this env's MjData (the MjModel is read), and MuJoCo releases
        the GIL meanwhile, so the envs of one process may simulate on threads of their own at once."""
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)

    def _read_torso(self) -> TorsoState:
        """The torso's state after this step's physics, read once for both the signals and the observation."""
        r = self._xmat.tolist()
        return r, self._root_vel.tolist(), math.atan2(r[3], r[0]) - self._heading

    def _read_body(self, s: StepSignals, torso: TorsoState) -> tuple[float, float]:
        """Torso signals (velocities in the heading frame, tilt, nose-down, heading error, height, drift);
        returns (torso height in m, tilt in rad)."""
        r, qv, yaw_error = torso
        ch, sh = self._cos_heading, self._sin_heading
        s.forward_velocity = qv[0] * ch + qv[1] * sh
        s.lateral_velocity = -qv[0] * sh + qv[1] * ch
        s.yaw_rate = qv[5]
        tilt = math.acos(max(-1.0, min(1.0, r[8])))
        s.tilt = tilt
        s.nose_down = max(0.0, -r[6])
        s.heading_error = _wrap(yaw_error)
        x, y, height = self._root_pos.tolist()
        s.height_error = height / self.standing_height - 1.0
        s.drift = math.hypot(x - self._origin[0], y - self._origin[1])
        return height, tilt

    def _read_action(self, s: StepSignals, a: np.ndarray) -> None:
        """Mean squared applied action and mean squared change since the last step."""
        nu = self._nu
        da = a - self._prev_action
        s.action_change_sq = float(da @ da) / nu
        s.action_sq = float(a @ a) / nu
        self._prev_action = a

    def _read_feet_and_tail(self, s: StepSignals, sensors: list[float]) -> list[float]:
        """Gait asymmetry (from the smoothed stance of each foot) and tail speed; returns the foot contacts."""
        contacts = [1.0 if f > 0.0 else 0.0 for f in sensors[: self._nfeet]]
        stance = self._stance
        for i, c in enumerate(contacts):
            stance[i] += GAIT_EMA * (c - stance[i])
        s.gait_asymmetry = sum((stance[i] - stance[j]) ** 2 for i, j in self.foot_pairs)
        if self.tail_stability_weight != 0.0:  # the term is exactly 0 otherwise; skip the work
            tv = self.data.qvel[self._tail_dofs]
            s.tail_speed_sq = float(tv @ tv) / max(1, len(tv))
        else:
            s.tail_speed_sq = 0.0
        return contacts

    def _fall_reason(self, sensors: list[float], height: float, tilt: float) -> str:
        """``"fell_contact"`` (trunk touches the floor), ``"fell_height"``, ``"fell_tilt"`` or ``""``."""
        if any(sensors[self._nfeet : self._fall_end]):
            return "fell_contact"
        if height < self.min_height_fraction * self.standing_height:
            return "fell_height"
        if tilt > self.max_tilt:
            return "fell_tilt"
        return ""

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            if DinoEnv._render_error is not None:  # a failed GL context creation must not be retried (aborts)
                raise RuntimeError(DinoEnv._render_error)
            try:
                self._renderer = mujoco.Renderer(self.model, height=480, width=640)
            except Exception as exc:
                DinoEnv._render_error = (
                    f"cannot create an OpenGL context ({exc!r}); set MUJOCO_GL=egl (or osmesa) before mujoco is "
                    f"first imported (MUJOCO_GL is {os.environ.get('MUJOCO_GL')!r})"
                )
                raise RuntimeError(DinoEnv._render_error) from exc
        self._renderer.update_scene(self.data, camera="track")
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ---- internals -----------------------------------------------------------------------------------------------
    def _reset_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "forward_velocity": 0.0,
            "lateral_velocity": 0.0,
            "yaw_rate": 0.0,
            "drift": 0.0,
            "gait_asymmetry": 0.0,
            "tilt": 0.0,
            "height": self.standing_height,
            "target_distance": self._target_dist,
            "termination_reason": "",
        }
        if self.has_target:
            info["is_success"] = False
        return info


def _wrap(angle: float) -> float:
    """Wrap an angle to [-pi, pi]."""
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def base_default(name: str) -> Any:
    """The default of one of :class:`DinoEnv`'s keyword arguments (for species constructors that check a
    combination of their own kwargs with one they pass on)."""
    return inspect.signature(DinoEnv.__init__).parameters[name].default
