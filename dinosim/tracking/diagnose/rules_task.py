"""Behaviour-stage and algorithm-level rules: each is ``rule(data) -> Symptom | None``; thresholds are the
constants below and docs/diagnose.md explains each (the rule, its thresholds, why)."""

from __future__ import annotations

import math
import re
from typing import Optional

from dinosim.tracking.diagnose.data import EVAL_LENGTH, EVAL_REWARD, EVAL_SUCCESS, StageData
from dinosim.tracking.diagnose.measure import (
    component,
    has_target,
    mean,
    positive_total,
    recent_length,
    recent_success,
    share,
    steps_span,
    weight,
)
from dinosim.tracking.diagnose.model import Suggest, Symptom, behaviour_keys, confidence, rule

NEVER_EVALS = 3  # never_triggers: at least this many evaluations, none with a success ...
APPROACH_FLAT = 0.05  # ... and the approach reward at most this share of the positive reward
PROXIMITY_SHARE = 0.2  # hovering: proximity reward at least this share of the positive reward, or ...
HOVER_PROXIMITY = math.exp(-2.0)  # ... mean exp(-distance / reach scale) at least this (within ~2 reach scales) ...
HOVER_SUCCESS = 0.2  # ... success rate below this ...
HOVER_LENGTH = 0.5  # ... and episodes at least this fraction of max_episode_steps (it waits, it does not fall)
FORGET_DROP = 0.5  # forgets_walking: early episodes of the stage below this x the previous stage's (as fractions),
# with no success in them; "early" is the warm-up/ramp, and at least the first FORGET_EVALS screenings: the first
# updates can take a few rollouts to undo a warm start (a T-Rex stander kept 82 % episodes for 50k steps, then 12 %)
FORGET_EVALS = 4
REGRESS_EVALS = 4  # regression: at least this many evaluations, two or more after the peak ...
REGRESS_DROP = 0.5  # ... and the recent value at most this x the peak (success) / peak - this x |peak| (return)
REGRESS_PEAK_SUCCESS = 0.3  # a success peak must reach this to count
COLLAPSE_FRACTION = 0.2  # entropy_collapse: policy std (PPO) / ent_coef (SAC) below this x its first value ...
COLLAPSE_EARLY = 0.5  # ... within this fraction of the stage's steps
VALUE_BLOWUP = 10.0  # value_loss_exploding: a later value-loss point at least this x the median of the first quarter
VALUE_POINTS = 4  # ... with at least this many logged points
NAN_PATTERN = re.compile(r"\b(NaN|nan|inf|non-finite)\b")
BONUS_MARGIN = 2.0  # bonus_too_small: the suggested bonus, as a multiple of the standby value
ENT_COEF_FALLBACK = 0.001  # entropy_collapse with ent_coef = 0: the smallest non-zero ent_coef of the committed configs


@rule("behaviour.never_triggers")
def never_triggers(d: StageData) -> Optional[Symptom]:
    successes = d.eval_values(EVAL_SUCCESS)
    if not has_target(d) or len(d.evals) < NEVER_EVALS or any(v > 0 for v in successes):
        return None
    approach = component(d, "approach")
    flat = approach / positive_total(d)
    if flat > APPROACH_FLAT:
        return None
    keys = behaviour_keys(d.species)
    s = Suggest(d)
    for role in ("bonus", "approach"):
        if role in keys:
            s.scale_env(keys[role], 2.0)
    s.scale_env("alive_bonus", 0.5).scale_env("forward_vel_weight", 0.5)
    return Symptom(d.stage, confidence(min(1.0, -flat / APPROACH_FLAT + 1.0), len(d.evals), 6),
                   "never triggers the target: no success, approach reward flat or negative",
                   [f"success 0 in all {len(d.evals)} evaluations (to step {d.evals[-1]['global_step']})",
                    f"per episode: approach {approach:.1f}, forward {component(d, 'forward'):.1f}, "
                    f"alive {component(d, 'alive'):.1f}, proximity {component(d, 'proximity'):.1f} ({steps_span(d)})"],
                   {"evaluations": len(d.evals), "approach": approach, "approach_share": flat,
                    "forward": component(d, "forward"), "alive": component(d, "alive")}, s.out)


