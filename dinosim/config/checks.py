"""Every value and combination check of one resolved stage, in one place (standard library only).

:func:`stage_problems` runs the rules each consumer owns (:mod:`~dinosim.config.env_rules`,
:mod:`~dinosim.config.algo_rules`, :mod:`~dinosim.config.curriculum_rules`) on the sections the run uses, then the
checks across sections and against ``n_envs``. ``resolve_run`` calls it for every stage. The checks against the
step budget (:func:`stage_budget_problems`) need the budget the run will use, so the run's preflight
(:func:`dinosim.training.preflight.preflight`) calls them: ``--dry-run``, the real run (from the CLI or a
``RunRequest`` built in code) and ``sweep validate`` reject the same things. :func:`not_read` says which keys of a
section the algorithm reads; :func:`network_of` what a warm start needs to match.
"""

from __future__ import annotations

from typing import Any, Optional

from dinosim.config.algo_rules import ALGORITHM_RULES, POLICY_RULES, algo_combination_problems, algo_problems
from dinosim.config.curriculum_rules import (
    CURRICULUM_RULES,
    PPO_ONLY_KEYS,
    curriculum_budget_problems,
    curriculum_combination_problems,
    curriculum_problems,
)
from dinosim.config.env_rules import env_combination_problems, env_problems, env_rules
from dinosim.config.rules import Number, Problem, Rule
from dinosim.config.schema import section_keys

MAX_SEED = 2**31 - 1  # seeds of the eval envs are seed + 10_000 + i; numpy refuses seeds >= 2**32
SEED_RULE = Number(0, MAX_SEED, integer=True)
N_ENVS_RULE = Number(1, 256, integer=True)


INHERITS_SAC = ("tqc", "crossq")
"""Algorithms that read ``[sac]`` first, then their own section."""


