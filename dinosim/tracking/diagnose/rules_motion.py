"""Balance and locomotion rules: each is ``rule(data) -> Symptom | None``; thresholds are the constants below and
docs/diagnose.md explains each (the rule, its thresholds, why)."""

from __future__ import annotations

from typing import Optional

from dinosim.tracking.diagnose.data import EVAL_REWARD, StageData
from dinosim.tracking.diagnose.measure import (
    component,
    positive_total,
    recent_length,
    recent_return,
    recent_success,
    share,
    signal,
    steps_span,
    weight,
)
from dinosim.tracking.diagnose.model import Suggest, Symptom, confidence, rule

FALL_FRACTION = 0.2  # falls_early: recent eval episodes shorter than this fraction of max_episode_steps
FALL_SUCCESS_MAX = 0.5  # ... unless at least this success rate explains the short episodes
ALIVE_SHARE = 0.5  # drift_to_survive: alive reward at least this share of the positive reward ...
DRIFT_LIMIT_M = 1.5  # ... and the torso ends episodes at least this far (m) from its spawn point
STAY_LENGTH = 0.5  # drift_to_survive, spin: "to stay alive/upright" = episodes last this fraction of max steps
YAW_RATE_LIMIT = 0.5  # spin: |mean yaw rate| at least this (rad/s) ...
SPIN_SHARE = 0.2  # ... or the spin penalty at least this share of the positive reward
PLATEAU_EVALS = 6  # plateau: at least this many evaluations ...
PLATEAU_GAIN = 0.05  # ... the second half's best return beats the first half's by less than this x |gate| ...
PLATEAU_BELOW = 0.8  # ... and the recent return is below this fraction of the gate's return
JERK_SHARE = 0.25  # jerky: smoothness + energy penalties at least this share of the positive reward
STILL_FRACTION = 0.1  # standing_still: mean forward speed below this fraction of forward_vel_max ...
STILL_LENGTH = 0.5  # ... while episodes last at least this fraction of max_episode_steps (not falling)
LATERAL_LIMIT = 0.1  # sideways: |mean lateral velocity| at least this (m/s) ...
LATERAL_RATIO = 0.5  # ... and at least this fraction of the forward speed, with episodes ending DRIFT_LIMIT_M or
# more from the spawn point (when the drift is logged: a sway in a short episode is no walk), or ...
HEADING_SHARE = 0.2  # ... heading + lateral penalties at least this share of the positive reward
WALK_FRACTION = 0.3  # falls_while_walking: forward speed at least this fraction of forward_vel_max ...
WALK_FALL_LENGTH = 0.6  # ... and episodes shorter than this fraction of max_episode_steps
GAIT_LIMIT = 0.05  # asymmetric_gait: mean gait asymmetry at least this (squared stance-fraction difference) ...
GAIT_SHARE = 0.15  # ... or the gait-symmetry penalty at least this share of the positive reward
OVERSPEED_FRACTION = 1.1  # over_speed_cap: mean forward speed at least this x forward_vel_max ...
SPEED_SHARE = 0.1  # ... or the speed penalty at least this share of the positive reward


@rule("balance.falls_early")
def falls_early(d: StageData) -> Optional[Symptom]:
    length = recent_length(d)
    if length is None:
        return None
    ratio, success = length / d.max_steps, recent_success(d)
    if ratio >= FALL_FRACTION or success >= FALL_SUCCESS_MAX:
        return None
    fell, _ = signal(d, "fell")
    evidence = [f"eval episodes last {length:.0f} of {d.max_steps} steps ({ratio:.0%}; {steps_span(d)}), "
                f"return {recent_return(d):.1f}"]
    if fell is not None:
        evidence.append(f"{fell:.0%} of training episodes end in a fall")
    log_std = (d.algo("policy_kwargs") or {}).get("log_std_init", 0.0) if d.algorithm == "ppo" else None
    s = Suggest(d).scale_algo("learning_rate", 0.5)
    s.scale_env("posture_weight", 2.0, if_zero=weight(d, "alive_bonus") or None)
    s.scale_env("nosedive_weight", 2.0, if_zero=weight(d, "posture_weight") or None)
    if isinstance(log_std, (int, float)):
        s.policy("log_std_init", float(log_std) - 0.5)
    return Symptom(d.stage, confidence((FALL_FRACTION - ratio) / FALL_FRACTION, len(d.evals)),
                   "falls almost at once: short episodes, low return", evidence,
                   {"mean_ep_length": length, "max_episode_steps": d.max_steps, "fraction": ratio,
                    "mean_reward": recent_return(d), "fell_fraction": fell}, s.out)