@rule("behaviour.hovering")
def hovering(d: StageData) -> Optional[Symptom]:
    if not has_target(d) or not d.evals:
        return None
    prox, success, length = share(d, "proximity"), recent_success(d), recent_length(d) or 0.0
    keys = behaviour_keys(d.species)
    w = weight(d, keys.get("proximity", ""))
    near = component(d, "proximity") / (w * length) if w > 0 and length else 0.0
    if ((prox < PROXIMITY_SHARE and near < HOVER_PROXIMITY) or success >= HOVER_SUCCESS
            or length < HOVER_LENGTH * d.max_steps):
        return None
    s = Suggest(d)
    if "proximity" in keys:
        s.scale_env(keys["proximity"], 0.5)
    if "bonus" in keys:
        s.scale_env(keys["bonus"], 2.0)
    s.env("max_episode_steps", max(1, int(d.max_steps * 0.75)))
    return Symptom(d.stage, confidence(max(prox / PROXIMITY_SHARE, near / HOVER_PROXIMITY) - 1.0, len(d.evals)),
                   "hovers near the target without touching: proximity reward large, success rare",
                   [f"proximity {component(d, 'proximity'):.1f} per episode = {prox:.0%} of the positive reward, "
                    f"mean exp(-distance / reach scale) {near:.3f}, success {success:.0%}, episodes {length:.0f} of "
                    f"{d.max_steps} steps ({steps_span(d)})"],
                   {"proximity_share": prox, "mean_proximity": near, "success_rate": success,
                    "mean_ep_length": length}, s.out)


@rule("behaviour.forgets_walking")
def forgets_walking(d: StageData) -> Optional[Symptom]:
    prev = d.previous
    if prev is None or not prev.evals or not d.evals:
        return None
    prev_frac = (mean(prev.eval_values(EVAL_LENGTH)[-2:]) or 0.0) / prev.max_steps
    eval_freq = int(d.curriculum("eval_freq", 0) or 0)
    window = max([int(d.curriculum(key, 0) or 0) for key in
                  ("warmup_timesteps", "ramp_timesteps", "critic_warmup_timesteps")] + [FORGET_EVALS * eval_freq])
    early = [r for r in d.evals if int(r["global_step"]) <= d.start_step + window] or d.evals[:1]
    early_frac = min(float(r.get(EVAL_LENGTH, 0.0)) for r in early) / d.max_steps
    early_success = max(float(r.get(EVAL_SUCCESS) or 0.0) for r in early)
    if early_frac >= FORGET_DROP * prev_frac or early_success > 0:  # a success means it reached the target
        return None
    cur_warm = int(d.curriculum("warmup_timesteps", 0) or 0)
    cur_ramp = int(d.curriculum("ramp_timesteps", 0) or 0)
    rollout = int(d.algo("n_steps", 0) or 0) * d.n_envs or eval_freq
    s = Suggest(d)
    s.curriculum("ramp_timesteps", 2 * cur_ramp if cur_ramp else 4 * eval_freq or None)
    if d.algorithm == "ppo":  # the warm-up keys are PPO-only (PPO_ONLY_KEYS): an override for SAC is refused
        s.curriculum("warmup_timesteps", 2 * cur_warm if cur_warm else 2 * rollout or None)
        cur_critic = int(d.curriculum("critic_warmup_timesteps", 0) or 0)
        s.curriculum("critic_warmup_timesteps", 2 * cur_critic if cur_critic else rollout or None)
        clip = d.curriculum("warmup_clip_range") or d.algo("clip_range")
        if isinstance(clip, (int, float)):
            s.curriculum("warmup_clip_range", float(clip) * 0.5)
    return Symptom(d.stage,
                   confidence(1.0 - early_frac / (FORGET_DROP * prev_frac), len(early)),
                   f"forgets stage {prev.stage}'s skill after the switch: episodes collapse early in the stage",
                   [f"stage {prev.stage} ended with episodes of {prev_frac:.0%} of its max length; in the first "
                    f"{window} steps of stage {d.stage} they fell to {early_frac:.0%} ({len(early)} evals)"],
                   {"previous_fraction": prev_frac, "early_fraction": early_frac, "window_steps": window}, s.out)


