"""What the diagnosis rules read about one stage of a run: its resolved config, eval records, summary entry and,
lazily, its TensorBoard scalars.

Contract: :func:`load_stages` uses the run-folder readers of :mod:`dinosim.tracking.run_logs` (standard library);
TensorBoard is imported only when a rule first asks :meth:`StageData.scalar` for a tag, and then once per stage.
Eval records are the stage's regular (screening) ``metrics.jsonl`` lines, sorted by global step (a gate
evaluation's extra record, ``eval_kind = "gate"``, replays the same snapshot and is left out); component values
(``eval/reward/<term>``) are per-episode sums. TensorBoard series are restricted to the stage's global-step span.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from dinosim.config.curriculum_rules import warm_start_source
from dinosim.config.loader import TOMLDecodeError, loads_toml
from dinosim.errors import DinosimError
from dinosim.runfolder import (
    EVAL_KIND_KEY,
    METRICS_FILE,
    SCREEN_KIND,
    STAGE_CONFIG_FILE,
    read_json_lines,
    stage_dirs,
)
from dinosim.tracking.run_logs import (  # noqa: F401 (EVAL_* re-exported to the rule modules)
    EVAL_LENGTH,
    EVAL_REWARD,
    EVAL_SUCCESS,
    Series,
    check_run_dir,
    component_means,
    read_summary,
    stage_summaries,
)

ScalarReader = Callable[[Path], dict[str, Series]]


def _default_reader(path: Path) -> dict[str, Series]:
    from dinosim.tracking.run_logs import read_scalars

    return read_scalars(path)


@dataclass
class StageData:
    """One stage of one run, as the rules see it (see the module docstring)."""

    run_dir: Path
    stage: int
    species: str
    algorithm: str
    config: dict[str, Any]  # the stage's config.toml: [run], [ppo]/[sac]/..., [env], [curriculum]
    evals: list[dict[str, Any]]  # this stage's metrics.jsonl records, by global step
    entry: dict[str, Any]  # this stage's entry of summary.json (StageState), {} when missing
    run_status: str = "unknown"
    run_message: str = ""
    previous: Optional["StageData"] = None  # the stage of the same run it started from (warm_start_stage)
    reader: ScalarReader = _default_reader
    _scalars: Optional[dict[str, Series]] = field(default=None, repr=False)

    # -- config -----------------------------------------------------------------------------------------------
    def section(self, name: str) -> dict[str, Any]:
        value = self.config.get(name)
        return value if isinstance(value, dict) else {}

    @property
    def env(self) -> dict[str, Any]:
        return self.section("env")

    @property
    def algo_section(self) -> str:
        """The config section holding this run's algorithm settings (tqc/crossq read ``[sac]``)."""
        return "ppo" if self.algorithm == "ppo" else "sac"

    def algo(self, key: str, default: Any = None) -> Any:
        own = self.section(self.algorithm).get(key)
        return own if own is not None else self.section(self.algo_section).get(key, default)

    def curriculum(self, key: str, default: Any = None) -> Any:
        return self.section("curriculum").get(key, default)

    @property
    def task(self) -> str:
        return str(self.env.get("task", ""))

    @property
    def n_envs(self) -> int:
        return int(self.section("run").get("n_envs", 1) or 1)

    @property
    def max_steps(self) -> int:
        return int(self.env.get("max_episode_steps", 1000))

    @property
    def budget(self) -> int:
        """Steps the stage may train: summary.json's budget, else the run's --timesteps, else curriculum.timesteps."""
        for value in (self.entry.get("budget"), self.section("run").get("timesteps"), self.curriculum("timesteps")):
            if isinstance(value, (int, float)) and value > 0:
                return int(value)
        return 0

    # -- progress ---------------------------------------------------------------------------------------------
    @property
    def start_step(self) -> int:
        value = self.entry.get("start_step")
        return int(value) if isinstance(value, (int, float)) else (int(self.evals[0]["global_step"]) if self.evals
                                                                   else 0)

    @property
    def end_step(self) -> int:
        used = self.entry.get("timesteps_used")
        if isinstance(used, (int, float)) and used > 0:
            return self.start_step + int(used)
        return int(self.evals[-1]["global_step"]) if self.evals else self.start_step

    @property
    def gate_passed(self) -> bool:
        return bool(self.entry.get("gate_passed"))

    # -- eval series ------------------------------------------------------------------------------------------
    def eval_values(self, key: str) -> list[float]:
        """Finite values of ``key`` over this stage's evaluations, in step order (records without it skipped)."""
        return [float(r[key]) for r in self.evals if _finite(r.get(key))]

    def eval_steps(self, key: str) -> list[int]:
        return [int(r["global_step"]) for r in self.evals if _finite(r.get(key))]

    def component(self, record: dict[str, Any], term: str) -> float:
        return component_means(record).get(term, 0.0)

    def tail(self, k: int = 3) -> list[dict[str, Any]]:
        """The last ``k`` evaluations (fewer when the stage has fewer)."""
        return self.evals[-k:]

    # -- TensorBoard ------------------------------------------------------------------------------------------
    def scalar(self, tag: str) -> Optional[Series]:
        """TensorBoard ``tag`` of this stage's folder within the stage's step span (read on first use), or None."""
        if self._scalars is None:
            folder = self.run_dir / f"stage{self.stage}"
            try:
                self._scalars = self.reader(folder) if folder.is_dir() else {}
            except Exception:  # noqa: BLE001 - a torn/unreadable event file: the rules fall back to eval data
                self._scalars = {}
        series = self._scalars.get(tag)
        if not series:
            return None
        lo, hi = self.start_step, max(self.end_step, self.start_step)
        points = [(s, v) for s, v in zip(series.steps, series.values) if lo <= s <= hi and math.isfinite(v)]
        if not points:
            return None
        return Series(tuple(p[0] for p in points), tuple(p[1] for p in points))


