"""What evaluation cost real runs: per stage, the share of the stage's wall time training waited for evaluations.

Used by ``python benchmarks/train_fps.py --runs RUN [RUN ...] [--cost-ratio R]``. A run timed by dinosim (every
metrics.jsonl record carries ``eval_time/*``, every stage of summary.json its totals) shows what was recorded:
seconds training waited for screenings and gate evaluations, their share of the stage's wall time, and what they
add to the time training alone took (wait / (wall - wait)). An older run shows only facts it recorded: the
evaluation env steps (``eval/episodes`` x ``eval/mean_ep_length`` of each record) against its training steps, and
an ESTIMATE of the share only when a cost ratio is known: ``--cost-ratio`` (seconds of one evaluation env step /
seconds of one training step), else the median ratio of the timed inline stages among ``--runs``. Otherwise
"not recorded".
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from dinosim.config.loader import TOMLDecodeError, loads_toml
from dinosim.runfolder import (
    EVAL_CPU,
    EVAL_KIND_KEY,
    EVAL_STEPS,
    EVAL_WAIT,
    EVAL_WALL,
    GATE_KIND,
    METRICS_FILE,
    SCREEN_KIND,
    STAGE_CONFIG_FILE,
    read_json_lines,
)
from dinosim.tracking.summary import EVAL_KIND_NAMES as KINDS
from dinosim.tracking.summary import StageRow, format_eval_time, summarize_run


@dataclass
class StageCost:
    """One stage of one run: its training steps and wall time, and what evaluation cost it."""

    run: Path
    stage: int
    steps: int
    wall: float
    background: Optional[bool]  # whether the stage evaluated in the background (see _background; None: unknown)
    row: StageRow
    eval_steps: dict[str, int]  # per kind, from the records' eval/episodes x eval/mean_ep_length (0: none)
    eval_steps_complete: bool  # every record of the stage had both numbers

    @property
    def recorded(self) -> bool:
        return self.row.eval_time is not None

    @property
    def wait(self) -> float:
        return float(self.row.eval_wait or 0.0)

    def cost_ratio(self) -> Optional[float]:
        """Seconds of one evaluation env step / seconds of one training step, from a timed inline stage: in CPU
        seconds of the training process when recorded (they do not depend on how much of a busy machine the run
        got), else in wall seconds."""
        totals = (self.row.eval_time or {}).values()
        steps = sum(int(t[EVAL_STEPS]) for t in totals)
        if not self.recorded or self.background or not steps or not self.steps:
            return None
        used, evals = self.row.cpu_time, sum(t[EVAL_CPU] for t in totals)
        if used is None or used <= evals:
            used, evals = self.wall, self.wait
        return (evals / steps) / ((used - evals) / self.steps) if used > evals else None


def _background(run: Path, row: StageRow) -> Optional[bool]:
    """Whether the stage evaluated in the background: as its summary.json state records it (``row.background``),
    else (runs from before it was recorded) its config.toml's ``curriculum.background_eval`` when that is true or
    false; None: unknown."""
    if row.background is not None:
        return row.background
    try:
        config = loads_toml((run / f"stage{row.stage}" / STAGE_CONFIG_FILE).read_text())
        setting = config["curriculum"]["background_eval"]
    except (OSError, KeyError, TypeError, TOMLDecodeError):
        return None
    return setting if isinstance(setting, bool) else None


def _record_steps(records: list[dict[str, Any]]) -> tuple[dict[str, int], bool]:
    """Evaluation env steps per kind from eval/episodes x eval/mean_ep_length; whether every record had both."""
    steps = {kind: 0 for kind, _ in KINDS}
    complete = True
    for r in records:
        episodes, length = r.get("eval/episodes"), r.get("eval/mean_ep_length")
        if not isinstance(episodes, (int, float)) or not isinstance(length, (int, float)):
            complete = False
            continue
        kind = GATE_KIND if r.get(EVAL_KIND_KEY) == GATE_KIND else SCREEN_KIND
        steps[kind] += int(round(episodes * length))
    return steps, complete


def stage_costs(run: Path) -> list[StageCost]:
    """Every started stage of ``run`` (raises DinosimError for a folder that is not a run)."""
    table = summarize_run(run)
    records = read_json_lines(Path(run) / METRICS_FILE)
    costs = []
    for row in table.rows:
        if row.timesteps is None or row.wall_time is None:
            continue
        steps, complete = _record_steps([r for r in records if r.get("stage") == row.stage])
        costs.append(StageCost(Path(run), row.stage, row.timesteps, row.wall_time, _background(Path(run), row),
                               row, steps, complete))
    return costs


def estimated_share(cost: StageCost, ratio: float) -> float:
    """Share of the stage's wall time evaluation would take at ``ratio`` (an evaluation env step costs ``ratio``
    training steps): E * ratio / (T + E * ratio)."""
    weighted = sum(cost.eval_steps.values()) * ratio
    return weighted / (cost.steps + weighted)


def format_cost(cost: StageCost, ratio: Optional[tuple[float, str]]) -> str:
    """One line (two for a timed stage) about ``cost``; ``ratio``: (cost ratio, where it came from) or None."""
    head = (f"{cost.run.name} stage {cost.stage}: {cost.steps:,} training steps, {cost.wall:.0f} s wall"
            + {True: ", background evaluation", False: ", inline evaluation", None: ""}[cost.background])
    if cost.recorded:
        adds = cost.wait / (cost.wall - cost.wait) if cost.wall > cost.wait else float("inf")
        by_kind = ", ".join(f"{name} {(cost.row.eval_time or {}).get(kind, {}).get(EVAL_WAIT, 0):.1f} s"
                            for kind, name in KINDS)
        played = sum(t[EVAL_WALL] for t in (cost.row.eval_time or {}).values())
        return (f"{head}; RECORDED: training waited {cost.wait:.1f} s for evaluations ({by_kind}) = "
                f"{100 * (cost.row.eval_share or 0):.1f} % of the stage's wall time, adds {100 * adds:.1f} % to "
                f"training alone; evaluations played {played:.1f} s{_cpu(cost)}\n"
                f"    {format_eval_time(cost.row.eval_time)}")
    if not cost.eval_steps_complete or not any(cost.eval_steps.values()):
        return f"{head}; evaluation time not recorded (and its records lack eval/episodes or lengths)"
    total = sum(cost.eval_steps.values())
    facts = (f"evaluation env steps {cost.eval_steps[SCREEN_KIND]:,} screening + {cost.eval_steps[GATE_KIND]:,} "
             f"gate = {total / cost.steps:.3f} per training step")
    if ratio is None or cost.background:
        return f"{head}; evaluation time not recorded; {facts}"
    return (f"{head}; {facts}; ESTIMATED share {100 * estimated_share(cost, ratio[0]):.1f} % (not measured: an "
            f"evaluation step costing {ratio[0]:.2f} training steps, {ratio[1]})")


def _cpu(cost: StageCost) -> str:
    """The evaluations' CPU seconds against the training process's, when both were recorded (a share that does not
    depend on how much of the machine the run got)."""
    used = cost.row.cpu_time
    evals = sum(t[EVAL_CPU] for t in (cost.row.eval_time or {}).values())
    if used is None or used <= 0:
        return ""
    if cost.background:
        return (f"; CPU: evaluation process {evals:.1f} s beside the training process's {used:.1f} s "
                f"({100 * evals / (used + evals):.1f} % of both)")
    return f"; CPU: evaluations {evals:.1f} s of the training process's {used:.1f} s ({100 * evals / used:.1f} %)"


def report(runs: list[Path], cost_ratio: Optional[float] = None) -> list[str]:
    """The lines ``train_fps.py --runs`` prints for ``runs``."""
    costs = [c for run in runs for c in stage_costs(run)]
    measured = [r for r in (c.cost_ratio() for c in costs) if r is not None]
    ratio: Optional[tuple[float, str]] = None
    if cost_ratio is not None:
        ratio = (cost_ratio, "--cost-ratio")
    elif measured:
        ratio = (statistics.median(measured), f"median of {len(measured)} timed inline stage(s) given")
    return [format_cost(c, ratio) for c in costs]
