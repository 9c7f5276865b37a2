"""Measurements the rules share: recent eval means, reward shares, physical signals of a stage.

"Recent" is the last :data:`TAIL` evaluations of the stage. A reward *share* is a component's magnitude over the
sum of the positive components of the same evaluations (per-episode sums, so shares compare like with like).
Physical signals come from the training rollouts' ``signal/<name>`` TensorBoard series (last third of the stage)
or, when a run has none, are recovered from the weighted reward term where its weight is non-zero.
"""

from __future__ import annotations

import math
from typing import Optional

from dinosim.tracking.diagnose.data import EVAL_LENGTH, EVAL_REWARD, EVAL_SUCCESS, StageData
from dinosim.tracking.run_logs import component_means

TAIL = 3  # evaluations that make "recent"
BEHAVIOUR_EXCLUDED = {"balance", "locomotion"}


def mean(values: list[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def tail_mean(data: StageData, key: str, k: int = TAIL) -> Optional[float]:
    return mean(data.eval_values(key)[-k:])


def recent_length(data: StageData) -> Optional[float]:
    return tail_mean(data, EVAL_LENGTH)


def recent_return(data: StageData) -> Optional[float]:
    return tail_mean(data, EVAL_REWARD)


def recent_success(data: StageData) -> float:
    return tail_mean(data, EVAL_SUCCESS) or 0.0


def component(data: StageData, term: str, k: int = TAIL) -> float:
    """Mean per-episode sum of reward ``term`` over the recent evaluations (0 without evaluations)."""
    records = data.tail(k)
    return sum(data.component(r, term) for r in records) / len(records) if records else 0.0


def positive_total(data: StageData, k: int = TAIL) -> float:
    """Sum of the positive component means of the recent evaluations (at least a tiny epsilon)."""
    records = data.tail(k)
    terms = {t for r in records for t in component_means(r)}
    total = sum(max(component(data, t, k), 0.0) for t in terms)
    return max(total, 1e-9)


def share(data: StageData, *terms: str) -> float:
    """Summed magnitude of ``terms`` over :func:`positive_total`."""
    return sum(abs(component(data, t)) for t in terms) / positive_total(data)


def weight(data: StageData, key: str) -> float:
    value = data.env.get(key, 0.0)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def signal(data: StageData, name: str) -> tuple[Optional[float], str]:
    """(value, source) of a physical signal: ``signal/<name>`` over the last third of the stage, else recovered from
    the recent eval reward term (see :data:`_FROM_REWARD`), else (None, "")."""
    series = data.scalar(f"signal/{name}")
    if series:
        n = max(1, len(series) // 3)
        return sum(series.values[-n:]) / n, f"training rollouts, last {n} logged point(s) up to step {series.steps[-1]}"
    recover = _FROM_REWARD.get(name)
    length = recent_length(data)
    if recover is None or not length:
        return None, ""
    term, key, power = recover
    w = weight(data, key)
    if w == 0.0 or not data.evals:
        return None, ""
    per_step = abs(component(data, term)) / (w * length)
    return per_step ** (1.0 / power), f"recovered from eval reward/{term} (weight {key} = {w:g})"


# name -> (reward term, its weight key, power of the signal in the term)
_FROM_REWARD = {
    "drift": ("drift", "drift_penalty_weight", 1),
    "forward_velocity": ("forward", "forward_vel_weight", 1),
    "yaw_rate": ("spin", "spin_penalty_weight", 2),
    "lateral_velocity": ("lateral", "lateral_penalty_weight", 2),
    "gait_asymmetry": ("gait_symmetry", "gait_symmetry_weight", 1),
}


def has_target(data: StageData) -> bool:
    return bool(data.task) and data.task not in BEHAVIOUR_EXCLUDED


def steps_span(data: StageData, k: int = TAIL) -> str:
    """``steps a-b`` of the recent evaluations (for evidence lines)."""
    steps = [int(r["global_step"]) for r in data.tail(k)]
    if not steps:
        return "no evaluations"
    return f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}-{steps[-1]}, {len(steps)} evals"


def finite(value: Optional[float]) -> bool:
    return value is not None and math.isfinite(value)