@rule("behaviour.regression")
def regression(d: StageData) -> Optional[Symptom]:
    success = d.eval_values(EVAL_SUCCESS)
    use_success = bool(success) and max(success) >= REGRESS_PEAK_SUCCESS
    values = success if use_success else d.eval_values(EVAL_REWARD)
    if len(values) < REGRESS_EVALS:
        return None
    peak_at = max(range(len(values)), key=values.__getitem__)
    peak, recent = values[peak_at], mean(values[-2:]) or 0.0
    if len(values) - 1 - peak_at < 2 or peak <= 0:
        return None
    limit = REGRESS_DROP * peak if use_success else peak - REGRESS_DROP * abs(peak)
    if recent > limit:
        return None
    steps = d.eval_steps(EVAL_SUCCESS if use_success else EVAL_REWARD)
    lr, clip = d.algo("learning_rate"), d.algo("clip_range")
    s = Suggest(d)
    if isinstance(lr, (int, float)):
        s.algo("learning_rate_end", float(lr) * 0.1)
    if d.algorithm == "ppo" and isinstance(clip, (int, float)):
        s.algo("clip_range_end", float(clip) * 0.5)
    what = "success rate" if use_success else "return"
    return Symptom(d.stage, confidence(1.0 - recent / max(limit, 1e-9), len(values) - peak_at, 3),
                   f"learns then regresses: the {what} falls after a peak",
                   [f"{what} peaked at {peak:.2f} (step {steps[peak_at]}), recent {recent:.2f} "
                    f"(last 2 evals to step {steps[-1]})"],
                   {"metric": what, "peak": peak, "peak_step": steps[peak_at], "recent": recent}, s.out)


@rule("behaviour.bonus_too_small")
def bonus_too_small(d: StageData) -> Optional[Symptom]:
    from dinosim.envs.rewards import standby_value  # the one rule, shared with the committed-config tests

    keys = behaviour_keys(d.species)
    bonus = weight(d, keys.get("bonus", ""))
    if not has_target(d) or "bonus" not in keys:
        return None
    gate_success = d.curriculum("min_success_rate") or 0.6
    if d.evals and recent_success(d) >= gate_success:
        return None
    gamma = float(d.algo("gamma", 0.99) or 0.99)
    standby = standby_value(d.env, keys.get("proximity", ""), gamma)
    if bonus >= standby:
        return None
    s = Suggest(d).env(keys["bonus"], BONUS_MARGIN * standby).scale_env("alive_bonus", 0.5)
    evidence = [f"{keys['bonus']} = {bonus:g} against {standby:.1f}, the discounted per-step pay of an episode "
                f"without the behaviour (alive, posture, forward and proximity weights at their maximum, "
                f"gamma {gamma:g} over {d.max_steps} steps)"]
    if d.evals:
        evidence.append(f"recent success {recent_success(d):.0%} against the gate's {gate_success:g} "
                        f"({steps_span(d)})")
    return Symptom(d.stage, confidence(standby / max(bonus, 1e-9) - 1.0, len(d.evals)),
                   "the success bonus does not dominate the discounted per-step rewards", evidence,
                   {"gamma": gamma, "bonus": bonus, "standby_value": standby, "max_episode_steps": d.max_steps,
                    "success_rate": recent_success(d) if d.evals else None}, s.out)


