"""Rules for the ``[curriculum]`` values (the fields of :class:`dinosim.config.settings.CurriculumSettings`).

A rules table next to the dataclass rather than inside it, so the settings module stays a plain list of fields;
the test suite requires a rule for every field. :func:`curriculum_combination_problems` checks the gate against the
stage's ``[env]`` (a gate no episode can pass).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from dinosim.config.env_rules import SPECIES_RULES, tasks
from dinosim.config.rules import Flag, Number, OneOf, Problem, Rule, message, table_problems

NEW_INPUTS = ("carry", "zero", "fresh")
"""``new_inputs`` values (:mod:`dinosim.training.new_inputs`): the previous stage's statistics and weights as they
are (the default: a target enters at the clip value), the new stage's statistics and zero first-layer weights (the
networks start as the previous stage's), or the new stage's statistics and the weights as they are (never
trained)."""

_STEPS = Number(1, integer=True)
_OPTIONAL_STEPS = Number(0, integer=True)

CURRICULUM_RULES: dict[str, Rule] = {
    "timesteps": _STEPS,
    "min_avg_reward": Number(),
    "min_avg_episode_length": Number(0.0),
    "min_success_rate": Number(0.0, 1.0),
    "required_consecutive": Number(1, 1000, integer=True),
    "eval_freq": _STEPS,
    "eval_episodes": Number(1, 10_000, integer=True),
    "eval_deterministic": Flag(),
    "gate_episodes": Number(1, 100_000, integer=True),
    "gate_confidence": Number(0.5, 1.0, hi_open=True),
    "eval_envs": Number(1, 256, integer=True),
    "background_eval": Flag(auto=True),
    "eval_early_stop": Flag(),
    "save_freq": _STEPS,
    "keep_checkpoints": Number(1, integer=True),
    "warmup_timesteps": _OPTIONAL_STEPS,
    "warmup_clip_range": Number(0.0, 1.0, lo_open=True),
    "warmup_ent_coef": Number(0.0, 1.0),
    "ramp_timesteps": _OPTIONAL_STEPS,
    "critic_warmup_timesteps": _OPTIONAL_STEPS,
    "obs_norm_count": Number(0.0, lo_open=True),
    "new_inputs": OneOf(NEW_INPUTS, "a way to start inputs the previous stage never saw vary"),
    "anchor_coef": Number(0.0),
    "anchor_timesteps": _OPTIONAL_STEPS,
    "warm_start_stage": Number(0, integer=True),
}
"""Rules of every ``[curriculum]`` key."""

PPO_ONLY_KEYS: dict[str, str] = {
    "warmup_timesteps": "it times warmup_clip_range and warmup_ent_coef, which only PPO has",
    "warmup_clip_range": "SAC, TQC and CrossQ have no clip range",
    "warmup_ent_coef": "SAC, TQC and CrossQ fix or learn ent_coef when the model is built",
    "critic_warmup_timesteps": "it freezes the actor of PPO's actor-critic; the off-policy algorithms have no such "
                               "warm-up",
    "anchor_coef": "it adds a KL penalty to PPO's loss; the off-policy algorithms have no such term",
    "anchor_timesteps": "it times anchor_coef, which only PPO reads",
}
"""``[curriculum]`` keys only PPO reads, with the reason. For sac/tqc/crossq an override of one is refused and a
stage file's value is left out of the resolved config (the stage files serve every algorithm, like their
``[ppo]`` and ``[sac]`` tables)."""


def curriculum_problems(values: Mapping[str, Any]) -> list[Problem]:
    """Problems of the keys of a ``[curriculum]`` table."""
    return table_problems("curriculum", CURRICULUM_RULES, values)


def curriculum_combination_problems(species: str, curriculum: Mapping[str, Any],
                                    env: Mapping[str, Any]) -> list[Problem]:
    """A gate that no evaluation could pass with this stage's ``[env]``."""
    out: list[Problem] = []
    length, steps = curriculum.get("min_avg_episode_length"), env.get("max_episode_steps")
    if isinstance(length, (int, float)) and isinstance(steps, int) and length > steps:
        out.append(("curriculum.min_avg_episode_length|env.max_episode_steps", message(
            "curriculum.min_avg_episode_length", length,
            f"is above env.max_episode_steps = {steps}: the gate could never pass")))
    success, task = curriculum.get("min_success_rate"), env.get("task")
    behaviour = tasks(species)[-1] if species in SPECIES_RULES else None
    if isinstance(success, (int, float)) and success > 0 and task is not None and task != behaviour:
        out.append(("curriculum.min_success_rate|env.task", message(
            "curriculum.min_success_rate", success,
            f"needs a task with a target ({behaviour!r}); task {task!r} reports no success, so the gate could never "
            "pass")))
    return out


def eval_envs_cap(curriculum: Mapping[str, Any]) -> Optional[tuple[int, str]]:
    """``(most envs an evaluation can use, why)`` when ``eval_envs`` is above it, else None. An evaluation plays
    one episode per env at a time: envs beyond ``max(eval_episodes, gate_episodes)`` are never stepped."""
    envs, screen, gate = (curriculum.get(k) for k in ("eval_envs", "eval_episodes", "gate_episodes"))
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (envs, screen, gate)):
        return None
    most = max(screen, gate)
    if envs <= most:
        return None
    return most, (f"an evaluation plays at most {most} episodes (eval_episodes {screen}, gate_episodes {gate}), "
                  "one per env at a time")


