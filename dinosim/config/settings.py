"""Settings that the training code consumes from the `[curriculum]` table and our extra `[ppo]`/`[sac]` keys.

These dataclasses are the single source of truth for which `[curriculum]` keys exist and for the schedule keys we
add on top of the Stable-Baselines3 constructor arguments. This module is import-light (standard library only)
because the config validator reads it on every CLI call.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional


@dataclass
class CurriculumSettings:
    """How long a stage trains, how it is evaluated, and the gate that ends it early.

    The gate passes when the mean eval return >= ``min_avg_reward`` AND the mean eval episode length >=
    ``min_avg_episode_length`` (AND the eval success rate >= ``min_success_rate`` where set) for
    ``required_consecutive`` evaluations in a row.
    """

    timesteps: int = 4_000_000  # training budget of the stage, in environment steps
    min_avg_reward: float = 0.0  # gate: mean eval episode return at least this
    min_avg_episode_length: float = 0.0  # gate: mean eval episode length at least this
    min_success_rate: Optional[float] = None  # gate (stage 3): eval success rate at least this
    required_consecutive: int = 3  # gate: this many passing evaluations in a row
    eval_freq: int = 25_000  # evaluate every this many environment steps (summed over envs)
    eval_episodes: int = 10  # episodes per evaluation (deterministic policy, frozen normalisation)
    save_freq: int = 100_000  # checkpoint every this many environment steps
    keep_checkpoints: int = 3  # newest checkpoints kept on disk
    warmup_timesteps: int = 0  # entering the stage: steps during which warmup_clip_range / warmup_ent_coef apply
    warmup_clip_range: Optional[float] = None  # PPO clip range during warm-up
    warmup_ent_coef: Optional[float] = None  # PPO entropy coefficient during warm-up
    ramp_timesteps: int = 0  # entering the stage: steps over which every changed [env] weight moves linearly


@dataclass
class ScheduleSettings:
    """Keys we accept in `[ppo]`/`[sac]` beyond the SB3 constructor: learning-rate and clip-range schedules."""

    learning_rate_end: Optional[float] = None  # decay learning_rate to this value over the stage (unset: constant)
    lr_schedule: str = "linear"  # shape of the decay to learning_rate_end: "linear" or "cosine"
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