@rule("balance.drift_to_survive")
def drift_to_survive(d: StageData) -> Optional[Symptom]:
    if d.task != "balance" or not d.evals:
        return None
    alive_share = max(component(d, "alive"), 0.0) / positive_total(d)
    drift, source = signal(d, "drift")
    if (drift is None or alive_share < ALIVE_SHARE or drift < DRIFT_LIMIT_M
            or (recent_length(d) or 0.0) < STAY_LENGTH * d.max_steps):
        return None
    alive = weight(d, "alive_bonus")
    s = Suggest(d).scale_env("alive_bonus", 0.5)
    s.scale_env("drift_penalty_weight", 2.0, if_zero=0.5 * alive / drift if alive > 0 else None)
    return Symptom(d.stage, confidence(drift / DRIFT_LIMIT_M - 1.0, len(d.evals)),
                   "hops or drifts away from the spawn point to stay alive",
                   [f"alive reward is {alive_share:.0%} of the positive reward ({steps_span(d)})",
                    f"episodes end {drift:.2f} m from the spawn point ({source}); "
                    f"drift_penalty_weight = {weight(d, 'drift_penalty_weight'):g}"],
                   {"alive_share": alive_share, "drift_m": drift,
                    "drift_penalty_weight": weight(d, "drift_penalty_weight")}, s.out)


@rule("balance.spin")
def spin(d: StageData) -> Optional[Symptom]:
    if d.task != "balance" or (recent_length(d) or 0.0) < STAY_LENGTH * d.max_steps:
        return None
    yaw, source = signal(d, "yaw_rate")
    spin_share = share(d, "spin")
    if (yaw is None or yaw < YAW_RATE_LIMIT) and spin_share < SPIN_SHARE:
        return None
    excess = max((yaw or 0.0) / YAW_RATE_LIMIT, spin_share / SPIN_SHARE) - 1.0
    alive = weight(d, "alive_bonus")
    s = Suggest(d).scale_env("spin_penalty_weight", 2.0,
                             if_zero=0.25 * alive / yaw ** 2 if yaw and alive > 0 else None)
    evidence = [f"spin penalty is {spin_share:.0%} of the positive reward ({steps_span(d)})"]
    if yaw is not None:
        evidence.append(f"|mean yaw rate| {yaw:.2f} rad/s ({source})")
    return Symptom(d.stage, confidence(excess, len(d.evals)), "spins in place to stay upright",
                   evidence, {"yaw_rate": yaw, "spin_share": spin_share}, s.out)


@rule("balance.plateau")
def plateau(d: StageData) -> Optional[Symptom]:
    returns, gate = d.eval_values(EVAL_REWARD), d.curriculum("min_avg_reward")
    if d.gate_passed or len(returns) < PLATEAU_EVALS or not isinstance(gate, (int, float)) or gate <= 0:
        return None
    half = len(returns) // 2
    first, second, recent = max(returns[:half]), max(returns[half:]), recent_return(d) or 0.0
    if second > first + PLATEAU_GAIN * abs(gate) or recent >= PLATEAU_BELOW * gate:
        return None
    steps = d.eval_steps(EVAL_REWARD)
    s = Suggest(d).scale_algo("learning_rate", 0.5)
    ent = d.algo("ent_coef")
    if d.algorithm == "ppo" and isinstance(ent, (int, float)) and ent > 0:
        s.algo("ent_coef", float(ent) * 2.0)
    elif d.algorithm == "ppo":
        log_std = (d.algo("policy_kwargs") or {}).get("log_std_init", 0.0)
        s.policy("log_std_init", float(log_std) + 0.5)
    return Symptom(d.stage, confidence(1.0 - recent / (PLATEAU_BELOW * gate), len(returns), 6),
                   "plateau well below the gate: no progress over many evaluations",
                   [f"best return {first:.1f} by step {steps[half - 1]}, {second:.1f} over the {len(returns) - half} "
                    f"evals after (to step {steps[-1]})", f"recent return {recent:.1f} against the gate's {gate:g}"],
                   {"best_first_half": first, "best_second_half": second, "recent_return": recent, "gate": gate,
                    "evaluations": len(returns)}, s.out)


