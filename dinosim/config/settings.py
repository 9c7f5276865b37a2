"""Settings that the training code consumes from the `[curriculum]` table and our extra `[ppo]`/`[sac]` keys.

These dataclasses are the single source of truth for which `[curriculum]` keys exist and for the schedule keys we
add on top of the Stable-Baselines3 constructor arguments. This module is import-light (standard library only)
because the config validator reads it on every CLI call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from statistics import NormalDist
from typing import Mapping, Optional


@dataclass
class CurriculumSettings:
    """How long a stage trains, how it is evaluated, and the gate that ends it early.

    The gate (:meth:`screen_passes`, :meth:`gate_passes`) is the one rule that training, the audit, summaries
    and the CLI use. Every ``eval_freq`` steps a *screening* evaluation plays ``eval_episodes`` episodes; it
    passes when the point estimates meet the thresholds (mean return >= ``min_avg_reward``, mean length >=
    ``min_avg_episode_length``, success rate >= ``min_success_rate`` where set). After ``required_consecutive``
    passing screenings in a row, a *gate* evaluation of the same snapshot plays ``gate_episodes`` new episodes and
    the stage's gate passes only if the one-sided ``gate_confidence`` LOWER BOUNDS meet the thresholds: the
    Wilson score bound for the success rate, mean - z * s / sqrt(n) for the mean return and length. A policy
    whose true success rate is below ``min_success_rate`` therefore passes with probability about
    1 - ``gate_confidence`` or less. Every evaluation episode uses its own seed from a stream that training
    never uses; ``best/`` is the evaluation with the highest lower bound (:meth:`rank`), not a noisy maximum,
    and once the gate passes, the snapshot that passed.
    With background evaluation (:meth:`evaluates_in_background`) the evaluations play a snapshot of the policy in a
    separate process while training continues (:mod:`dinosim.training.eval_gate`); records and decisions are those
    of the snapshot's step, and a stage that passes its gate ends on the snapshot that passed, in both modes.
    With ``eval_early_stop`` an evaluation ends as soon as a criterion of :data:`STOPPABLE` can no longer be met
    whatever its remaining episodes do (:meth:`fewest_successes`, :meth:`meets`; see
    :mod:`dinosim.training.eval_stop`): the verdict is the full evaluation's, only fewer episodes are played.
    Evaluations play the policy's mean action, or with ``eval_deterministic = false`` sample its actions as
    training does (the policy the next stage starts to train from), from torch's generator seeded with the
    evaluation's first episode seed (the same numbers inline and in the background for the same ``eval_envs``).
    """

    timesteps: int = 4_000_000  # training budget of the stage, in environment steps
    min_avg_reward: float = 0.0  # gate: screening mean return, then its lower bound mean-z*s/sqrt(n), >= this
    min_avg_episode_length: float = 0.0  # gate: screening mean length, then its lower bound mean-z*s/sqrt(n), >= this
    min_success_rate: Optional[float] = None  # gate (stage 3): screening success, then its Wilson lower bound, >= this
    required_consecutive: int = 1  # gate: this many passing screenings in a row before the gate evaluation
    eval_freq: int = 25_000  # evaluate every this many environment steps (summed over envs)
    eval_episodes: int = 20  # episodes per screening evaluation (frozen normalisation)
    eval_deterministic: bool = True  # evaluations play the mean action (true) or sample it as training does (false)
    gate_episodes: int = 100  # episodes of the gate evaluation that confirms a passing screening
    gate_confidence: float = 0.95  # one-sided confidence of the lower bounds the gate evaluation must meet
    eval_envs: int = 8  # environments stepped together during an evaluation (one batched policy call per step)
    background_eval: bool | str = "auto"  # evaluate in another process while training goes on ("auto": 2+ CPUs)
    eval_early_stop: bool = True  # end an evaluation once it can no longer pass (same verdict; fewer episodes recorded)
    save_freq: int = 100_000  # checkpoint every this many environment steps
    keep_checkpoints: int = 3  # newest checkpoints kept on disk
    warmup_timesteps: int = 0  # entering the stage: steps during which warmup_clip_range / warmup_ent_coef apply
    warmup_clip_range: Optional[float] = None  # PPO clip range during warm-up
    warmup_ent_coef: Optional[float] = None  # PPO entropy coefficient during warm-up
    ramp_timesteps: int = 0  # entering the stage: steps over which every changed [env] weight moves linearly
    critic_warmup_timesteps: int = 0  # entering a warm-started stage: train only the value function this long
    obs_norm_count: Optional[float] = None  # warm start: weight (in samples) of the carried-over obs statistics
    new_inputs: str = "carry"  # warm start, obs values the previous stage never saw vary: "carry", "zero" or "fresh"
    anchor_coef: float = 0.0  # warm-started PPO stage: loss += coef * KL(start policy || policy) on its states (0: off)
    anchor_timesteps: int = 0  # anchor_coef falls to 0 over this many stage steps, critic warm-up included (0: stays)
    warm_start_stage: Optional[int] = None  # start from this earlier stage's policy (unset: the previous; 0: scratch)

    def evaluates_in_background(self, budget: int, cpus: int, vec_env: str) -> bool:
        """Whether a stage of ``budget`` steps evaluates in a background process: ``background_eval`` when it is
        true or false; ``"auto"``: on a machine with ``cpus`` >= 2 usable CPUs, when the envs step in the training
        process (``vec_env`` ``"dummy"`` or ``"threads"``; subproc workers already use the other cores) and the
        stage may train at least :data:`BACKGROUND_AUTO_MIN_STEPS` steps (a shorter one evaluates too little to
        repay the evaluation process's start-up). Either way the stage trains to the same result (the passing
        snapshot)."""
        if isinstance(self.background_eval, bool):
            return self.background_eval
        return cpus >= 2 and vec_env in ("dummy", "threads") and budget >= BACKGROUND_AUTO_MIN_STEPS

    def thresholds(self) -> dict[str, float]:
        """``{quantity: minimum}`` of the gate: ``return``, ``length`` and, where set, ``success``."""
        out = {"return": float(self.min_avg_reward), "length": float(self.min_avg_episode_length)}
        if self.min_success_rate is not None:
            out["success"] = float(self.min_success_rate)
        return out

    def meets(self, quantity: str, estimate: float) -> bool:
        """Whether ``estimate`` of ``quantity`` (a key of :meth:`thresholds`) meets its threshold."""
        return estimate >= self.thresholds()[quantity]

    def screen_passes(self, stats: "EvalStats") -> bool:
        """Point estimates meet every threshold (the screening rule; also what a trivial policy must fail)."""
        point = stats.point_estimates()
        return all(self.meets(q, point.get(q, -math.inf)) for q in self.thresholds())

    def gate_passes(self, stats: "EvalStats") -> bool:
        """Lower confidence bounds meet every threshold (the gate rule)."""
        low = stats.lower_bounds(self.gate_confidence)
        return all(self.meets(q, low.get(q, -math.inf)) for q in self.thresholds())

    def fewest_successes(self, episodes: int, gate: bool) -> Optional[int]:
        """The fewest successes out of ``episodes`` that meet the success criterion, by the gate rule (Wilson lower
        bound, ``gate``) or the screening rule (point estimate); ``episodes + 1`` when no count does; None without
        a success criterion. Found by applying the rule to every count from 0 up, so an evaluation whose episodes
        cannot reach this many successes any more (``episodes`` - failures so far below it) fails the criterion
        whatever its remaining episodes do: no monotonicity of the bound is assumed. E.g. 0.9 at 95 % of 200
        episodes: 187 (at most 13 failures); the screening rule of 20 episodes: 18."""
        if self.min_success_rate is None:
            return None
        for successes in range(int(episodes) + 1):
            stats = EvalStats(int(episodes), 0.0, 0.0, 0.0, 0.0, successes=successes)
            estimates = stats.lower_bounds(self.gate_confidence) if gate else stats.point_estimates()
            if self.meets("success", estimates["success"]):
                return successes
        return int(episodes) + 1

    def shortfall(self, point: Mapping[str, float]) -> float:
        """How far point estimates (``{quantity: estimate}``, as :meth:`EvalStats.point_estimates`) fall short of
        the gate's thresholds: the largest relative gap ``(threshold - estimate) / |threshold|`` (divided by 1 for
        a threshold of 0), each clipped to [0, 1]. 0: every threshold met; 1: a quantity missing, or short by at
        least its whole threshold. E.g. a walking gate of return 1,500 and length 800 with a mean return of 1,200
        over episodes of 900 steps: 0.2; a success gate of 0.9 at 0.45: 0.5."""
        gaps = [0.0]
        for quantity, threshold in self.thresholds().items():
            estimate = point.get(quantity)
            if estimate is None or not math.isfinite(estimate):
                return 1.0
            gaps.append((threshold - estimate) / (abs(threshold) or 1.0))
        return min(1.0, max(gaps))

    def rank(self, stats: "EvalStats") -> tuple[float, float]:
        """Order of evaluations for ``best/``: the success lower bound (stage 3), then the return lower bound."""
        low = stats.lower_bounds(self.gate_confidence)
        return (low.get("success", -math.inf), low["return"])


BACKGROUND_AUTO_MIN_STEPS = 50_000
"""Shortest stage budget that ``background_eval = "auto"`` evaluates in the background: at the default ``eval_freq``
(25,000) such a stage screens at least twice; shorter runs (tests, demos) would mostly wait for the evaluation
process's start-up (~3 CPU s, ``benchmarks/eval_startup.py``)."""