WARM_START_KEYS = ("critic_warmup_timesteps", "obs_norm_count", "new_inputs", "ramp_timesteps",
                   "anchor_coef", "anchor_timesteps")
"""``[curriculum]`` keys that act only on a stage that starts from a previous policy (an earlier stage of the run,
see :func:`warm_start_source`, or ``--init-from`` for its first stage)."""


_PHASES: dict[str, str] = {
    "warmup_timesteps": "the warm-up (small PPO updates) would outlast the stage",
    "ramp_timesteps": "the stage would end before its [env] values reach the stage's own",
    "critic_warmup_timesteps": "the actor would never train: the critic warm-up freezes it for the whole stage",
    "anchor_timesteps": "the pull towards the start policy would not have decayed to 0 when the stage ends (0 keeps "
                        "anchor_coef for the whole stage)",
}
"""Phases a stage goes through at its start, each measured in steps: ``{key: what goes wrong past the budget}``."""


def curriculum_budget_problems(curriculum: Mapping[str, Any], budget: int, warm_started: bool) -> list[Problem]:
    """A start-of-stage phase longer than the stage's ``budget`` (a critic warm-up as long as it): the stage
    would end inside it. A phase that has no effect (:func:`inert_curriculum_keys`: a warm-start phase of a stage
    that is not warm-started, a warm-up without warm-up values) is not checked."""
    out: list[Problem] = []
    inert = inert_curriculum_keys(0, curriculum, warm_started)
    for key, why in _PHASES.items():
        steps = curriculum.get(key)
        if not isinstance(steps, int) or not steps or key in inert:
            continue
        whole_stage = key == "critic_warmup_timesteps"  # as long as the budget is already too long
        if steps > budget or (whole_stage and steps == budget):
            relation = "is not below" if whole_stage else "is above"
            out.append((f"curriculum.{key}|budget", message(
                f"curriculum.{key}", steps, f"{relation} the stage's budget of {budget} steps: {why}; lower it or "
                "raise the budget (--timesteps or curriculum.timesteps)")))
    return out


def inert_curriculum_keys(stage: int, curriculum: Mapping[str, Any], warm_started: bool,
                          first: bool = False) -> dict[str, str]:
    """``{key: why its value has no effect}`` for the values of a stage's ``[curriculum]`` that training would
    ignore: a warm-up value without ``warmup_timesteps``, a warm-start key on a stage that is not warm-started,
    ``warm_start_stage`` on the first stage a command runs (``first``)."""
    out: dict[str, str] = {}
    if first and curriculum.get("warm_start_stage") is not None:
        out["warm_start_stage"] = (f"has no effect in stage {stage}: it is the first stage this command runs (it "
                                   "starts from --init-from if given, else from scratch)")
    warmup_values = ("warmup_clip_range", "warmup_ent_coef")
    if not curriculum.get("warmup_timesteps"):
        for key in warmup_values:
            if curriculum.get(key) is not None:
                out[key] = f"has no effect in stage {stage}: its curriculum.warmup_timesteps is 0 (set both)"
    elif all(curriculum.get(key) is None for key in warmup_values):
        out["warmup_timesteps"] = (f"has no effect in stage {stage}: neither curriculum.warmup_clip_range nor "
                                   "curriculum.warmup_ent_coef is set")
    if curriculum.get("anchor_timesteps") and not curriculum.get("anchor_coef"):
        out["anchor_timesteps"] = f"has no effect in stage {stage}: its curriculum.anchor_coef is 0 (set both)"
    if not warm_started:
        for key in WARM_START_KEYS:
            if curriculum.get(key):
                out[key] = (f"has no effect in stage {stage}: it does not start from a previous policy (the "
                            "first stage this command runs without --init-from, or curriculum.warm_start_stage = 0)")
    return out


def warm_start_source(stage: int, stages: Sequence[int], wanted: Optional[int]) -> tuple[Optional[int], str]:
    """(the stage of this run whose final policy ``stage`` starts from, or None; a problem, or "").

    ``wanted`` is the stage's ``curriculum.warm_start_stage``: None means the previous stage of the run, 0 means
    none (from scratch), k an earlier stage k, which the run must train before ``stage``. The run's first stage
    starts from ``--init-from`` if given, whatever ``wanted`` says (see :func:`inert_curriculum_keys`).
    """
    earlier = [s for s in stages if s < stage]
    if wanted is not None and not 0 <= wanted < stage:
        return None, (f"curriculum.warm_start_stage = {wanted} must be an earlier stage (1-{stage - 1}) or 0 (from "
                      f"scratch)" if stage > 1 else f"curriculum.warm_start_stage = {wanted}: stage 1 has no earlier "
                      "stage (remove the key)")
    if not earlier or wanted == 0:
        return None, ""
    if wanted is None:
        return earlier[-1], ""
    if wanted not in earlier:
        return None, (f"curriculum.warm_start_stage = {wanted}: this run does not train stage {wanted} before stage "
                      f"{stage} (stages {', '.join(map(str, stages))}); run it too, or override {stage}.curriculum."
                      f"warm_start_stage with a stage this run trains before it ({', '.join(map(str, earlier))}) or 0 "
                      "(from scratch)")
    return wanted, ""
