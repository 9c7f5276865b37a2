"""Read what a run folder logged: TensorBoard scalars, ``metrics.jsonl`` eval records, ``summary.json``, stage gates.

Layout read (written by :mod:`dinosim.training`)::

    runs/<species>/<stamp>[-NAME]/
        summary.json            per-stage timesteps, gate, eval metrics, wall time; overall status
        metrics.jsonl           one eval record a line: global_step, stage, eval/..., reward component means
        stage<N>/config.toml    resolved config incl. [curriculum] gate thresholds
        stage<N>/**/events.out.tfevents.*   TensorBoard: reward/<term>, eval/*, curriculum/stage at global steps

Contract: :func:`check_run_dir` and :func:`check_has_logs` use the standard library only and raise
:class:`~dinosim.errors.DinosimError` with what to do, so the CLI can reject bad input before importing
TensorBoard or matplotlib. :func:`load_run` reads everything into a :class:`RunLogs`; all steps are global
environment steps. Series are sorted by step; a step logged twice (e.g. after a resume) keeps the later value.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from dinosim.config.loader import TOMLDecodeError, loads_toml
from dinosim.errors import DinosimError
from dinosim.runfolder import (
    EVAL_KIND_KEY,
    GATE_KIND,
    METRICS_FILE,
    STAGE_CONFIG_FILE,
    SUMMARY_FILE,
    read_json_lines,
    stage_dirs,
    stage_number,
)

EVENTS_GLOB = "events.out.tfevents.*"
EVAL_REWARD = "eval/mean_reward"
EVAL_LENGTH = "eval/mean_ep_length"
EVAL_SUCCESS = "eval/success_rate"
STAGE_TAG = "curriculum/stage"
REWARD_PREFIX = "reward/"
# Keys of reward-component means in metrics.jsonl / summary.json: "reward/alive", "eval/reward/alive",
# "eval/reward_alive" or "reward_alive".
_COMPONENT_KEY = re.compile(r"^(?:eval/)?reward[/_](?P<term>.+)$")


@dataclass(frozen=True)
class Series:
    """One scalar over global steps (sorted, unique steps)."""

    steps: tuple[int, ...]
    values: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.steps)


@dataclass(frozen=True)
class Gate:
    """A stage's gate thresholds from its ``config.toml`` ``[curriculum]`` table (None: not set)."""

    min_avg_reward: Optional[float] = None
    min_avg_episode_length: Optional[float] = None
    min_success_rate: Optional[float] = None
    required_consecutive: Optional[int] = None


@dataclass
class StageLogs:
    """One stage of a run: its folder, gate, global-step span and its entry of ``summary.json`` (or {})."""

    stage: int
    path: Optional[Path]
    gate: Gate
    start_step: Optional[int] = None
    end_step: Optional[int] = None
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunLogs:
    """Everything :func:`load_run` read from one run folder."""

    run_dir: Path
    label: str
    summary: dict[str, Any]
    stages: dict[int, StageLogs]
    scalars: dict[str, Series]  # TensorBoard tags -> series (global steps)
    evals: list[dict[str, Any]]  # metrics.jsonl screening records, in file order (the curves and "last eval")
    gate_evals: list[dict[str, Any]] = field(default_factory=list)  # gate evaluations (eval_kind "gate")

    def series(self, tag: str) -> Optional[Series]:
        """An eval key from ``metrics.jsonl`` when it has one, else the TensorBoard tag, else None."""
        from_evals = _series_from_records(self.evals, tag)
        if from_evals:
            return from_evals
        return self.scalars.get(tag) or None

    def reward_terms(self) -> list[str]:
        """Reward component names logged as ``reward/<term>`` (TensorBoard) or as eval component means."""
        terms = {tag[len(REWARD_PREFIX):] for tag in self.scalars if tag.startswith(REWARD_PREFIX)}
        if not terms:
            for record in self.evals:
                terms.update(component_means(record))
        return sorted(terms)

    def component_series(self, term: str) -> Optional[Series]:
        """``reward/<term>`` from TensorBoard (training rollouts), else the eval component means."""
        tb = self.scalars.get(REWARD_PREFIX + term)
        if tb:
            return tb
        points = {}
        for record in self.evals:
            value = component_means(record).get(term)
            if value is not None and "global_step" in record:
                points[int(record["global_step"])] = value
        return _series(points) if points else None

    def boundaries(self) -> list[tuple[int, int]]:
        """``(global_step, stage)`` where each stage after the first began."""
        ordered = sorted(self.stages.values(), key=lambda s: s.stage)
        return [(s.start_step, s.stage) for s in ordered[1:] if s.start_step is not None]

    def last_step(self) -> Optional[int]:
        steps = [s.steps[-1] for s in self.scalars.values() if s]
        steps += [int(r["global_step"]) for r in self.evals if "global_step" in r]
        return max(steps) if steps else None


