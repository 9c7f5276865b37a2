"""How an evaluation's episodes ended, and its success against the target's distance at reset.

A success rate says how often a policy fails, not how: ``dinosim evaluate`` also prints the count of each
``info["termination_reason"]`` (``success``, ``time_limit``, each ``fell_*`` reason) and, for a task with a target
(strike, bite, food reach), the success and the ends of each quarter of the episodes sorted by the distance from
effector to target at reset. A policy that lunges, for instance, fails at the far end of the prey's range.

Reads an :class:`~dinosim.training.evaluation.EvalResult` whose ``ends`` and ``start_distances`` are filled
(:func:`~dinosim.training.evaluation.run_seeded_episodes`); imports nothing heavy.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

if TYPE_CHECKING:
    from dinosim.training.evaluation import EvalResult

DISTANCE_BINS = 4  # quarters of the episodes, by target distance at reset


@dataclass(frozen=True)
class DistanceBin:
    """Episodes whose target distance at reset lies in ``[low, high]`` (m): their count, successes and ends."""

    low: float
    high: float
    episodes: int
    successes: int
    ends: dict[str, int]


def end_counts(ends: Sequence[str]) -> dict[str, int]:
    """Each end reason with its count, most frequent first (ties by name); an empty reason is ``"unknown"``."""
    counts = Counter(end or "unknown" for end in ends)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def distance_bins(distances: Sequence[float], successes: Sequence[Optional[bool]], ends: Sequence[str],
                  bins: int = DISTANCE_BINS) -> list[DistanceBin]:
    """The episodes sorted by target distance and cut into ``bins`` groups of (nearly) equal size.

    Empty when any episode has no target distance (a negative or NaN value: no target) or no success flag, or
    when there are fewer episodes than ``bins``.
    """
    n = len(distances)
    if n < bins or bins < 1 or any(not (d >= 0.0) for d in distances) or any(s is None for s in successes):
        return []
    order = sorted(range(n), key=lambda i: distances[i])
    out = []
    for b in range(bins):
        part = order[b * n // bins:(b + 1) * n // bins]
        out.append(DistanceBin(
            low=distances[part[0]], high=distances[part[-1]], episodes=len(part),
            successes=sum(bool(successes[i]) for i in part), ends=end_counts([ends[i] for i in part])))
    return out


def format_outcomes(result: "EvalResult") -> list[str]:
    """Report lines: ``episode ends`` and, for a target task, one line per distance bin; none without ends."""
    if not result.ends:
        return []
    counts = end_counts(result.ends)
    lines = ["  episode ends     " + ", ".join(f"{reason} {count}" for reason, count in counts.items())]
    table = distance_bins(result.start_distances, result.successes, result.ends)
    if table:
        lines.append("  success by target distance at reset (effector to target, quarters of the episodes):")
        for row in table:
            others = ", ".join(f"{r} {c}" for r, c in row.ends.items() if r != "success")
            share = f"{row.successes}/{row.episodes}"
            lines.append(f"    {row.low:.2f}-{row.high:.2f} m  {share:>9}" + (f"  ({others})" if others else ""))
    return lines
