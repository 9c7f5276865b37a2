"""Run evaluation episodes and summarise them (return, length, success, every reward component).

Reward components are the ``reward_<term>`` keys of each step's ``info`` (they sum to the step reward); an
episode's component value is the sum over its steps. Success is the ``is_success`` flag of an episode's last
step's info; envs that never report it have no success rate (``None``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.vec_env import VecEnv

REWARD_PREFIX = "reward_"


def reward_components(info: dict[str, Any]) -> dict[str, float]:
    """``{term: value}`` for every ``reward_<term>`` key of one step's info."""
    out = {}
    for key, value in info.items():
        if key.startswith(REWARD_PREFIX) and isinstance(value, (int, float, np.floating, np.integer)):
            out[key[len(REWARD_PREFIX):]] = float(value)
    return out


@dataclass
class EvalResult:
    """Per-episode results of one evaluation."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    successes: list[Optional[bool]] = field(default_factory=list)
    components: list[dict[str, float]] = field(default_factory=list)

    @property
    def mean_reward(self) -> float:
        return float(np.mean(self.returns)) if self.returns else math.nan

    @property
    def std_reward(self) -> float:
        return float(np.std(self.returns)) if self.returns else math.nan

    @property
    def mean_length(self) -> float:
        return float(np.mean(self.lengths)) if self.lengths else math.nan

    @property
    def success_rate(self) -> Optional[float]:
        known = [s for s in self.successes if s is not None]
        return float(np.mean(known)) if known else None

    def component_means(self) -> dict[str, float]:
        """Mean per-episode sum of each reward component (a component missing in an episode counts as 0)."""
        terms = sorted({t for c in self.components for t in c})
        n = max(len(self.components), 1)
        return {t: float(sum(c.get(t, 0.0) for c in self.components) / n) for t in terms}

    def metrics(self) -> dict[str, Any]:
        """The flat record logged and appended to metrics.jsonl (without the step/stage keys)."""
        out: dict[str, Any] = {
            "eval/mean_reward": self.mean_reward,
            "eval/std_reward": self.std_reward,
            "eval/mean_ep_length": self.mean_length,
            "eval/success_rate": self.success_rate,
        }
        for term, value in self.component_means().items():
            out[f"eval/reward/{term}"] = value
        return out


def run_episodes(model: "BaseAlgorithm", venv: "VecEnv", n_episodes: int, deterministic: bool = True) -> EvalResult:
    """Play ``n_episodes`` complete episodes spread evenly over ``venv``'s envs (like SB3's ``evaluate_policy``).

    Returns are the rewards as the VecEnv reports them (pass a VecNormalize with ``norm_reward=False`` to get raw
    returns). ``venv`` is reset first.
    """
    n_envs = venv.num_envs
    targets = np.array([(n_episodes + i) // n_envs for i in range(n_envs)], dtype=int)
    counts = np.zeros(n_envs, dtype=int)
    running_return = np.zeros(n_envs)
    running_length = np.zeros(n_envs, dtype=int)
    running_components: list[dict[str, float]] = [{} for _ in range(n_envs)]
    result = EvalResult()
    obs = venv.reset()
    state = None
    episode_starts = np.ones((n_envs,), dtype=bool)
    while (counts < targets).any():
        actions, state = model.predict(obs, state=state, episode_start=episode_starts, deterministic=deterministic)
        obs, rewards, dones, infos = venv.step(actions)
        running_return += rewards
        running_length += 1
        for i in range(n_envs):
            for term, value in reward_components(infos[i]).items():
                running_components[i][term] = running_components[i].get(term, 0.0) + value
            if dones[i]:
                if counts[i] < targets[i]:
                    success = infos[i].get("is_success")
                    result.returns.append(float(running_return[i]))
                    result.lengths.append(int(running_length[i]))
                    result.successes.append(None if success is None else bool(success))
                    result.components.append(running_components[i])
                    counts[i] += 1
                running_return[i] = 0.0
                running_length[i] = 0
                running_components[i] = {}
        episode_starts = dones
    return result


def format_report(result: EvalResult, title: str) -> str:
    """Human-readable lines: return ± std, length, success rate, each component's mean per-episode sum."""
    lines = [
        title,
        f"  episodes         {len(result.returns)}",
        f"  return           {result.mean_reward:.2f} ± {result.std_reward:.2f}",
        f"  episode length   {result.mean_length:.1f} ± {float(np.std(result.lengths)) if result.lengths else 0:.1f}",
        "  success rate     " + ("n/a (env reports no is_success)" if result.success_rate is None
                                   else f"{100 * result.success_rate:.1f}%"),
        "  reward components (mean per-episode sum):",
    ]
    means = result.component_means()
    width = max((len(t) for t in means), default=0)
    lines += [f"    {term:<{width}}  {value:12.3f}" for term, value in means.items()] or ["    (none reported)"]
    return "\n".join(lines)