def check_run_dir(path: Path) -> Path:
    """``path`` resolved, or a :class:`DinosimError` saying why it is not a run folder (standard library only)."""
    path = Path(path)
    if not path.exists():
        raise DinosimError(f"{path}: no such folder; pass a run folder like runs/<species>/<stamp>")
    if not path.is_dir():
        raise DinosimError(f"{path}: not a folder; pass a run folder like runs/<species>/<stamp>")
    if stage_number(path) is not None and (path.parent / SUMMARY_FILE).exists():
        raise DinosimError(f"{path} is a stage folder; pass its run folder {path.parent}")
    has_marker = (path / SUMMARY_FILE).exists() or (path / METRICS_FILE).exists() or bool(stage_dirs(path))
    if not has_marker:
        raise DinosimError(
            f"{path} is not a dinosim run folder (no summary.json, metrics.jsonl or stage<N>/ inside); "
            "pass a folder like runs/<species>/<stamp> made by `dinosim train` or `dinosim curriculum`"
        )
    return path.resolve()


def check_has_logs(path: Path) -> None:
    """Raise :class:`DinosimError` unless the run folder has TensorBoard events or eval records yet."""
    if event_files(path) or read_json_lines(path / METRICS_FILE):
        return
    raise DinosimError(
        f"{path} has no training logs yet (no TensorBoard events, empty or missing metrics.jsonl); "
        "wait until the run logs its first rollout or evaluation"
    )


def event_files(path: Path) -> list[Path]:
    return sorted(Path(path).rglob(EVENTS_GLOB))


def read_summary(path: Path) -> dict[str, Any]:
    """``summary.json`` of a run folder, {} when missing; a corrupt file is a :class:`DinosimError`."""
    file = Path(path) / SUMMARY_FILE
    if not file.exists():
        return {}
    try:
        data = json.loads(file.read_bytes())
    except ValueError:  # JSONDecodeError, UnicodeDecodeError: our writes are atomic, so the file is damaged
        raise DinosimError(f"{file}: not valid JSON (empty, truncated or damaged)") from None
    if not isinstance(data, dict):
        raise DinosimError(f"{file}: not a dinosim run summary (expected a JSON object, found {type(data).__name__})")
    return data


