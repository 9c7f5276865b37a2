"""A per-stage table of a run: what `dinosim summary RUN_DIR` prints (standard library only).

Sources, in order of preference: ``summary.json`` (written by :mod:`dinosim.training.state`: ``timesteps_used``,
``wall_time``, ``gate_passed``/``gate_passed_at``, ``last_eval``, ``best_eval``), then the eval records of
``metrics.jsonl`` for anything it lacks. Reward components come from the stage's last eval component means
(``eval/reward/<term>``: mean per-episode sum of each term) and are ranked by their share of the return,
``|mean| / sum(|means|)``; only terms that are not zero are shown.

Evaluation time comes from each stage's ``eval_time`` totals and ``eval_share`` in ``summary.json`` (see
:mod:`dinosim.runfolder`): the seconds training waited for evaluations (what evaluation adds to the stage's wall
time) and their share of it, split into screening and gate evaluation. Runs from before evaluations were timed have
neither: "not recorded", never an estimate (``benchmarks/train_fps.py --runs`` estimates one, labelled so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from dinosim.errors import DinosimError
from dinosim.runfolder import (
    EVAL_COUNT,
    EVAL_STEPS,
    EVAL_TIME_FIELDS,
    EVAL_WAIT,
    EVAL_WALL,
    GATE_KIND,
    METRICS_FILE,
    SCREEN_KIND,
    STAGE_EVAL_SHARE_KEY,
    STAGE_EVAL_TIME_KEY,
    read_json_lines,
    stage_dirs,
    stopped_on,
)
from dinosim.tracking.run_logs import (
    EVAL_LENGTH,
    EVAL_REWARD,
    EVAL_SUCCESS,
    check_run_dir,
    component_means,
    read_summary,
    stage_summaries,
)

TOP_COMPONENTS = 3


@dataclass
class StageRow:
    """One stage's line of the table; None where the run has not logged the quantity."""

    stage: int
    status: str
    timesteps: Optional[int]
    wall_time: Optional[float]  # seconds
    gate_passed: Optional[bool]
    gate_step: Optional[int]  # global step of the evaluation that completed the gate
    best_reward: Optional[float]
    final_reward: Optional[float]
    final_length: Optional[float]
    success_rate: Optional[float]  # of the last evaluation
    evaluations: int
    gate_streak: Optional[int] = None  # passing evaluations in a row so far
    components: list[tuple[str, float, float]] = field(default_factory=list)  # (term, mean, share), top first
    eval_wait: Optional[float] = None  # seconds training waited for evaluations (None: not recorded)
    eval_share: Optional[float] = None  # eval_wait / wall_time
    eval_time: Optional[dict[str, dict[str, float]]] = None  # {"screen"|"gate": {"evaluations", "wall_s", ...}}
    cpu_time: Optional[float] = None  # CPU seconds of the training process in the stage (None: not recorded)
    background: Optional[bool] = None  # its evaluations ran in a background process (None: not recorded)


@dataclass
class RunTable:
    run_dir: Path
    species: str
    algorithm: str
    status: str
    global_step: Optional[int]
    rows: list[StageRow]


def summarize_run(run_dir: Path, top: int = TOP_COMPONENTS) -> RunTable:
    """Read a run folder into a :class:`RunTable`. Raises :class:`DinosimError` for a folder that is not a run
    or one that has neither a summary.json stage entry nor an evaluation yet."""
    path = check_run_dir(Path(run_dir))
    summary = read_summary(path)
    entries = stage_summaries(summary)
    evals = read_json_lines(path / METRICS_FILE)
    by_stage: dict[int, list[dict[str, Any]]] = {}
    for record in evals:
        if _num(record.get("stage")) is not None:
            by_stage.setdefault(int(record["stage"]), []).append(record)
    numbers = sorted(set(entries) | set(by_stage) | set(stage_dirs(path)))
    if not entries and not evals:
        raise DinosimError(f"{path} has no summary.json stages and no evaluations yet; wait for the first evaluation")
    rows = [_row(n, entries.get(n, {}), by_stage.get(n, []), top) for n in numbers]
    species = summary.get("species") or path.parent.name
    return RunTable(path, str(species), str(summary.get("algorithm", "?")), str(summary.get("status", "unknown")),
                    _int(summary.get("global_step")), rows)


