"""Rules for the ``[env]`` values: the one check that both the config validator and the env constructors run.

The env classes (:mod:`dinosim.envs.base` and one module per species) import MuJoCo, so their value rules live
here, in a module of the standard library only: ``DinoEnv.__init__`` and each species' ``__init__`` call
:func:`check_env_kwargs` with their own keyword arguments, and :func:`dinosim.config.resolve.resolve_run` calls
:func:`env_problems` with the resolved ``[env]`` table of every stage (so ``--dry-run`` rejects what the env would).

Sign convention (see :mod:`dinosim.envs.rewards`): every weight is a non-negative magnitude; bonuses are added and
penalties subtracted by the reward code, so a negative weight would reward what it is meant to punish.
``fall_penalty`` is added as given and must be <= 0.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from dinosim.config.rules import Number, OneOf, Ordered, Problem, Rule, message
from dinosim.errors import InvalidValue
from dinosim.species import SPECIES

TASKS_COMMON: tuple[str, ...] = ("balance", "locomotion")
"""Stage-1 and stage-2 tasks of every species; stage 3 is the species' own behaviour."""

_PENALTY = Number(0.0, why="(a magnitude: the reward subtracts it)")
_BONUS = Number(0.0, why="(a magnitude: the reward adds it)")

COMMON_RULES: dict[str, Rule] = {
    "alive_bonus": _BONUS,
    "forward_vel_weight": _BONUS,
    "forward_vel_max": Number(0.0, lo_open=True),
    "forward_posture_gate": Number(0.0, 1.0),
    "posture_weight": _BONUS,
    "nosedive_weight": _PENALTY,
    "drift_penalty_weight": _PENALTY,
    "speed_penalty_weight": _PENALTY,
    "spin_penalty_weight": _PENALTY,
    "heading_weight": _PENALTY,
    "lateral_penalty_weight": _PENALTY,
    "smoothness_weight": _PENALTY,
    "energy_penalty_weight": _PENALTY,
    "gait_symmetry_weight": _PENALTY,
    "tail_stability_weight": _PENALTY,
    "fall_penalty": Number(hi=0.0, why="(it is added as given: configure it negative)"),
    "max_tilt": Number(0.0, math.pi, lo_open=True),
    "success_hold_steps": Number(0, integer=True),
    "min_height_fraction": Number(0.0, 1.0, lo_open=True, hi_open=True),
    "heading": Number(-2 * math.pi, 2 * math.pi),
    "action_scale": Number(0.0, 1.0, lo_open=True),
    "reset_noise_scale": Number(0.0, 0.5),
    "reset_forward_speed": Number(0.0, 5.0),
    "push_force": Number(0.0, 5.0),
    "push_interval": Number(0.0, lo_open=True),
    "push_duration": Number(0.0, lo_open=True),
    "max_episode_steps": Number(1, 1_000_000, integer=True),
}
"""Rules of :class:`dinosim.envs.base.DinoEnv`'s keyword arguments."""

_PREY_RULES: dict[str, Rule] = {
    "prey_distance_range": Ordered(Number(0.0, 50.0, lo_open=True)),
    "prey_lateral_range": Number(0.0, 50.0),
    "prey_height": Number(0.0, 20.0),
}

_TARGET_RULES: dict[str, dict[str, Rule]] = {
    "velociraptor": _PREY_RULES,
    "trex": _PREY_RULES,
    "brachiosaurus": {
        "food_pose_range": Number(0.0, 1.0, lo_open=True),
        "food_min_offset": Number(0.0, 5.0),
        "food_distance_range": Ordered(Number(0.0, 50.0)),
        "food_reach_threshold": Number(0.0, 5.0, lo_open=True),
    },
}

SPECIES_RULES: dict[str, dict[str, Rule]] = {
    name: {**_TARGET_RULES[name], **{weight: _BONUS for weight in info.target_weights}}
    for name, info in SPECIES.items()
}
"""Rules of each species' own keyword arguments: its stage-3 target placement, and its bonus, approach and
proximity weights (named in :data:`dinosim.species.SPECIES`)."""


def tasks(species: str) -> tuple[str, ...]:
    """The ``task`` values of a species: balance, locomotion and its behaviour."""
    return TASKS_COMMON + (SPECIES[species].behaviour,)


def env_rules(species: str) -> dict[str, Rule]:
    """Every rule of a species' ``[env]`` table."""
    return {"task": OneOf(tasks(species), f"a task of {species}"), **COMMON_RULES, **SPECIES_RULES[species]}


def env_problems(species: str, kwargs: Mapping[str, Any]) -> list[Problem]:
    """Problems of an ``[env]`` table (only the keys it holds; a missing key takes the constructor's default)."""
    rules = env_rules(species) if species in SPECIES else COMMON_RULES
    out: list[Problem] = []
    for key, value in kwargs.items():
        rule = rules.get(key)
        reason = rule.problem(value) if rule is not None else None
        if reason is not None:
            out.append((f"env.{key}", message(f"env.{key}", value, reason)))
    return out


