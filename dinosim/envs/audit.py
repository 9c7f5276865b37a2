"""Audit: do trivial policies pass a stage's gate? They must not ("no free success").

:func:`run_audit` runs, on one species/stage with the stage's ``[env]`` kwargs, a zero-action policy, a
uniform-random policy and the best open-loop "statue" policy -- one joint held at -1 or +1, every other joint at 0,
whatever the animal senses (each of the 2 x nu candidates is screened on one episode, the best is then run like the
others) -- and checks each against the stage's gate rule (:meth:`CurriculumSettings.screen_passes`: mean return, mean
length and, where set, success rate against the thresholds). A passing row means the gate can be met without learning
anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dinosim.config.settings import CurriculumSettings, EvalStats
from dinosim.envs.factory import make_env

POLICIES: tuple[str, ...] = ("zero", "random", "constant")


@dataclass(frozen=True)
class AuditRow:
    """Result of one trivial policy on one species/stage."""

    species: str
    stage: int
    policy: str
    mean_return: float
    mean_length: float
    success_rate: float
    passed: bool  # True = the trivial policy meets the gate (a bad gate)
    detail: str = ""  # the constant action held, e.g. "knee_left=-1"


def run_policy(
    species: str, env_kwargs: dict[str, Any], policy: str, *, episodes: int = 20, seeds: tuple[int, ...] = (0, 1, 2),
    action: np.ndarray | None = None,
) -> dict[str, float]:
    """Mean return, mean length and success rate of ``policy`` ("zero", "random", or "constant" with ``action``).

    Runs ``episodes`` episodes per seed: episode ``i`` of seed ``s`` resets with seed ``s * 100_003 + i``; the random
    policy samples actions uniformly from the action space seeded the same way, so results are reproducible.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    if (policy == "constant") != (action is not None):
        raise ValueError("an action is given exactly when policy is 'constant'")
    env = make_env(species, env_kwargs)
    try:
        return _rollouts(env, policy, action, [s * 100_003 + i for s in seeds for i in range(episodes)])
    finally:
        env.close()


def _rollouts(env: Any, policy: str, action: np.ndarray | None, reset_seeds: list[int]) -> dict[str, float]:
    returns, lengths, successes = [], [], []
    fixed = np.zeros(env.action_space.shape, dtype=np.float32) if action is None else action
    for seed in reset_seeds:
        env.reset(seed=seed)
        env.action_space.seed(seed)
        total, steps, success, done = 0.0, 0, False, False
        while not done:
            action = env.action_space.sample() if policy == "random" else fixed
            _, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            steps += 1
            success = success or bool(info.get("is_success", False))
            done = terminated or truncated
        returns.append(total)
        lengths.append(steps)
        successes.append(success)
    return {
        "mean_return": float(np.mean(returns)),
        "mean_length": float(np.mean(lengths)),
        "success_rate": float(np.mean(successes)),
    }


def gate_passed(stats: dict[str, float], gate: CurriculumSettings, episodes: int) -> bool:
    """Whether ``stats`` of ``episodes`` episodes meets the screening rule of ``gate`` (point estimates: a trivial
    policy must not even reach the thresholds, let alone their lower bounds)."""
    successes = round(stats["success_rate"] * episodes) if gate.min_success_rate is not None else None
    return gate.screen_passes(EvalStats(episodes=episodes, mean_return=stats["mean_return"], std_return=0.0,
                                        mean_length=stats["mean_length"], std_length=0.0, successes=successes))


def run_audit(
    species: str,
    stage: int,
    env_kwargs: dict[str, Any],
    gate: CurriculumSettings,
    *,
    episodes: int = 20,
    seeds: tuple[int, ...] = (0, 1, 2),
) -> list[AuditRow]:
    """One :class:`AuditRow` per trivial policy ("zero", "random", "constant") for this species/stage and gate.

    Each row averages ``episodes`` episodes per seed in ``seeds`` (see :func:`run_policy`).
    """
    rows = []
    for policy in POLICIES:
        action, detail = best_constant_action(species, env_kwargs, seeds[0]) if policy == "constant" else (None, "")
        stats = run_policy(species, env_kwargs, policy, episodes=episodes, seeds=seeds, action=action)
        rows.append(AuditRow(species, stage, policy, **stats, passed=gate_passed(stats, gate, episodes * len(seeds)),
                             detail=detail))
    return rows


def best_constant_action(species: str, env_kwargs: dict[str, Any], seed: int = 0) -> tuple[np.ndarray, str]:
    """The one-joint-at-±1 constant action with the best (success rate, return) on one episode, and its label."""
    env = make_env(species, env_kwargs)
    try:
        names = [env.unwrapped.model.actuator(i).name for i in range(env.action_space.shape[0])]
        candidates = []
        for joint in range(len(names)):
            for value in (-1.0, 1.0):
                action = np.zeros(len(names), dtype=np.float32)
                action[joint] = value
                stats = _rollouts(env, "constant", action, [seed * 100_003])
                candidates.append(((stats["success_rate"], stats["mean_return"]), joint, value, action))
    finally:
        env.close()
    _, joint, value, action = max(candidates, key=lambda c: c[0])
    return action, f"{names[joint]}={value:+.0f}"


def format_audit_table(rows: list[AuditRow]) -> str:
    """Plain-text table of audit rows, with a last line counting passes (0 is the goal)."""
    header = (f"{'species':<14} {'stage':>5} {'policy':<8} {'mean_return':>12} {'mean_length':>12} {'success':>8}  "
              f"{'passed':<6}  action")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.species:<14} {r.stage:>5} {r.policy:<8} {r.mean_return:>12.2f} {r.mean_length:>12.1f} "
            f"{r.success_rate:>8.2f}  {'PASS' if r.passed else 'no':<6}  {r.detail}".rstrip()
        )
    lines.append(f"{sum(r.passed for r in rows)} of {len(rows)} trivial policies pass their gate")
    return "\n".join(lines)