@rule("algorithm.budget_below_rollout")
def budget_below_rollout(d: StageData) -> Optional[Symptom]:
    budget = d.budget
    if budget <= 0:
        return None
    s = Suggest(d)
    if d.algorithm == "ppo":
        n_steps, batch = int(d.algo("n_steps", 2048)), int(d.algo("batch_size", 64))
        rollout = n_steps * d.n_envs
        if budget >= rollout:
            return None
        new_steps = max(1, budget // (4 * d.n_envs))
        s.algo("n_steps", new_steps).algo("batch_size", _divisor_at_most(new_steps * d.n_envs, batch))
        what, limit = f"one PPO rollout (n_steps {n_steps} x {d.n_envs} envs = {rollout})", rollout
    else:
        starts = int(d.algo("learning_starts", 100))
        if budget > starts:
            return None
        s.algo("learning_starts", max(1, budget // 10))
        what, limit = f"learning_starts = {starts}", starts
    return Symptom(d.stage, confidence(1.0 - budget / limit),
                   "training budget shorter than one rollout / than learning_starts",
                   [f"budget {budget} steps is below {what}: the policy gets at most one update"],
                   {"budget": budget, "limit": limit}, s.out)


@rule("algorithm.entropy_collapse")
def entropy_collapse(d: StageData) -> Optional[Symptom]:
    tag = "train/std" if d.algorithm == "ppo" else "train/ent_coef"
    series = d.scalar(tag)
    if d.gate_passed or not series or len(series) < 2:
        return None
    first, span = series.values[0], max(d.end_step - d.start_step, 1)
    early = [(st, v) for st, v in zip(series.steps, series.values) if st - d.start_step <= COLLAPSE_EARLY * span]
    low = min(early, key=lambda p: p[1], default=None)
    if low is None or first <= 0 or low[1] > COLLAPSE_FRACTION * first:
        return None
    s = Suggest(d).scale_algo("learning_rate", 0.5)
    ent = d.algo("ent_coef")
    if d.algorithm == "ppo":
        s.algo("ent_coef", float(ent) * 5.0 if isinstance(ent, (int, float)) and ent > 0 else ENT_COEF_FALLBACK)
    return Symptom(d.stage, confidence(1.0 - low[1] / (COLLAPSE_FRACTION * first)),
                   "entropy collapse: exploration noise near its floor early",
                   [f"{tag} fell from {first:.3g} to {low[1]:.3g} by step {low[0]} "
                    f"({(low[0] - d.start_step) / span:.0%} into the stage), gate not passed"],
                   {"tag": tag, "first": first, "low": low[1], "low_step": low[0]}, s.out)


@rule("algorithm.value_loss_exploding")
def value_loss_exploding(d: StageData) -> Optional[Symptom]:
    tag = "train/value_loss" if d.algorithm == "ppo" else "train/critic_loss"
    series = d.scalar(tag)
    if not series or len(series) < VALUE_POINTS:
        return None
    quarter = sorted(series.values[: max(1, len(series) // 4)])
    base = quarter[len(quarter) // 2]
    later = list(zip(series.steps, series.values))[len(series) // 4:]
    worst = max(later, key=lambda p: p[1])
    if base <= 0 or worst[1] < VALUE_BLOWUP * base:
        return None
    s = Suggest(d).scale_algo("learning_rate", 0.5)
    if d.algorithm == "ppo":
        s.scale_algo("vf_coef", 0.5).scale_algo("max_grad_norm", 0.5)
    else:
        s.scale_algo("tau", 0.5)
    return Symptom(d.stage, confidence(worst[1] / (VALUE_BLOWUP * base) - 1.0),
                   "value loss exploding",
                   [f"{tag} reached {worst[1]:.3g} at step {worst[0]}, {worst[1] / base:.0f}x the early median "
                    f"{base:.3g}"], {"tag": tag, "early_median": base, "peak": worst[1], "peak_step": worst[0]}, s.out)


@rule("algorithm.nan_guard")
def nan_guard(d: StageData) -> Optional[Symptom]:
    message = d.run_message
    if d.run_status != "failed" or not NAN_PATTERN.search(message) or f"stage {d.stage}," not in message:
        return None
    s = Suggest(d).scale_algo("learning_rate", 0.3)
    if d.algorithm == "ppo":
        s.scale_algo("max_grad_norm", 0.5).scale_algo("clip_range", 0.5)
    return Symptom(d.stage, 1.0, "NaN guard triggered: training stopped on a non-finite value",
                   [f"summary.json: {message}"], {"message": message}, s.out)


def _divisor_at_most(total: int, limit: int) -> int:
    """The largest divisor of ``total`` that is at most ``limit`` (a batch size that splits the rollout)."""
    for b in range(min(limit, total), 0, -1):
        if total % b == 0:
            return b
    return 1


RULES = (never_triggers, hovering, forgets_walking, regression, bonus_too_small, budget_below_rollout,
         entropy_collapse, value_loss_exploding, nan_guard)