FOOD_POSE_DRAWS = 100
"""Neck poses the brachiosaurus env draws for one food until one lies ``food_min_offset`` from the resting mouth
(after that many misses it keeps the farthest)."""

FOOD_REACH_SHARE = 0.2
"""``food_min_offset`` may be at most the distance that this share of the drawn poses reach, so all
:data:`FOOD_POSE_DRAWS` draws miss with probability (1 - share) ** draws < 1e-9."""

FOOD_OFFSET_REACHED: tuple[tuple[float, float], ...] = (
    (0.1, 0.41), (0.2, 0.82), (0.3, 1.22), (0.4, 1.63), (0.5, 2.04),
    (0.6, 2.44), (0.7, 2.74), (0.8, 3.06), (0.9, 3.36), (1.0, 3.66),
)
"""``(reach, metres)``: at ``reach = food_pose_range * action_scale`` (the neck angles a food pose spans depend on
nothing else), the distance from the resting mouth that :data:`FOOD_REACH_SHARE` of the food poses reach. Measured
without reset noise on 2000 poses each by :func:`dinosim.envs.brachiosaurus.measure_food_offset_reached`, rounded
down to cm; ``tests/test_envs_tasks.py`` measures it again, ``scripts/measure_food_reach.py`` prints it."""


def food_offset_limit(pose_range: float, action_scale: float) -> float:
    """The largest ``food_min_offset`` (m) the brachiosaurus env honours at these values: linear between the
    points of :data:`FOOD_OFFSET_REACHED` (and from 0 at reach 0; the distance grows about linearly with it)."""
    reach = pose_range * action_scale
    points = ((0.0, 0.0),) + FOOD_OFFSET_REACHED
    metres = points[-1][1]
    for (r0, d0), (r1, d1) in zip(points, points[1:]):
        if reach <= r1:
            metres = d0 + (d1 - d0) * (reach - r0) / (r1 - r0)
            break
    return math.floor(round(metres * 100, 6)) / 100  # down to cm, as the message shows it


def _food_problems(kwargs: Mapping[str, Any]) -> list[Problem]:
    """A ``food_min_offset`` the food_reach task could not honour (the food is the mouth of a random neck pose)."""
    offset, pose_range, scale = (kwargs.get(k) for k in ("food_min_offset", "food_pose_range", "action_scale"))
    if kwargs.get("task") != SPECIES["brachiosaurus"].behaviour or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in (offset, pose_range, scale)):
        return []
    limit = food_offset_limit(pose_range, scale)
    if offset <= limit:
        return []
    return [("env.food_min_offset|env.food_pose_range|env.action_scale", message(
        "env.food_min_offset", offset,
        f"is above {limit:g} m, the distance from the resting mouth that 1 in {round(1 / FOOD_REACH_SHARE)} food "
        f"poses reach with env.food_pose_range = {pose_range!r} and env.action_scale = {scale!r}: the env could not "
        "place the food that far; lower it, or raise food_pose_range or action_scale"))]


def env_combination_problems(kwargs: Mapping[str, Any]) -> list[Problem]:
    """Problems between keys of one complete ``[env]`` table."""
    out = _food_problems(kwargs)
    hold, steps = kwargs.get("success_hold_steps"), kwargs.get("max_episode_steps")
    if isinstance(hold, int) and isinstance(steps, int) and hold >= steps:
        out.append(("env.success_hold_steps|env.max_episode_steps",
                    f"env.success_hold_steps = {hold} is not below env.max_episode_steps = {steps}: no episode could "
                    "last long enough to succeed"))
    return out


def inert_env_keys(species: str, kwargs: Mapping[str, Any]) -> dict[str, str]:
    """``{key: why its value has no effect}`` for set values of a complete ``[env]`` table that the env ignores:
    the species' target placement and weights on a task without a target, push timing without pushes."""
    out: dict[str, str] = {}
    task = kwargs.get("task")
    if species in SPECIES_RULES and task is not None and task != SPECIES[species].behaviour:
        for key in SPECIES_RULES[species]:
            if kwargs.get(key) is not None:
                out[key] = (f"has no effect: task {task!r} has no target (only {SPECIES[species].behaviour!r} "
                            "places one)")
    if kwargs.get("push_force") == 0:
        for key in ("push_interval", "push_duration"):
            if kwargs.get(key) is not None:
                out[key] = "has no effect: env.push_force is 0 (no pushes)"
    return out


def check_env_kwargs(species: str, kwargs: Mapping[str, Any]) -> None:
    """Raise :class:`~dinosim.errors.InvalidValue` (a ``ValueError``) for the first bad value of ``kwargs``."""
    problems = env_problems(species, kwargs) + env_combination_problems(kwargs)
    if problems:
        raise InvalidValue(problems[0][1])
