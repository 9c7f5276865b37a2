"""Reward terms shared by every dinosim species and stage.

The reward of one step is the plain sum of the weighted terms below. Each term is written once here; species
envs only supply the signals (:class:`StepSignals`) and the weights (any object with the attributes of
:class:`RewardWeights`, in practice the env itself, so a trainer can change a weight with ``set_attr``).

Contract of :func:`compute_reward`:

* it writes ``out["reward_<term>"]`` for every name in :data:`TERMS` (zeros for inactive terms), so the key set is
  the same on every step of every stage;
* the returned reward equals ``sum(out[f"reward_{t}"] for t in TERMS)`` (computed by that very sum).

Sign convention: bonuses enter with ``+weight``, penalties with ``-weight`` times a non-negative signal, and
``fall_penalty`` is added as given (configure it negative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Protocol

TERMS: tuple[str, ...] = (
    "alive",
    "forward",
    "posture",
    "nosedive",
    "drift",
    "speed",
    "spin",
    "heading",
    "lateral",
    "smoothness",
    "energy",
    "gait_symmetry",
    "tail_stability",
    "approach",
    "proximity",
    "success",
    "fall",
)
"""Names of the reward terms, in summation order; ``info`` carries each as ``reward_<name>``."""

INFO_PREFIX = "reward_"  # info["reward_<term>"] carries each term
REWARD_KEYS: tuple[str, ...] = tuple(INFO_PREFIX + t for t in TERMS)
_TERM_KEYS: tuple[tuple[str, str], ...] = tuple(zip(TERMS, REWARD_KEYS))

POSTURE_TILT_SCALE = 0.35  # rad: tilt at which the posture term has dropped to 1/e
POSTURE_HEIGHT_SCALE = 0.15  # fraction of standing height at which the posture term has dropped to 1/e


class RewardWeights(Protocol):
    """The weights :func:`compute_reward` reads (the env constructor kwargs of the same names)."""

    alive_bonus: float
    forward_vel_weight: float
    forward_vel_max: float
    forward_posture_gate: float
    posture_weight: float
    nosedive_weight: float
    drift_penalty_weight: float
    speed_penalty_weight: float
    spin_penalty_weight: float
    heading_weight: float
    lateral_penalty_weight: float
    smoothness_weight: float
    energy_penalty_weight: float
    gait_symmetry_weight: float
    tail_stability_weight: float
    fall_penalty: float
    target_bonus: float  # species behaviour bonus (strike_bonus / bite_bonus / food_reach_bonus)
    target_approach_weight: float
    target_proximity_weight: float


@dataclass(slots=True)
class StepSignals:
    """Per-step physical signals the reward is computed from (all plain floats/bools, SI units)."""

    forward_velocity: float = 0.0  # m/s along the commanded heading
    lateral_velocity: float = 0.0  # m/s perpendicular to the heading
    yaw_rate: float = 0.0  # rad/s
    tilt: float = 0.0  # rad between torso up axis and world up
    height_error: float = 0.0  # (height - standing height) / standing height
    nose_down: float = 0.0  # sine of the torso's nose-down pitch, clipped at 0 from below
    heading_error: float = 0.0  # rad, yaw minus commanded heading, wrapped to [-pi, pi]
    drift: float = 0.0  # m, horizontal distance of the torso from its spawn point
    action_change_sq: float = 0.0  # mean squared change of the applied (clipped) action
    action_sq: float = 0.0  # mean squared applied (clipped) action
    gait_asymmetry: float = 0.0  # sum over left/right foot pairs of squared stance-fraction difference
    tail_speed_sq: float = 0.0  # mean squared tail joint velocity, (rad/s)^2
    has_target: bool = False  # a stage-3 target exists
    approach_speed: float = 0.0  # m/s, decrease of effector-target distance per second
    proximity: float = 0.0  # in [0, 1], exp(-distance / reach scale)
    success: bool = False  # behaviour achieved on this step
    fell: bool = False  # the episode ends by a fall on this step


def reward_terms(w: RewardWeights, s: StepSignals) -> dict[str, float]:
    """``{term: weighted value}`` for every name in :data:`TERMS` (zeros for inactive terms), keyed by name."""
    overspeed = max(0.0, s.forward_velocity - w.forward_vel_max)
    target = s.has_target
    upright = math.exp(-((s.tilt / POSTURE_TILT_SCALE) ** 2) - (s.height_error / POSTURE_HEIGHT_SCALE) ** 2)
    forward = min(s.forward_velocity, w.forward_vel_max)
    if forward > 0.0:  # gated pay for speed: a lunge (tilted, low torso) earns little of it; backwards is not gated
        forward *= 1.0 - w.forward_posture_gate + w.forward_posture_gate * upright
    return {
        "alive": 0.0 if s.fell else w.alive_bonus,
        "forward": w.forward_vel_weight * forward,
        "posture": w.posture_weight * upright,
        "nosedive": -w.nosedive_weight * s.nose_down,
        "drift": -w.drift_penalty_weight * s.drift,
        "speed": -w.speed_penalty_weight * overspeed * overspeed,
        "spin": -w.spin_penalty_weight * s.yaw_rate * s.yaw_rate,
        "heading": w.heading_weight * (math.cos(s.heading_error) - 1.0),
        "lateral": -w.lateral_penalty_weight * s.lateral_velocity * s.lateral_velocity,
        "smoothness": -w.smoothness_weight * s.action_change_sq,
        "energy": -w.energy_penalty_weight * s.action_sq,
        "gait_symmetry": -w.gait_symmetry_weight * s.gait_asymmetry,
        "tail_stability": -w.tail_stability_weight * s.tail_speed_sq,
        "approach": w.target_approach_weight * s.approach_speed if target else 0.0,
        "proximity": w.target_proximity_weight * s.proximity if target else 0.0,
        "success": (w.target_bonus if s.success else 0.0) if target else 0.0,
        "fall": w.fall_penalty if s.fell else 0.0,
    }


def compute_reward(w: RewardWeights, s: StepSignals, out: dict[str, float | bool | str]) -> float:
    """Write every ``reward_<term>`` into ``out`` and return their sum (see module docstring).

    Terms are looked up by name and summed in :data:`TERMS` order (a term missing from :func:`reward_terms` is a
    ``KeyError``, one it adds that :data:`TERMS` lacks is never reported: a test checks both sets are equal).
    """
    terms = reward_terms(w, s)
    total = 0.0
    for term, key in _TERM_KEYS:
        value = terms[term]
        out[key] = value
        total += value
    return total


def standby_value(env_kwargs: Mapping[str, Any], proximity_key: str, gamma: float) -> float:
    """Discounted return of the best per-step pay an animal can collect without the behaviour, over a whole episode.

    Per step at most ``alive_bonus + posture_weight + forward_vel_weight * forward_vel_max`` plus the
    proximity weight (``proximity_key``, the species' kwarg; the proximity signal is at most 1); summed with
    discount ``gamma`` over ``max_episode_steps``. The approach term is left out: it pays for distance closed,
    at most once per metre. A stage-3 bonus must exceed this value by a margin, or walking on, standing by or
    hovering next to the target is worth as much as the strike, bite or meal (``dinosim diagnose`` and the
    committed-config tests use this rule).
    """
    per_step = sum(max(0.0, float(env_kwargs.get(key, 0.0))) for key in ("alive_bonus", "posture_weight"))
    forward_max = float(env_kwargs.get("forward_vel_weight", 0.0)) * float(env_kwargs.get("forward_vel_max", 1.0))
    per_step += max(0.0, forward_max)
    per_step += max(0.0, float(env_kwargs.get(proximity_key, 0.0)))
    steps = int(env_kwargs.get("max_episode_steps", 1000))
    horizon = steps if gamma >= 1.0 else (1.0 - gamma**steps) / (1.0 - gamma)
    return per_step * horizon