@dataclass
class RunData:
    """One run folder: its stages (in order) and what summary.json says about it."""

    run_dir: Path
    species: str
    algorithm: str
    status: str
    message: str
    stages: list[StageData]


def load_run_data(path: Path, reader: ScalarReader = _default_reader) -> RunData:
    """Read a run folder for diagnosis. Raises :class:`DinosimError` for a folder that is not a run folder or has
    no stage config yet (before TensorBoard is imported)."""
    run_dir = check_run_dir(Path(path))
    summary = read_summary(run_dir)
    entries = stage_summaries(summary)
    records = sorted(read_json_lines(run_dir / METRICS_FILE), key=lambda r: int(r.get("global_step", 0)))
    folders = stage_dirs(run_dir)
    configs = {n: _read_config(folder / STAGE_CONFIG_FILE) for n, folder in folders.items()
               if (folder / STAGE_CONFIG_FILE).exists()}
    if not configs:
        raise DinosimError(f"{run_dir}: no stage<N>/config.toml yet; diagnose a run that has started training")
    status, message = str(summary.get("status", "unknown")), str(summary.get("message") or "")
    stages: list[StageData] = []
    for n, config in configs.items():
        run_table = config.get("run", {})
        data = StageData(run_dir, n, str(run_table.get("species", summary.get("species", ""))),
                         str(run_table.get("algorithm", summary.get("algorithm", "ppo"))), config,
                         [r for r in records if _stage_of(r) == n and "global_step" in r
                          and r.get(EVAL_KIND_KEY, SCREEN_KIND) == SCREEN_KIND], entries.get(n, {}),
                         status, message, _source(stages, n, config), reader)
        stages.append(data)
    first = stages[0]
    return RunData(run_dir, first.species, first.algorithm, status, message, stages)


def _source(earlier: list[StageData], stage: int, config: dict[str, Any]) -> Optional[StageData]:
    """The stage of ``earlier`` (this run's stages before ``stage``) that ``stage`` started from, if any."""
    wanted = config.get("curriculum", {}).get("warm_start_stage")
    source, _ = warm_start_source(stage, [s.stage for s in earlier], wanted if isinstance(wanted, int) else None)
    return next((s for s in earlier if s.stage == source), None)


def _read_config(file: Path) -> dict[str, Any]:
    try:
        data = loads_toml(file.read_text())
    except (TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DinosimError(f"{file}: not valid TOML ({exc})") from None
    match = re.fullmatch(r"stage(\d+)", file.parent.name)
    nested = data.get(f"stage{match.group(1)}") if match else None
    if isinstance(nested, dict):  # [stageN.env] layout: lift it to the top level
        data = {**data, **nested}
    return data


def _stage_of(record: dict[str, Any]) -> Optional[int]:
    value = record.get("stage")
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
