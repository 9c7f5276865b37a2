"""Stop an evaluation as soon as it is certain to fail (exact, not statistical): ``curriculum.eval_early_stop``.

An evaluation of ``n`` seeded episodes fails a criterion of :data:`~dinosim.config.settings.STOPPABLE` for
certain before its last episode when:

- ``success``: the episodes that did not succeed so far leave fewer possible successes than
  :meth:`~dinosim.config.settings.CurriculumSettings.fewest_successes` (the screening's point-estimate rule or the
  gate's Wilson rule, applied to every count, so no bound is restated here);
- ``length``: even if every remaining episode ran to the envs' ``max_episode_steps`` the mean length would miss
  ``min_avg_episode_length``. For a gate evaluation this is exact too: its lower bound mean - z * s / sqrt(n) is
  never above the mean (z >= 0 for every allowed ``gate_confidence``); computed in float64 from integer sums, the
  bound is never below the mean the full evaluation would compute.

The return has no exact bound (an episode's return is not bounded by anything the config states), so a return
criterion never stops an evaluation. Nor does a certain PASS: the gate's return and length lower bounds need
every episode, and a passing evaluation's numbers (``best/`` ranks by them) must be complete ones.

Reproducibility: the decision is taken on the results in SEED order. After each episode, the longest run of
finished episodes from the first seed (the prefix) is fed to :class:`StopWatch` one episode at a time; the
evaluation stops at the first prefix length ``k < n`` after which a criterion is certain to fail. ``k``, the
recorded numbers (those of the first ``k`` seeds) and the verdict are therefore the same for any number of eval
envs, inline or in the background, and the verdict is the full evaluation's. Episodes that were running or
already finished beyond the prefix when it stopped are dropped (their steps count as played, not recorded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence

if TYPE_CHECKING:
    from dinosim.config.settings import CurriculumSettings


def longest_episode(envs: Sequence[Any]) -> Optional[int]:
    """The most steps an episode of ``envs`` can last: the smallest ``max_episode_steps`` of their unwrapped envs
    (dinosim envs truncate themselves there); None when an env does not state one."""
    caps = [getattr(getattr(env, "unwrapped", env), "max_episode_steps", None) for env in envs]
    if not caps or any(not isinstance(c, int) or c <= 0 for c in caps):
        return None
    return min(caps)


@dataclass(frozen=True)
class StopRule:
    """When an evaluation of ``episodes`` episodes is certain to fail under ``curriculum``'s rule: the screening
    rule, or the gate rule (``gate``). ``longest``: the envs' episode cap (None: no length stop)."""

    curriculum: "CurriculumSettings"
    episodes: int
    gate: bool
    longest: Optional[int]

    def watch(self) -> "StopWatch":
        return StopWatch(self)


class StopWatch:
    """Follows one evaluation's results in seed order (:meth:`add`) and says which criteria are out of reach."""

    def __init__(self, rule: StopRule) -> None:
        cur = rule.curriculum
        self.rule = rule
        self.fewest = cur.fewest_successes(rule.episodes, rule.gate)
        self.length_floor = float(cur.min_avg_episode_length) > 0 and rule.longest is not None
        self.played = self.failures = self.length_sum = 0

    def add(self, length: int, success: Optional[bool]) -> tuple[str, ...]:
        """Count the next episode in seed order; the criteria certain to fail now (empty: none, or this was the last
        episode: a complete evaluation is never called stopped)."""
        self.played += 1
        self.failures += success is not True  # an episode without a success flag counts as no success, as in stats()
        self.length_sum += int(length)
        left = self.rule.episodes - self.played
        if left <= 0:
            return ()
        out = []
        if self.fewest is not None and self.rule.episodes - self.failures < self.fewest:
            out.append("success")
        if self.length_floor and self.rule.longest is not None:
            best_mean = (self.length_sum + left * self.rule.longest) / self.rule.episodes
            if not self.rule.curriculum.meets("length", best_mean):
                out.append("length")
        return tuple(out)
