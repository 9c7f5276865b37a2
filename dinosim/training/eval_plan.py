"""Scheduled evaluations: a screening and, when it passes, a gate evaluation of one policy snapshot.

An :class:`EvalPlan` fixes everything about one evaluation when the snapshot is taken (its seeds from the run's gate
stream, whether a gate evaluation follows, the early-stop rules), so :func:`play_plan` gives the same numbers
inline or in the evaluation process (:mod:`dinosim.training.eval_worker`). The episodes themselves are played by
:func:`~dinosim.training.evaluation.run_seeded_episodes`; the screening and gate rules are the
:class:`~dinosim.config.settings.CurriculumSettings` methods that :func:`screen_passed` and :func:`gate_passed` apply.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import numpy as np

from dinosim.config.settings import CurriculumSettings
from dinosim.training.eval_stop import StopRule, longest_episode
from dinosim.training.evaluation import EvalResult, Policy, action_noise_seeded, gate_seeds, run_seeded_episodes

if TYPE_CHECKING:
    import gymnasium as gym


def screen_passed(result: EvalResult, curriculum: CurriculumSettings) -> bool:
    """The screening rule on ``result``; a stopped evaluation failed (its verdict was certain when it stopped)."""
    return not result.stopped and curriculum.screen_passes(result.stats())


def gate_passed(result: EvalResult, curriculum: CurriculumSettings) -> bool:
    """The gate rule on ``result``; a stopped evaluation failed (its verdict was certain when it stopped)."""
    return not result.stopped and curriculum.gate_passes(result.stats())


@dataclass(frozen=True)
class EvalPlan:
    """One scheduled evaluation of the policy snapshot taken at global step ``step``.

    A screening of ``curriculum.eval_episodes`` episodes; then, when the screening passes and ``gate_if_pass``
    (the streak reaches ``required_consecutive`` with it), a gate evaluation of ``curriculum.gate_episodes``
    episodes on the next seeds. Seeds come from the run's gate stream starting at index ``first_seed``. ``mark``
    is the stage step whose evaluation this is (a multiple of ``eval_freq``). Everything is fixed when the
    snapshot is taken, so playing the plan inline or in the evaluation process gives the same numbers.
    """

    step: int
    mark: int
    run_seed: int
    first_seed: int
    gate_if_pass: bool
    curriculum: CurriculumSettings

    @property
    def screen_seeds(self) -> range:
        return gate_seeds(self.run_seed, self.first_seed, self.curriculum.eval_episodes)

    @property
    def gate_seeds(self) -> range:
        start = self.first_seed + self.curriculum.eval_episodes
        return gate_seeds(self.run_seed, start, self.curriculum.gate_episodes)

    def stop_rule(self, gate: bool, longest: Optional[int]) -> Optional[StopRule]:
        """When the screening (or the gate evaluation: ``gate``) stops early; None: ``eval_early_stop`` is off.
        ``longest``: the eval envs' episode cap (:func:`~dinosim.training.eval_stop.longest_episode`)."""
        cur = self.curriculum
        if not cur.eval_early_stop:
            return None
        return StopRule(cur, cur.gate_episodes if gate else cur.eval_episodes, gate, longest)


@dataclass(frozen=True)
class EvalTiming:
    """How long one evaluation (a screening or a gate evaluation) took in the process that played it: wall and CPU
    seconds of that process (``time.process_time``: all its threads), the env steps played (the episodes' lengths
    summed) and ``ended``, ``time.monotonic()`` at its end (a system-wide clock on Linux, macOS and Windows, so the
    training process can tell which part of its waiting for the evaluation process fell before the screening's
    end)."""

    wall_s: float
    cpu_s: float
    env_steps: int
    ended: float


def timed(play: Callable[[], EvalResult]) -> tuple[EvalResult, EvalTiming]:
    """``play()`` and its :class:`EvalTiming` (env steps: the recorded episodes' and the dropped ones')."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = play()
    return result, EvalTiming(wall_s=time.perf_counter() - wall, cpu_s=time.process_time() - cpu,
                              env_steps=int(sum(result.lengths)) + result.dropped_steps, ended=time.monotonic())


@dataclass
class EvalOutcome:
    """What playing an :class:`EvalPlan` gave: the screening, the gate evaluation (None: not played), and how long
    each took."""

    plan: EvalPlan
    screen: EvalResult
    gate: Optional[EvalResult]
    screen_time: EvalTiming
    gate_time: Optional[EvalTiming] = None

    @property
    def next_seed(self) -> int:
        """Index in the run's gate stream of the first seed this outcome did not use."""
        cur = self.plan.curriculum
        return self.plan.first_seed + cur.eval_episodes + (cur.gate_episodes if self.gate is not None else 0)


def play_plan(plan: EvalPlan, policy: Policy, envs: Sequence["gym.Env"],
              normalize: Callable[[np.ndarray], np.ndarray],
              on_gate: Optional[Callable[[], None]] = None) -> EvalOutcome:
    """Play ``plan`` with ``policy`` on ``envs``: the screening, then the gate evaluation if the plan calls for it
    (each stops early as :meth:`EvalPlan.stop_rule` says); ``on_gate`` is called when the gate evaluation starts."""
    longest = longest_episode(envs)
    screen_stop, gate_stop = plan.stop_rule(False, longest), plan.stop_rule(True, longest)
    noise = not plan.curriculum.eval_deterministic

    def play(seeds: range, stop: Optional[StopRule]) -> EvalResult:
        with action_noise_seeded(seeds.start if noise else None):
            return run_seeded_episodes(policy, envs, seeds, normalize, stop)

    screen, screen_time = timed(lambda: play(plan.screen_seeds, screen_stop))
    if plan.gate_if_pass and screen_passed(screen, plan.curriculum):
        if on_gate is not None:
            on_gate()
        gate, gate_time = timed(lambda: play(plan.gate_seeds, gate_stop))
        return EvalOutcome(plan, screen, gate, screen_time, gate_time)
    return EvalOutcome(plan, screen, None, screen_time)