def format_table(table: RunTable) -> str:
    """Plain-text table (fixed-width columns) plus one line per stage listing its top reward components."""
    head = (f"run {table.run_dir}\n{table.species} / {table.algorithm} / status {table.status}"
            + (f" / global step {table.global_step:,}" if table.global_step is not None else ""))
    columns = ("stage", "status", "timesteps", "wall time", "eval time", "eval share", "gate", "best reward",
               "final reward", "final len", "success", "evals")
    lines = [[
        str(r.stage), r.status, _fmt_int(r.timesteps), _fmt_time(r.wall_time), _fmt_time(r.eval_wait),
        _fmt_share(r.eval_share), _fmt_gate(r), _fmt_num(r.best_reward), _fmt_num(r.final_reward),
        _fmt_num(r.final_length, 1), _fmt_rate(r.success_rate), str(r.evaluations),
    ] for r in table.rows]
    widths = [max(len(c), *(len(line[i]) for line in lines)) if lines else len(c) for i, c in enumerate(columns)]
    out = [head, "", "  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(v.ljust(w) for v, w in zip(line, widths)) for line in lines]
    out.append("")
    out.append("top reward components by share of return (last evaluation, mean per-episode sum):")
    for r in table.rows:
        parts = [f"{term} {value:+.2f} ({100 * share:.0f}%)" for term, value, share in r.components]
        out.append(f"  stage {r.stage}: " + (", ".join(parts) if parts else "-"))
    out.append("")
    out.append("evaluation time (eval time: what training waited for evaluations; played: wall time of the process "
               "that evaluated):")
    out += [f"  stage {r.stage}: {format_eval_time(r.eval_time)}" for r in table.rows]
    return "\n".join(out)


EVAL_KIND_NAMES = ((SCREEN_KIND, "screening"), (GATE_KIND, "gate"))  # evaluation kinds in display order


def format_eval_time(totals: Optional[dict[str, dict[str, float]]]) -> str:
    """One line of a stage's evaluation-time totals per kind, or "not recorded"."""
    if totals is None:
        return "not recorded (the run predates timed evaluations)"
    parts = []
    for kind, name in EVAL_KIND_NAMES:
        t = totals.get(kind) or {}
        count = int(t.get(EVAL_COUNT, 0))
        parts.append(f"{name} {count}x" + (f" waited {t.get(EVAL_WAIT, 0):.1f} s, played {t.get(EVAL_WALL, 0):.1f} s, "
                                            f"{int(t.get(EVAL_STEPS, 0)):,} env steps" if count else ""))
    return "; ".join(parts)


def eval_totals(entry: dict[str, Any]) -> Optional[dict[str, dict[str, float]]]:
    """A ``summary.json`` stage entry's evaluation-time totals, None when absent or not numbers."""
    totals = entry.get(STAGE_EVAL_TIME_KEY)
    if not isinstance(totals, dict) or not all(isinstance(t, dict) for t in totals.values()):
        return None
    return {str(kind): {EVAL_COUNT: _int(t.get(EVAL_COUNT)) or 0,
                        **{name: _num(t.get(name)) or 0.0 for name in EVAL_TIME_FIELDS}}
            for kind, t in totals.items()}


def top_components(means: dict[str, float], top: int = TOP_COMPONENTS) -> list[tuple[str, float, float]]:
    """``(term, mean, share)`` of the ``top`` largest ``|mean|``, share = ``|mean| / sum(|means|)``; zeros dropped."""
    finite = {t: v for t, v in means.items() if math.isfinite(v) and v != 0.0}
    total = sum(abs(v) for v in finite.values())
    ranked = sorted(finite.items(), key=lambda item: (-abs(item[1]), item[0]))
    return [(t, v, abs(v) / total) for t, v in ranked[:top]] if total > 0 else []


def _row(stage: int, entry: dict[str, Any], records: list[dict[str, Any]], top: int) -> StageRow:
    last_eval = entry.get("last_eval") or (records[-1] if records else {})
    best_eval = entry.get("best_eval") or {}
    rewards = [_num(r.get(EVAL_REWARD)) for r in records if not stopped_on(r)]  # a stopped one: partial mean
    rewards = [r for r in rewards if r is not None]
    best = _num(best_eval.get(EVAL_REWARD))
    if best is None and rewards:
        best = max(rewards)
    status = str(entry.get("status") or ("running" if records else "pending"))
    timesteps = _int(entry.get("timesteps_used"))
    if timesteps is None and records:
        start = _int(entry.get("start_step")) or 0
        timesteps = max(_int(r.get("global_step")) or 0 for r in records) - start
    started = status != "pending"  # a stage that never ran has no timesteps, wall time or gate verdict
    eval_time = eval_totals(entry) if started else None
    return StageRow(
        stage=stage,
        status=status,
        timesteps=timesteps if started else None,
        wall_time=_num(entry.get("wall_time")) if started else None,
        gate_passed=bool(entry["gate_passed"]) if "gate_passed" in entry and started else None,
        gate_step=_int(entry.get("gate_passed_at")),
        best_reward=best,
        final_reward=_num(last_eval.get(EVAL_REWARD)),
        final_length=_num(last_eval.get(EVAL_LENGTH)),
        success_rate=_num(last_eval.get(EVAL_SUCCESS)),
        evaluations=int(entry.get("evaluations", len(records)) or 0),
        gate_streak=_int(entry.get("gate_streak")),
        components=top_components(component_means(last_eval) or component_means(records[-1] if records else {}), top),
        eval_wait=sum(t[EVAL_WAIT] for t in eval_time.values()) if eval_time is not None else None,
        eval_share=_num(entry.get(STAGE_EVAL_SHARE_KEY)) if eval_time is not None else None,
        eval_time=eval_time,
        cpu_time=_num(entry.get("cpu_time")) if started else None,
        background=entry.get("evaluated_in_background") if isinstance(entry.get("evaluated_in_background"), bool)
        else None,
    )


def _num(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(float(value)) else None


def _int(value: Any) -> Optional[int]:
    number = _num(value)
    return int(number) if number is not None else None


def _fmt_num(value: Optional[float], digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _fmt_int(value: Optional[int]) -> str:
    return "-" if value is None else f"{value:,}"


def _fmt_rate(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _fmt_share(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _fmt_time(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _fmt_gate(row: StageRow) -> str:
    if row.gate_passed is None:
        return "-"
    if row.gate_passed:
        return f"passed @ {row.gate_step:,}" if row.gate_step is not None else "passed"
    if row.status == "running":
        return f"open (streak {row.gate_streak or 0})"
    return "not passed"