def inherit(base: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """``own`` over ``base``; a table in both (``policy_kwargs``) merges key by key, like a table override."""
    merged = dict(base)
    for key, value in own.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = inherit(merged[key], value)
        else:
            merged[key] = value
    return merged


def algorithm_values(config: dict[str, dict[str, Any]], algorithm: str) -> tuple[str, dict[str, Any]]:
    """(section named in messages, constructor + schedule values): tqc/crossq read ``[sac]``, then their own."""
    if algorithm in INHERITS_SAC:
        return algorithm, inherit(config.get("sac", {}), config.get(algorithm, {}))
    return algorithm, dict(config.get(algorithm, {}))


def not_read(section: str, key: str, algorithm: str, species: str) -> Optional[str]:
    """Why a run of ``algorithm`` does not read ``section.key`` although the section is one it reads (None: it
    does): a PPO-only ``[curriculum]`` key, or a ``[sac]`` key that tqc/crossq's constructor does not take."""
    if section == "curriculum" and algorithm != "ppo" and key in PPO_ONLY_KEYS:
        return f"PPO only: {PPO_ONLY_KEYS[key]}"
    if section == "sac" and algorithm in INHERITS_SAC and key not in section_keys(algorithm, species):
        return f"the {algorithm} constructor has no {key} argument"
    return None


def drop_unread(config: dict[str, dict[str, Any]], algorithm: str, species: str) -> list[str]:
    """Remove the stage-file values ``algorithm`` does not read (see :func:`not_read`); their dotted keys."""
    dropped = []
    for section in ("curriculum", "sac"):
        table = config.get(section, {})
        for key in [k for k in table if not_read(section, k, algorithm, species)]:
            del table[key]
            dropped.append(f"{section}.{key}")
    return dropped


def section_rules(section: str, species: str) -> tuple[dict[str, Rule], dict[str, Rule]]:
    """(rules of a section's keys, rules of its ``policy_kwargs`` keys) as ``dinosim config keys`` shows them."""
    if section in ALGORITHM_RULES:
        return ALGORITHM_RULES[section], POLICY_RULES[section]
    if section == "env":
        return env_rules(species), {}
    return dict(CURRICULUM_RULES), {}


def run_option_problems(seed: Any, n_envs: Any) -> list[Problem]:
    """Problems of the run-wide options ``--seed`` and ``--n-envs``."""
    out: list[Problem] = []
    for name, rule, value in (("seed", SEED_RULE, seed), ("n_envs", N_ENVS_RULE, n_envs)):
        reason = rule.problem(value)
        if reason is not None:
            option = f"--{name.replace('_', '-')}"
            out.append((name, f"{option} {value!r} {reason}"))
    return out


def stage_problems(config: dict[str, dict[str, Any]], species: str, algorithm: str, n_envs: int) -> list[Problem]:
    """Every problem of one stage's resolved sections that does not depend on its step budget (see
    :func:`stage_budget_problems`, which the run's preflight calls with the budget the run will use)."""
    section, algo = algorithm_values(config, algorithm)
    env, curriculum = config.get("env", {}), config.get("curriculum", {})
    out = algo_problems(algorithm, section, algo)
    out += env_problems(species, env) + curriculum_problems(curriculum)
    if out:  # the checks below assume every single value is good
        return out
    out += algo_combination_problems(algorithm, section, algo, n_envs)
    out += env_combination_problems(env) + curriculum_combination_problems(species, curriculum, env)
    return out


def stage_budget_problems(config: dict[str, dict[str, Any]], algorithm: str, n_envs: int,
                          budget: int, warm_started: bool = True) -> list[Problem]:
    """Problems of one stage's ``budget`` (steps it will train) against its resolved sections: too small for the
    algorithm to learn anything, below ``curriculum.eval_freq`` (the stage would never evaluate), or shorter than
    a start-of-stage phase (warm-up, ramp, critic warm-up; the last two only when the stage is ``warm_started``)."""
    section, algo = algorithm_values(config, algorithm)
    out = budget_problems(algorithm, section, algo, n_envs, budget)
    eval_freq = config.get("curriculum", {}).get("eval_freq")
    if isinstance(eval_freq, int) and eval_freq > budget:
        out.append(("budget|curriculum.eval_freq",
                    f"curriculum.eval_freq = {eval_freq} is above the budget of {budget} "
                    "steps: the stage would never evaluate, so its gate could not pass and no best/ policy would "
                    "be kept; lower curriculum.eval_freq"))
    return out + curriculum_budget_problems(config.get("curriculum", {}), budget, warm_started)


def budget_problems(algorithm: str, section: str, algo: dict[str, Any], n_envs: int, budget: int) -> list[Problem]:
    """A budget too small for the algorithm to learn anything: below one PPO rollout, or not above the off-policy
    ``learning_starts`` (no gradient step would run)."""
    if algorithm == "ppo":
        rollout = int(algo.get("n_steps", 2048)) * n_envs
        if budget < rollout:
            return [("budget", f"the budget of {budget} steps is below one PPO rollout ({section}.n_steps * n_envs "
                     f"= {rollout}): SB3 would collect a whole rollout anyway; raise the budget or lower "
                     f"{section}.n_steps")]
        return []
    starts = int(algo.get("learning_starts", 100))
    if budget <= starts:
        return [("budget", f"the budget of {budget} steps is not above {section}.learning_starts = {starts}: no "
                 f"gradient step would run; raise the budget or lower {section}.learning_starts")]
    return []


NETWORK_KEYS = ("net_arch", "n_critics", "n_quantiles", "batch_norm", "full_std")
"""``policy_kwargs`` keys that fix the shapes of a policy's weights (with the algorithm's ``use_sde``)."""


def network_of(config: dict[str, dict[str, Any]], algorithm: str) -> dict[str, Any]:
    """What a warm start needs to match: the stage's shape-giving ``policy_kwargs`` and ``use_sde`` (set values)."""
    _, algo = algorithm_values(config, algorithm)
    policy = algo.get("policy_kwargs") or {}
    out = {f"policy_kwargs.{k}": policy[k] for k in NETWORK_KEYS if policy.get(k) is not None}
    if algo.get("use_sde"):
        out["use_sde"] = True
    return out


def network_change(previous: dict[str, Any], current: dict[str, Any]) -> Optional[tuple[str, str]]:
    """(key path, ``now X, before Y``) of the first difference between two :func:`network_of` results, or None."""
    for key in sorted(set(previous) | set(current)):
        if previous.get(key) != current.get(key):
            return key, f"{current.get(key)!r} here, {previous.get(key)!r} in the policy it starts from"
    return None