@rule("balance.jerky")
def jerky(d: StageData) -> Optional[Symptom]:
    if not d.evals:
        return None
    jerk = share(d, "smoothness", "energy")
    if jerk < JERK_SHARE:
        return None
    s = Suggest(d).scale_env("action_scale", 0.8).scale_env("smoothness_weight", 1.5)
    return Symptom(d.stage, confidence(jerk / JERK_SHARE - 1.0, len(d.evals)),
                   "jerky joint motion: smoothness/energy penalties large",
                   [f"smoothness {component(d, 'smoothness'):.1f} + energy {component(d, 'energy'):.1f} per episode = "
                    f"{jerk:.0%} of the positive reward ({steps_span(d)})"],
                   {"penalty_share": jerk, "smoothness": component(d, "smoothness"), "energy": component(d, "energy")},
                   s.out)


def _speed(d: StageData) -> tuple[Optional[float], str, float]:
    v, source = signal(d, "forward_velocity")
    cap = weight(d, "forward_vel_max") or 1.0
    return v, source, cap


@rule("locomotion.standing_still")
def standing_still(d: StageData) -> Optional[Symptom]:
    if d.task != "locomotion" or not d.evals:
        return None
    v, source, cap = _speed(d)
    length = recent_length(d) or 0.0
    if v is None or v >= STILL_FRACTION * cap or length < STILL_LENGTH * d.max_steps:
        return None
    fw, alive = weight(d, "forward_vel_weight"), weight(d, "alive_bonus")
    s = Suggest(d).scale_env("forward_vel_weight", 2.0, if_zero=alive / cap if alive > 0 else None)
    s.scale_env("alive_bonus", 0.5).scale_env("posture_weight", 0.5)
    return Symptom(d.stage, confidence(1.0 - max(v, 0.0) / (STILL_FRACTION * cap), len(d.evals)),
                   "forward speed stuck near zero",
                   [f"mean forward speed {v:.3f} m/s against forward_vel_max {cap:g} ({source})",
                    f"episodes last {length:.0f} of {d.max_steps} steps, forward reward {component(d, 'forward'):.1f} "
                    f"vs alive {component(d, 'alive'):.1f} per episode ({steps_span(d)})"],
                   {"forward_velocity": v, "forward_vel_max": cap, "forward_vel_weight": fw,
                    "mean_ep_length": length}, s.out)


@rule("locomotion.sideways")
def sideways(d: StageData) -> Optional[Symptom]:
    if d.task != "locomotion" or not d.evals:
        return None
    lat, source = signal(d, "lateral_velocity")
    v, _, cap = _speed(d)
    pen = share(d, "heading", "lateral")
    drift, _ = signal(d, "drift")
    by_speed = (lat is not None and lat >= LATERAL_LIMIT and lat >= LATERAL_RATIO * abs(v or 0.0)
                and (drift is None or drift >= DRIFT_LIMIT_M))
    if not by_speed and pen < HEADING_SHARE:
        return None
    fw = weight(d, "forward_vel_weight")
    ref = 0.5 * fw * max(v or 0.0, STILL_FRACTION * cap)
    s = Suggest(d).scale_env("lateral_penalty_weight", 2.0, if_zero=ref / lat ** 2 if lat and ref > 0 else None)
    s.scale_env("heading_weight", 2.0, if_zero=0.5 * fw * cap if fw > 0 else None)
    excess = max((lat or 0.0) / LATERAL_LIMIT - 1.0 if by_speed else 0.0, pen / HEADING_SHARE - 1.0)
    evidence = [f"heading + lateral penalties are {pen:.0%} of the positive reward ({steps_span(d)})"]
    if lat is not None:
        evidence.append(f"|mean lateral velocity| {lat:.3f} m/s vs forward {v or 0.0:.3f} m/s ({source})")
    return Symptom(d.stage, confidence(excess, len(d.evals)),
                   "walking sideways: lateral velocity / heading penalty large", evidence,
                   {"lateral_velocity": lat, "forward_velocity": v, "penalty_share": pen}, s.out)