STOPPABLE = ("success", "length")
"""The :meth:`CurriculumSettings.thresholds` an evaluation can be certain to miss before its last episode: the
success rate (each episode adds a success or not) and the mean length (an episode lasts at most the env's
``max_episode_steps``; a gate's lower bound is never above the mean). The return has no such bound: a return
criterion is decided only by the last episode."""


@dataclass(frozen=True)
class EvalStats:
    """What one evaluation measured, as the gate reads it (sample moments; ``successes`` None: not reported)."""

    episodes: int
    mean_return: float
    std_return: float  # sample standard deviation (ddof=1; 0 for one episode)
    mean_length: float
    std_length: float
    successes: Optional[int] = None

    def point_estimates(self) -> dict[str, float]:
        out = {"return": self.mean_return, "length": self.mean_length}
        if self.successes is not None:
            out["success"] = self.successes / self.episodes if self.episodes else 0.0
        return out

    def lower_bounds(self, confidence: float) -> dict[str, float]:
        """One-sided ``confidence`` lower bounds of the true mean return, length and success rate."""
        n = self.episodes
        out = {"return": mean_lower_bound(self.mean_return, self.std_return, n, confidence),
               "length": mean_lower_bound(self.mean_length, self.std_length, n, confidence)}
        if self.successes is not None:
            out["success"] = wilson_lower_bound(self.successes, n, confidence)
        return out


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(confidence)