def read_gate(stage_dir: Path, stage: int) -> Gate:
    """Gate thresholds from ``stage_dir/config.toml``: its ``[curriculum]`` or ``[stage<N>.curriculum]`` table."""
    file = Path(stage_dir) / STAGE_CONFIG_FILE
    if not file.exists():
        return Gate()
    try:
        data = loads_toml(file.read_bytes().decode("utf-8"))
    except (TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DinosimError(f"{file}: not valid TOML ({exc})") from None
    table = data.get("curriculum") or data.get(f"stage{stage}", {}).get("curriculum") or {}
    return Gate(
        min_avg_reward=_opt_float(table.get("min_avg_reward")),
        min_avg_episode_length=_opt_float(table.get("min_avg_episode_length")),
        min_success_rate=_opt_float(table.get("min_success_rate")),
        required_consecutive=int(table["required_consecutive"]) if "required_consecutive" in table else None,
    )


def read_scalars(path: Path) -> dict[str, Series]:
    """Every TensorBoard scalar under ``path`` (all event files, all sub-folders) merged by tag."""
    from tensorboard.backend.event_processing import event_accumulator

    points: dict[str, dict[int, tuple[float, float]]] = {}
    for folder in sorted({f.parent for f in event_files(path)}):
        acc = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.SCALARS: 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            by_step = points.setdefault(tag, {})
            for event in acc.Scalars(tag):
                old = by_step.get(event.step)
                if old is None or event.wall_time >= old[0]:
                    by_step[event.step] = (event.wall_time, float(event.value))
    return {tag: _series({s: v for s, (_, v) in pts.items()}) for tag, pts in sorted(points.items())}


def load_run(path: Path, label: Optional[str] = None) -> RunLogs:
    """Read a run folder's logs. Raises :class:`DinosimError` for a non-run folder or one with no logs yet."""
    path = check_run_dir(path)
    check_has_logs(path)
    summary = read_summary(path)
    scalars = read_scalars(path) if event_files(path) else {}
    records = read_json_lines(path / METRICS_FILE)
    evals = [r for r in records if r.get(EVAL_KIND_KEY) != GATE_KIND]
    gate_evals = [r for r in records if r.get(EVAL_KIND_KEY) == GATE_KIND]
    if not any(scalars.values()) and not evals:  # event files that hold no scalar yet (the run just started)
        raise DinosimError(f"{path} has no logged values yet; wait until the run logs its first rollout or evaluation")
    stages = _stages(path, summary, scalars, evals)
    return RunLogs(path, label or default_label(path), summary, stages, scalars, evals, gate_evals)


def default_label(path: Path) -> str:
    """``<species>/<run folder name>`` for a folder under ``runs/<species>/``."""
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def stage_summaries(summary: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """``summary.json``'s per-stage entries keyed by stage number (accepts a dict or a list of entries)."""
    raw = summary.get("stages", {})
    items: Iterable[tuple[Any, Any]]
    if isinstance(raw, dict):
        items = raw.items()
    elif isinstance(raw, list):
        items = ((entry.get("stage"), entry) for entry in raw if isinstance(entry, dict))
    else:
        items = ()
    out = {}
    for key, entry in items:
        match = re.search(r"\d+", str(key))
        if match and isinstance(entry, dict):
            out[int(match.group())] = entry
    return dict(sorted(out.items()))


def _stages(path: Path, summary: dict[str, Any], scalars: dict[str, Series],
            evals: list[dict[str, Any]]) -> dict[int, StageLogs]:
    dirs = stage_dirs(path)
    entries = stage_summaries(summary)
    numbers = sorted(set(dirs) | set(entries) | {int(r["stage"]) for r in evals if _is_number(r.get("stage"))})
    starts = _stage_starts(scalars.get(STAGE_TAG), entries, evals)
    stages = {}
    for n in numbers:
        stage_dir = dirs.get(n)
        stages[n] = StageLogs(n, stage_dir, read_gate(stage_dir, n) if stage_dir else Gate(),
                              start_step=starts.get(n), summary=entries.get(n, {}))
    ordered = [stages[n] for n in numbers]
    for current, following in zip(ordered, ordered[1:]):
        current.end_step = following.start_step
    return stages


def _stage_starts(stage_series: Optional[Series], entries: dict[int, dict[str, Any]],
                  evals: list[dict[str, Any]]) -> dict[int, int]:
    """Global step at which each stage began: summary.json's ``start_step``, else
    where ``curriculum/stage`` changes, else cumulative summary.json ``timesteps``, else the stage's first eval."""
    explicit = {n: int(e["start_step"]) for n, e in entries.items() if _is_number(e.get("start_step"))}
    if explicit:  # stages never started (pending) have no start_step and get no span
        return explicit
    starts: dict[int, int] = {}
    if stage_series:
        previous = None
        for step, value in zip(stage_series.steps, stage_series.values):
            stage = int(round(value))
            if stage != previous and stage not in starts:
                starts[stage] = 0 if previous is None else step
            previous = stage
        return starts
    if entries:
        total = 0
        for n, entry in entries.items():
            starts[n] = total
            total += int(entry.get("timesteps", 0) or 0)
        return starts
    for record in evals:
        if _is_number(record.get("stage")) and _is_number(record.get("global_step")):
            starts.setdefault(int(record["stage"]), int(record["global_step"]))
    return starts


def component_means(record: dict[str, Any]) -> dict[str, float]:
    """``{term: mean}`` of one eval record: keys ``eval/reward/<term>`` (also ``reward/<term>``,
    ``[eval/]reward_<term>``) or a nested ``reward_components``/``components`` table."""
    out = {}
    nested = record.get("reward_components") or record.get("components")
    if isinstance(nested, dict):
        out.update({str(k): float(v) for k, v in nested.items() if _is_number(v)})
    for key, value in record.items():
        match = _COMPONENT_KEY.match(key)
        if match and _is_number(value):
            out[match.group("term")] = float(value)
    return out


def _series_from_records(records: list[dict[str, Any]], key: str) -> Optional[Series]:
    points = {int(r["global_step"]): float(r[key]) for r in records
              if "global_step" in r and _is_number(r.get(key))}
    return _series(points) if points else None


def _series(points: dict[int, float]) -> Series:
    steps = sorted(points)
    return Series(tuple(int(s) for s in steps), tuple(points[s] for s in steps))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def _opt_float(value: Any) -> Optional[float]:
    return float(value) if _is_number(value) else None