@rule("locomotion.falls_while_walking")
def falls_while_walking(d: StageData) -> Optional[Symptom]:
    if d.task != "locomotion" or not d.evals:
        return None
    v, source, cap = _speed(d)
    length = recent_length(d) or 0.0
    if v is None or v < WALK_FRACTION * cap or length >= WALK_FALL_LENGTH * d.max_steps:
        return None
    s = Suggest(d).scale_env("posture_weight", 1.5).scale_env("fall_penalty", 1.5).scale_env("forward_vel_max", 0.8)
    return Symptom(d.stage,
                   confidence(1.0 - length / (WALK_FALL_LENGTH * d.max_steps), len(d.evals)),
                   "walks but falls often",
                   [f"mean forward speed {v:.2f} m/s ({source}) but episodes last {length:.0f} of {d.max_steps} steps "
                    f"({steps_span(d)})"],
                   {"forward_velocity": v, "mean_ep_length": length, "max_episode_steps": d.max_steps}, s.out)


@rule("locomotion.asymmetric_gait")
def asymmetric_gait(d: StageData) -> Optional[Symptom]:
    if d.task != "locomotion" or not d.evals:
        return None
    gait, source = signal(d, "gait_asymmetry")
    pen = share(d, "gait_symmetry")
    if (gait is None or gait < GAIT_LIMIT) and pen < GAIT_SHARE:
        return None
    fw, cap = weight(d, "forward_vel_weight"), weight(d, "forward_vel_max") or 1.0
    s = Suggest(d).scale_env("gait_symmetry_weight", 2.0,
                             if_zero=0.25 * fw * cap / gait if gait and fw > 0 else None)
    excess = max((gait or 0.0) / GAIT_LIMIT, pen / GAIT_SHARE) - 1.0
    evidence = [f"gait-symmetry penalty is {pen:.0%} of the positive reward ({steps_span(d)})"]
    if gait is not None:
        evidence.append(f"mean gait asymmetry {gait:.3f} ({source})")
    return Symptom(d.stage, confidence(excess, len(d.evals)),
                   "shuffling or skating gait: left/right stance fractions differ", evidence,
                   {"gait_asymmetry": gait, "penalty_share": pen}, s.out)


@rule("locomotion.over_speed_cap")
def over_speed_cap(d: StageData) -> Optional[Symptom]:
    if d.task != "locomotion" or not d.evals:
        return None
    v, source, cap = _speed(d)
    pen = share(d, "speed")
    by_speed = v is not None and v >= OVERSPEED_FRACTION * cap
    if not by_speed and pen < SPEED_SHARE:
        return None
    fw = weight(d, "forward_vel_weight")
    over = (v or 0.0) - cap
    s = Suggest(d).scale_env("speed_penalty_weight", 2.0,
                             if_zero=0.5 * fw * cap / over ** 2 if over > 0 and fw > 0 else None)
    excess = max((v or 0.0) / (OVERSPEED_FRACTION * cap) - 1.0 if by_speed else 0.0, pen / SPEED_SHARE - 1.0)
    evidence = [f"speed penalty is {pen:.0%} of the positive reward ({steps_span(d)})"]
    if v is not None:
        evidence.append(f"mean forward speed {v:.2f} m/s against forward_vel_max {cap:g} ({source})")
    return Symptom(d.stage, confidence(excess, len(d.evals)), "speed above the cap",
                   evidence, {"forward_velocity": v, "forward_vel_max": cap, "penalty_share": pen}, s.out)


RULES = (falls_early, drift_to_survive, spin, plateau, jerky, standing_still, sideways, falls_while_walking,
         asymmetric_gait, over_speed_cap)