def wilson_lower_bound(successes: int, n: int, confidence: float) -> float:
    """One-sided Wilson score lower bound of a success probability from ``successes`` of ``n`` trials."""
    if n <= 0:
        return 0.0
    z = _z(confidence)
    p = successes / n
    z2n = z * z / n
    centre = p + z2n / 2.0
    spread = z * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n))
    return max(0.0, (centre - spread) / (1.0 + z2n))


def mean_lower_bound(mean: float, std: float, n: int, confidence: float) -> float:
    """One-sided normal-approximation lower bound of a mean from ``n`` samples with sample std ``std``."""
    if n <= 0 or not math.isfinite(mean):
        return -math.inf
    return mean - _z(confidence) * std / math.sqrt(n)


@dataclass
class ScheduleSettings:
    """Keys we accept in `[ppo]`/`[sac]` beyond the SB3 constructor: learning-rate and clip-range schedules."""

    learning_rate_end: Optional[float] = None  # decay learning_rate to this value over the stage (unset: constant)
    lr_schedule: str = "linear"  # shape of the decay to learning_rate_end: "linear" or "cosine"
    lr_decay_timesteps: Optional[int] = None  # stage steps of the decay to learning_rate_end, then held (unset: budget)
    clip_range_end: Optional[float] = None  # PPO only: decay clip_range linearly to this value


LR_SCHEDULES = ("linear", "cosine")


def field_comments(cls: type) -> dict[str, str]:
    """The trailing comment of each field in this module's dataclasses, used as the key's description."""
    import ast
    import inspect

    source = inspect.getsource(inspect.getmodule(cls))
    lines = source.splitlines()
    names = {f.name for f in fields(cls)}
    out: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id in names:
                    line = lines[stmt.lineno - 1]
                    out[stmt.target.id] = line.split("#", 1)[1].strip() if "#" in line else ""
    return out
